"""Cold start: each function's handler import time beside a bare `import boto3`, in the same run.

Each function is staged as `sam build` packages it: its code directory and the core layer's
packages copied without any `__pycache__`, so the platform's own modules are compiled at import as
on Lambda (where the package is read-only and ships no bytecode), while the dependencies (boto3,
Powertools, pydantic, cryptography) come precompiled from the virtual environment, as pip installs
them into the layer. Every measurement is a fresh `python -B -X importtime -c "import app"`; the
figure is the cumulative time of `app` (best of RUNS), and `import boto3` is measured in the same
rounds, interleaved, so machine load weighs on both alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
LAYER = ROOT / "layers" / "core"
RUNS = 9
BASELINE = "boto3"
# The most a function's import may take, as a multiple of a bare `import boto3`.
TARGETS = {"deliver": 1.3}
DEFAULT_TARGET = 1.5

# Enough configuration for the handlers to build their services at import, as on Lambda.
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AUDIT_TABLE": "audit",
    "INTEGRATIONS_TABLE": "integrations",
    "DELIVERY_QUEUE_URL": "http://127.0.0.1:1/queue",
    "DELIVERY_DLQ_URL": "http://127.0.0.1:1/dlq",
    "FANOUT_FAILURE_QUEUE_URL": "http://127.0.0.1:1/fanout-failures",
    "SEALING_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/bench",
    "ARTIFACT_CACHE_BUCKET": "bench",
    "POWERTOOLS_SERVICE_NAME": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "Bench",
}

TITLE = "Cold start: each function's handler import beside a bare `import boto3`"
NOTE = ""


def parse_importtime(stderr: str, module: str) -> float | None:
    """Cumulative milliseconds of the top-level import of `module` in `-X importtime` output."""
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    return None


def stage(into: Path, functions: Sequence[str]) -> dict[str, Path]:
    """Copy the functions and the core layer as a deployment package (no bytecode); function -> dir."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    layer = into / "layer"
    for package in sorted(p for p in LAYER.iterdir() if (p / "__init__.py").is_file()):
        shutil.copytree(package, layer / package.name, ignore=ignore)
    staged = {}
    for name in functions:
        staged[name] = into / "functions" / name
        shutil.copytree(FUNCTIONS / name, staged[name], ignore=ignore)
    return staged


def import_ms(directory: Path, layer: Path, module: str) -> float:
    """One fresh interpreter: the cumulative import time of `module`, bytecode neither read nor written
    for the staged code (there is none) and never written anywhere (-B)."""
    env = {**os.environ, **ENV, "PYTHONPATH": f"{directory}{os.pathsep}{layer}", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-B", "-X", "importtime", "-c", f"import {module}"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"import {module} failed in {directory}:\n{result.stderr[-2000:]}")
    found = parse_importtime(result.stderr, module)
    if found is None:
        raise RuntimeError(f"no import time reported for {module}")
    return found


def measure(functions: Sequence[str], runs: int = RUNS) -> tuple[float, dict[str, float]]:
    """(best `import boto3` ms, best handler import ms per function), interleaved over `runs` rounds."""
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        staged = stage(Path(tmp), functions)
        layer = Path(tmp) / "layer"
        baseline = float("inf")
        best = {name: float("inf") for name in functions}
        for _ in range(runs):
            baseline = min(baseline, import_ms(layer, layer, BASELINE))
            for name, directory in staged.items():
                best[name] = min(best[name], import_ms(directory, layer, "app"))
    return baseline, best


def run(runs: int = RUNS) -> list[dict[str, Any]]:
    functions = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file())
    baseline, best = measure(functions, runs)
    rows: list[dict[str, Any]] = [
        {"import": "bare `import boto3`", "ms": baseline, "x boto3": 1.0, "target": "", "ok": ""}
    ]
    for name in functions:
        ratio = best[name] / baseline
        target = TARGETS.get(name, DEFAULT_TARGET)
        rows.append(
            {
                "import": f"{name} (app)",
                "ms": best[name],
                "x boto3": ratio,
                "target": f"<= {target}x",
                "ok": "ok" if ratio <= target else "NO",
            }
        )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(f"Cold start: handler import time vs bare import boto3 (best of {RUNS})", run())

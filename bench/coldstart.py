"""Cold start: each function's handler import beside a bare `import boto3`, in the same run.

Staged as `sam build` packages a function: its code directory, the core layer's packages and the
layer's requirements (with everything they depend on) copied from this virtual environment without
any bytecode. `sam build` unpacks wheels and copies sources without compiling them and Lambda's
code directories are read-only, so on Lambda every module of the layer, boto3 included, is compiled
at each cold start; only the standard library comes precompiled with the runtime. The same holds here
for both sides of the comparison.

Every measurement is a fresh interpreter (`python -S -B`: no site-packages, no bytecode written)
that imports the module and reports the CPU time (`time.process_time`) and the wall time the import
took. RUNS rounds, `import boto3` measured in each round beside every function, interleaved, so
machine load weighs on both alike; the figure is the median. The ratio is taken on CPU time: other
work on the machine stretches wall times (shown too) but not the CPU an import needs.

A few modules are imported where first used instead of at import, because a cold start that never
reaches them should not pay for them; FIRST_USE lists those that a function's usual first invocation
does reach, and the table shows what they add then.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
LAYER = ROOT / "layers" / "core"
RUNS = 9
BASELINE = "boto3"
# The most a function's import may take, as a multiple of a bare `import boto3`.
TARGETS = {"deliver": 1.3}
DEFAULT_TARGET = 1.5
# Imported at first use, and reached by the function's usual first invocation.
FIRST_USE = {
    "deliver": ("meshanics.egress", "cryptography.hazmat.primitives.ciphers.aead"),  # the first POST and unseal
}
TITLE = "Cold start: each function's handler import beside a bare `import boto3`"
NOTE = (
    f"Fresh interpreters, median of {RUNS}, no bytecode for the layer or the functions (as `sam build` packages "
    "them; Lambda compiles them at each cold start), boto3 from the layer like every other dependency. x boto3 "
    "is on CPU time; wall time is shown beside it. + first use: modules imported on the first invocation "
    "rather than at import."
)

# Enough configuration for the handlers to build their services at import, as on Lambda.
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "INTEGRATIONS_TABLE": "bench",
    "AUDIT_TABLE": "bench",
    "DELIVERY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench",
    "DELIVERY_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-dlq",
    "FANOUT_FAILURE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-fanout-failures",
    "SEALING_KEY_ID": "alias/bench",
    "ARTIFACT_CACHE_BUCKET": "bench",
    "POWERTOOLS_SERVICE_NAME": "bench",
    "POWERTOOLS_METRICS_NAMESPACE": "Bench",
}
# The measured child: CPU and wall time of the import, then of the first-use imports.
PROBE = """\
import time
cpu, wall = time.process_time(), time.perf_counter()
import {module}
cpu1, wall1 = time.process_time(), time.perf_counter()
{first_use}
print(cpu1 - cpu, wall1 - wall, time.process_time() - cpu1)
"""


def layer_distributions() -> list[metadata.Distribution]:
    """The layer's requirements and everything they depend on, as installed in this environment."""
    wanted = [
        Requirement(line.split("#", 1)[0].strip())
        for line in (LAYER / "requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    found: dict[str, metadata.Distribution] = {}
    while wanted:
        requirement = wanted.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in found:
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this environment does not have
        found[name] = distribution
        for raw in distribution.requires or ():
            dependency = Requirement(raw)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                wanted.append(dependency)
    return list(found.values())


def _copy_files(files: Iterable[Path], source: Path, into: Path) -> None:
    for path in files:
        relative = path.relative_to(source) if path.is_absolute() else path
        if ".." in relative.parts or "__pycache__" in relative.parts or relative.suffix == ".pyc":
            continue  # scripts outside site-packages, and bytecode
        if relative.parts[0].endswith(".dist-info"):
            continue
        origin = source / relative
        if origin.is_file():
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def stage(into: Path, functions: Sequence[str]) -> tuple[Path, dict[str, Path]]:
    """Copy the layer (core packages and dependencies) and the functions without bytecode:
    (the layer's directory, function -> its directory)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    layer = into / "layer"
    site = Path(sysconfig.get_paths()["purelib"])
    for distribution in layer_distributions():
        _copy_files((Path(str(f)) for f in distribution.files or ()), site, layer)
    for package in sorted(p for p in LAYER.iterdir() if (p / "__init__.py").is_file()):
        shutil.copytree(package, layer / package.name, ignore=ignore)
    staged = {}
    for name in functions:
        staged[name] = into / "functions" / name
        shutil.copytree(FUNCTIONS / name, staged[name], ignore=ignore)
    return layer, staged


def import_ms(directory: Path, layer: Path, module: str, first_use: Sequence[str] = ()) -> tuple[float, float, float]:
    """One fresh interpreter: (CPU ms, wall ms) of `import module`, and CPU ms of the first-use imports."""
    env = {**os.environ, **ENV, "PYTHONPATH": f"{directory}{os.pathsep}{layer}", "PYTHONDONTWRITEBYTECODE": "1"}
    probe = PROBE.format(module=module, first_use="\n".join(f"import {m}" for m in first_use))
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", probe],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"import {module} failed in {directory}:\n{result.stderr[-2000:]}")
    cpu, wall, first = (float(v) * 1000 for v in result.stdout.split())
    return cpu, wall, first


def measure(functions: Sequence[str], runs: int = RUNS) -> dict[str, list[tuple[float, float, float]]]:
    """Per name (BASELINE and each function), one (CPU ms, wall ms, first-use ms) per round."""
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        layer, staged = stage(Path(tmp), functions)
        samples: dict[str, list[tuple[float, float, float]]] = {BASELINE: [], **{name: [] for name in functions}}
        for _ in range(runs):
            samples[BASELINE].append(import_ms(layer, layer, BASELINE))
            for name, directory in staged.items():
                samples[name].append(import_ms(directory, layer, "app", FIRST_USE.get(name, ())))
    return samples


def run(runs: int = RUNS) -> list[dict[str, Any]]:
    functions = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "app.py").is_file())
    samples = measure(functions, runs)

    def med(name: str, index: int) -> float:
        return statistics.median(s[index] for s in samples[name])

    baseline = med(BASELINE, 0)
    rows: list[dict[str, Any]] = [
        {
            "import": "bare `import boto3`",
            "CPU ms": baseline,
            "wall ms": med(BASELINE, 1),
            "x boto3": 1.0,
            "target": "",
            "ok": "",
            "+ first use ms": "",
        }
    ]
    for name in functions:
        ratio = med(name, 0) / baseline
        target = TARGETS.get(name, DEFAULT_TARGET)
        rows.append(
            {
                "import": f"{name} (app)",
                "CPU ms": med(name, 0),
                "wall ms": med(name, 1),
                "x boto3": ratio,
                "target": f"<= {target}x",
                "ok": "ok" if ratio <= target else "NO",
                "+ first use ms": round(med(name, 2), 1) if name in FIRST_USE else "",
            }
        )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

"""Cold start: import time of each function's handler module, as `python -X importtime` reports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
TARGET_MS = 300

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
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def import_ms(function_dir: Path, runs: int = 3) -> float:
    """Best of `runs` fresh interpreters: cumulative import time of the handler module `app`."""
    best = float("inf")
    env = {**os.environ, **ENV, "PYTHONPATH": f"{function_dir}{os.pathsep}{ROOT / 'layers' / 'core'}"}
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import app"],
            cwd=function_dir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        for line in result.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "app":
                best = min(best, int(parts[1]) / 1000)
    return best


def run() -> list[dict[str, object]]:
    rows = []
    for function_dir in sorted(p for p in FUNCTIONS.iterdir() if (p / "app.py").is_file()):
        ms = import_ms(function_dir)
        rows.append(
            {
                "function": function_dir.name,
                "import ms": round(ms, 1),
                "target ms": TARGET_MS,
                "ok": "yes" if ms < TARGET_MS else "NO",
            }
        )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table("Cold start: handler import time (python -X importtime, best of 3)", run())

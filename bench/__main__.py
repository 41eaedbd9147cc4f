"""`make bench`: every benchmark in one run, each printed as a table, then the machine they ran on.

python -m bench                 # everything
python -m bench delivery cost   # some sections
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import api, coldstart, cost, delivery, fanout, registry_pull
from bench.table import print_table

SECTIONS: dict[str, tuple[str, Callable[[], list[dict[str, Any]]]]] = {
    "coldstart": ("Cold start: handler import time (python -X importtime, best of 3)", coldstart.run),
    "delivery": ("Delivery: throughput and CPU per delivery", delivery.run),
    "cost": ("Cost: AWS API calls per delivered event per endpoint (fan-out + delivery)", cost.run),
    "fanout": ("Fan-out: per-event matching vs endpoints in the tenant", fanout.run),
    "api": ("Tenant API latency through the local platform", api.run),
    "registry": (
        f"Registry pull: {registry_pull.SIZE // (1024 * 1024)} MiB blob, sha256 verified by the client",
        registry_pull.run,
    ),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    for name in chosen:
        title, run = SECTIONS[name]
        print_table(title, run())
        sys.stdout.flush()
    print(f"\nMachine: {machine()}\nTotal time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

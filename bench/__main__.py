"""`make bench`: every benchmark in one run, each printed as a table, then the machine they ran on.

python -m bench                 # everything
python -m bench delivery cost   # some sections

Only the tables reach the terminal: while the sections run, file descriptors 1 and 2 point at a log
file (.local/bench.log), so whatever the code under test writes (the functions' Powertools metrics
and logs, warnings, the local platform's logging, child processes) goes there.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TextIO

from bench import api, coldstart, cost, delivery, fanout, latency, registry_pull
from bench.support import ROOT, quiet
from bench.table import print_table

# Each section's module has TITLE, run() -> rows and NOTE (what its figures rest on).
SECTIONS: dict[str, ModuleType] = {
    "cost": cost,
    "delivery": delivery,
    "latency": latency,
    "fanout": fanout,
    "coldstart": coldstart,
    "api": api,
    "registry": registry_pull,
}
LOG = ROOT / ".local" / "bench.log"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu_model()}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


@contextlib.contextmanager
def tables_only(log: Path) -> Iterator[TextIO]:
    """Point fd 1 and 2 (and so every child process) at `log`; yield the terminal's stdout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log, "w") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    os.environ["MESHANICS_BENCH_LOG"] = str(log)
    quiet()
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        terminal.close()


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    failed = []
    with tables_only(LOG) as terminal:
        for name in chosen:
            section = SECTIONS[name]
            try:
                rows = section.run()
            except Exception as error:
                # One broken section must not hide the others; its traceback is in the log.
                traceback.print_exc()
                failed.append(name)
                print(f"\n## {section.TITLE}\n\n{name} failed: {error!r} (see {LOG.relative_to(ROOT)})", file=terminal)
                continue
            print_table(section.TITLE, rows, note=section.NOTE, out=terminal)
        print(f"\nMachine: {machine()}\nTotal time: {time.monotonic() - started:.0f} s", file=terminal)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

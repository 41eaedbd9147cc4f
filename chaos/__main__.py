"""`make chaos` (`python -m chaos`): the pipeline under faults, then the cost per million deliveries.

Exits non-zero if anything was lost, a refused address was connected to, a signature did not
verify, or the drain outlasted its bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time

from bench.__main__ import machine
from bench.table import print_table
from chaos.cost import price_table
from chaos.run import Scenario, measure_cost, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=Scenario.seed)
    parser.add_argument("--deliveries", type=int, default=Scenario.min_deliveries, help="at least this many")
    parser.add_argument("--events", type=int, default=Scenario.min_events, help="at least this many")
    parser.add_argument("--events-per-second", type=float, default=Scenario.events_per_second)
    parser.add_argument("--no-cost", action="store_true", help="skip the cost runs")
    args = parser.parse_args(argv)
    logging.getLogger("meshanics_local").propagate = False  # the stack logs to its own files
    scenario = dataclasses.replace(
        Scenario(),
        seed=args.seed,
        min_deliveries=args.deliveries,
        min_events=args.events,
        events_per_second=args.events_per_second,
    )
    started = time.monotonic()
    outcome = run(scenario, log=lambda line: print(f"[chaos] {line}", flush=True))
    print_table(f"Chaos run (seed {scenario.seed}): every delivery accounted for", outcome.rows())
    print_table("Faults injected", outcome.fault_rows())
    if outcome.lost_pairs:
        print("\nlost (endpoint, sequence), first 20: " + ", ".join(f"{e}/{s}" for e, s in outcome.lost_pairs))
    for refusal in outcome.refusals:
        print(f"signature refused: {refusal}")
    if not args.no_cost:
        rows = measure_cost(scenario, log=lambda line: print(f"[chaos] {line}", flush=True))
        print_table("Cost per million deliveries (clean runs, no faults)", rows)
        print_table("List prices used (us-east-1)", price_table())
    print(f"\nMachine: {machine()}\nTotal time: {time.monotonic() - started:.0f} s")
    print("\nRESULT: " + ("ok" if outcome.ok else "FAILED"))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())

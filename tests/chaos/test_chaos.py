"""`make chaos` in small: the whole pipeline through the local platform under every fault, seeded.

Workers are killed mid-batch, AWS calls fail, the stream repeats and abandons batches, receivers
fail in every way; every (event, endpoint) pair must still be received (signature verified) or
visibly failed, nothing may reach a refused address, and the drain must end within its bound.
"""

from __future__ import annotations

import dataclasses

import pytest

from chaos.run import Scenario, run

pytestmark = [pytest.mark.xdist_group("chaos"), pytest.mark.timeout(600)]

SMALL = dataclasses.replace(
    Scenario(),
    seed=11,
    min_deliveries=600,
    min_events=120,
    events_per_second=8.0,
    visibility_timeout=15,  # a killed invocation's jobs come back after this (the default is 180 s)
    kill_every=2.5,
    discard_batches=1,
    duplicate_rate=0.5,
    deliver_workers=2,
    drain_slack=30.0,
)


def test_nothing_is_lost_under_faults() -> None:
    outcome = run(SMALL, log=lambda line: None)
    print("\n".join(f"{row['figure']}: {row['value']}" for row in outcome.rows()))
    assert outcome.expected >= SMALL.min_deliveries
    assert outcome.lost == 0, outcome.lost_pairs
    assert outcome.delivered + outcome.failed == outcome.expected
    assert outcome.failed > 0  # the receivers that stay down: visibly failed, not lost
    assert outcome.trap_connections == 0
    assert outcome.bad_signatures == 0 and outcome.verified >= outcome.delivered, outcome.refusals
    assert outcome.write_errors == 0
    # No tail waiting for a periodic sweep: recovery takes the retries and a visibility timeout (the
    # tight bound is checked by `make chaos`; a loaded CI machine only gets a looser one here).
    assert outcome.drain_seconds <= outcome.drain_bound + 120
    # The faults did happen: this is not a quiet run.
    assert outcome.kills.get("FanoutFunction", 0) >= 1 and outcome.kills.get("DeliverFunction", 0) >= 1
    assert sum(n for kind, n in outcome.faults.items() if kind.endswith(":error")) > 0
    assert outcome.stream["given up to the failure queue"] == 1
    assert outcome.stream["handed over twice"] >= 1
    assert {"hang", "drip", "reset", "redirect", "status"} <= set(outcome.answers)

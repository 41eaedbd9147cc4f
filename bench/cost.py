"""Cost per million deliveries at list prices, for one and for ten endpoints per event.

Measured through the real functions on the local platform: the fan-out and delivery functions run in
their worker processes on the stream and queue triggers, and the stack meters every AWS request they
make and times every invocation (LocalPlatform.take_usage). Events are produced as the API function
produces them, by AuditLog.append in a process of their own (one API instance: one event per append,
at RATE events per second), whose AWS requests the same metering counts: the event's audit write,
its sequence reservations (blocks, as in production at that rate) and its subscription lookups are
in the figures; the API function's own Lambda cost is not. Receivers verify every signature.

Each case runs twice with the same producer and functions: a first round warms them (KMS data keys,
connections, sequence blocks), the second is measured (steady state). Priced by chaos.cost, the one
cost model (us-east-1 list prices; Lambda's SQS poller requests included).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.support import BENCH_ENV, SPAWN, quiet, quiet_child
from chaos.cost import PRICES, PRICES_DATE

RATE = 50.0  # events per second from one producer (one API instance), one event per append
# (endpoints per event, events in the warm-up round, events measured)
CASES = ((1, 100, 500), (10, 30, 120))
WRITE_TARGET_10 = 1.2  # DynamoDB writes per delivery at ten endpoints per event
COST_TARGET_10 = 1.0  # $ per million deliveries at ten endpoints per event
NEAR_FLOOR = 1.05  # "close to the floor" at one endpoint per event: within 5%
SETTLE_SECONDS = 1.5  # the last invocations' accounting reaches the stack
TENANT = "bench-cost"

TITLE = f"Cost per million deliveries at us-east-1 list prices of {PRICES_DATE} (steady state)"
NOTE = (
    "Counted from every AWS request the functions and the producer made through botocore (moto behind it), "
    f"{RATE:g} events/s from one producer. Writes / delivery: the audit write, sequence blocks and the delivery "
    "item (floor: one audit write per event plus one delivery write). Health writes are counted apart: two "
    "UpdateItems per endpoint per function instance at most every 5 s, so per delivery they depend on how long "
    "the round took on this machine, not on the deliveries; the $ include them. Reads: one consistent "
    "BatchGetItem per delivery batch, reading the batch's endpoints and delivery items. Lambda GB-s are the "
    "measured durations on this machine at the template's memory (arm64). Prices: "
    + "; ".join(text if "$" in text else f"{text} (${price:.10g})" for price, text in PRICES.values())
    + "."
)


def _producer(env: dict[str, str], conn: Connection) -> None:
    """A producer process (an API instance): appends events when asked; answers with its AWS usage."""
    import os

    os.environ.update(env)
    quiet_child()
    from bench.support import meter
    from meshanics import services
    from meshanics.model import EventInput

    metering = meter()
    log = services.audit_log()
    while True:
        command = conn.recv()
        if command is None:
            return
        tenant, first, count, rate = command
        metering.take()
        started = time.monotonic()
        sequences: list[int] = []
        for i in range(first, first + count):
            time.sleep(max(0.0, started + (i - first) / rate - time.monotonic()))
            event = EventInput("rollout.created", subject=f"rollout/r{i}", actor="bench", data={"rollout_id": f"r{i}"})
            sequences.extend(r.sequence for r in log.append(tenant, [event]))
        conn.send((sequences, metering.take()))


def run() -> list[dict[str, Any]]:
    from chaos.receivers import PROFILES, Receiver, Trap
    from meshanics_local.stack import LocalPlatform

    quiet()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as state:
        stack = LocalPlatform(
            api_port=0,
            aws_port=0,
            state_dir=Path(state),
            demo_key=False,
            pool_sizes={"*": 1, "DeliverFunction": 2},
        )
        trap = Trap()
        with stack:
            env = {**stack.parent_environment(), **BENCH_ENV}
            parent, child = SPAWN.Pipe()
            producer = SPAWN.Process(target=_producer, args=(env, child), daemon=True)
            producer.start()
            try:
                first = 0
                for per_event, warm, measured in CASES:
                    tenant = f"{TENANT}-{per_event}"
                    receivers = [
                        Receiver("steady", tenant, PROFILES["steady"][0], 7, trap.url, 0, 0) for _ in range(per_event)
                    ]
                    for r in receivers:
                        r.start()
                    try:
                        _subscribe(stack, tenant, receivers)
                        for count, kept in ((warm, False), (measured, True)):
                            row = _round(stack, parent, receivers, tenant, first, count, per_event)
                            first += count
                            if kept:
                                rows.append(row)
                    finally:
                        for r in receivers:
                            r.stop()
            finally:
                parent.send(None)
                producer.join(10)
                if producer.is_alive():
                    producer.kill()
        trap.stop()
    return rows


def _subscribe(stack: Any, tenant: str, receivers: list[Any]) -> None:
    from bench.support import pointed_at
    from meshanics import services

    with pointed_at(stack):
        for receiver in receivers:
            endpoint, secret = services.webhooks().create(
                tenant, "bench", url=receiver.url, events=["rollout.*"], allow_private_network=True
            )
            receiver.secret, receiver.endpoint_id = secret, endpoint.id


def _round(
    stack: Any, producer: Connection, receivers: list[Any], tenant: str, first: int, count: int, per_event: int
) -> dict[str, Any]:
    from chaos.cost import Usage, per_million

    stack.take_usage()
    before = sum(len(r.accepted) for r in receivers)
    producer.send((tenant, first, count, RATE))
    sequences, produced = producer.recv()
    expected = len(sequences) * per_event
    deadline = time.monotonic() + 120 + expected / 20
    while sum(len(r.accepted) for r in receivers) - before < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(SETTLE_SECONDS)
    delivered = sum(len(r.accepted) for r in receivers) - before
    if delivered != expected or any(n != 1 for r in receivers for n in r.accepted.values()):
        raise RuntimeError(f"{tenant}: {delivered} of {expected} deliveries, or duplicates; see the stack's logs")
    used = stack.take_usage()
    memory = {k: v.memory_mb for k, v in stack.functions.items()}
    sqs_triggered = {m.function for m in stack.mappings if m.kind == "sqs"}
    functions = {k: v for k, v in used.items() if k in ("FanoutFunction", "DeliverFunction")}
    usage = Usage.of(functions, memory, sqs_triggered)
    # The producer's own requests (audit write, sequence blocks, subscription lookups), not its Lambda.
    producer_requests = sum(n for name, n in produced["requests"].items() if name.startswith("dynamodb:"))
    usage = replace(
        usage,
        dynamodb_writes=usage.dynamodb_writes + produced["dynamodb_writes"],
        dynamodb_reads=usage.dynamodb_reads + produced["dynamodb_reads"],
        aws_requests=usage.aws_requests + producer_requests,
    )
    priced = per_million(usage, delivered)
    # What each function asked of AWS, into the log (the table shows the totals).
    print(f"cost {tenant}: producer {produced}", flush=True)
    for name, function_usage in functions.items():
        print(f"cost {tenant}: {name} {function_usage}", flush=True)
    deliver = functions["DeliverFunction"].requests
    writes = {
        "audit": produced["requests"].get("dynamodb:PutItem", 0),
        "sequence": produced["requests"].get("dynamodb:UpdateItem", 0),
        "delivery": deliver.get("dynamodb:PutItem", 0),
        "health": deliver.get("dynamodb:UpdateItem", 0),
    }
    unexplained = usage.dynamodb_writes - sum(writes.values())
    if unexplained:
        raise RuntimeError(f"{tenant}: {unexplained} DynamoDB writes of no known kind; see the log")
    per_delivery = (writes["audit"] + writes["sequence"] + writes["delivery"]) / delivered
    floor = (1 + per_event) / per_event
    target = WRITE_TARGET_10 if per_event == 10 else floor * NEAR_FLOOR
    dollars = priced["total $ per million deliveries"]
    return {
        "endpoints per event": per_event,
        "deliveries": delivered,
        "writes / delivery": per_delivery,
        "floor": floor,
        "target": f"<= {target:.2f}",
        "ok": "ok" if per_delivery <= target else "NO",
        "+ health writes": writes["health"] / delivered,
        "reads / delivery": usage.dynamodb_reads / delivered,
        "AWS calls / delivery": priced["AWS requests / delivery"],
        "$ per million": dollars,
        "$ target": f"<= {COST_TARGET_10:g}" if per_event == 10 else "",
        "$ ok": ("ok" if dollars <= COST_TARGET_10 else "NO") if per_event == 10 else "",
        "$ writes / reads / SQS / Lambda / KMS": " / ".join(
            f"{value:.2f}"
            for value in (
                priced["DynamoDB writes $/M"],
                priced["DynamoDB reads $/M"],
                priced["SQS requests $/M"],
                priced["Lambda requests $/M"] + priced["Lambda GB-seconds $/M"],
                priced["KMS requests $/M"],
            )
        ),
    }


if __name__ == "__main__":
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

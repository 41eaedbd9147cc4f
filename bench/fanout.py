"""Fan-out matching: finding an event's subscribers with 10, 1,000 and 100,000 endpoints in the
tenant, all but one subscribed to other event types. Matching reads only the index keys the event
type can match (`rollout.created`, `rollout.*`, `*`), so its work must not grow with the others.

What is ours is measured directly: queries and items read per event (DynamoDB's ScannedCount) and
the CPU time of matching in this process. The wall time is shown too, but through moto it grows
with the table, because moto's Query looks at every item of the table (DynamoDB reads only the
partition).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.client

from bench.support import aws_resources

SIZES = (10, 1_000, 100_000)
EVENTS = 200


def _load_index(tenant: str, others: int) -> None:
    """Index items as endpoint creation writes them: `others` on device.enrolled, one on rollout.*."""
    from meshanics import dynamo, services
    from meshanics.config import settings

    table = settings().integrations_table
    client = services.dynamodb()
    items = [
        {"pk": dynamo.subscription_pk(tenant, "device.enrolled"), "sk": f"ep_{i:024x}", "subscribed_after": 0}
        for i in range(others)
    ]
    items.append({"pk": dynamo.subscription_pk(tenant, "rollout.*"), "sk": "ep_" + "f" * 24, "subscribed_after": 0})

    def write(chunk: Any) -> None:
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": dynamo.to_item(i)}} for i in chunk]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, list(dynamo.chunks(items, 25))))


@contextlib.contextmanager
def reads() -> Iterator[Counter[str]]:
    """Count Query calls and the items DynamoDB reports having read for them."""
    counts: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]

    def counted(self: Any, operation: str, params: Any) -> Any:
        response = original(self, operation, params)
        if operation == "Query":
            counts["queries"] += 1
            counts["items"] += int(response.get("ScannedCount", 0))
        return response

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[attr-defined]
    try:
        yield counts
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[attr-defined]


def run() -> list[dict[str, Any]]:
    from meshanics import services
    from meshanics.envelope import AuditRecord

    rows = []
    with aws_resources():
        for size in SIZES:
            tenant = f"match-{size}"
            started = time.perf_counter()
            _load_index(tenant, size - 1)
            loaded = time.perf_counter() - started
            timings, cpu = [], []
            with reads() as scanned:
                for sequence in range(1, EVENTS + 1):
                    record = AuditRecord(tenant, sequence, "e", "rollout.created", "2026-01-01T00:00:00Z", "s", "a", {})
                    fan = services.fanout()  # a fresh batch: no cached lookups
                    began, began_cpu = time.perf_counter(), time.process_time()
                    jobs = fan.plan(record)
                    timings.append(time.perf_counter() - began)
                    cpu.append(time.process_time() - began_cpu)
                    assert len(jobs) == 1
            rows.append(
                {
                    "endpoints in tenant": f"{size:,}",
                    "matching": 1,
                    "queries/event": scanned["queries"] / EVENTS,
                    "items read/event": scanned["items"] / EVENTS,
                    "CPU ms/event (ours)": statistics.median(cpu) * 1000,
                    "wall ms/event via moto": statistics.median(timings) * 1000,
                    "setup s": loaded,
                }
            )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table("Fan-out: per-event matching time vs endpoints in the tenant", run())

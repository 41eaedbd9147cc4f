"""The `#TENANT` item: a tenant's audit sequence counter and its endpoint and registry counts.

Sequences are reserved in blocks (one UpdateItem per block), so under load the counter item takes
one write per up to `SEQUENCE_BLOCK` events rather than one per event, and is never a tenant's
bottleneck. A block grows only while it is used up within its lifetime (doubling, up to
`SEQUENCE_BLOCK`) and falls back to exactly what is asked when it was not: a quiet producer takes
one sequence at a time, so its sequences follow the order of the writes. A block is used by one
process for at most `BLOCK_LIFETIME` seconds, so under load sequences of different producers
interleave by at most that much. A sequence is never reused: what a block does not use is a gap.

So sequences follow time, within `SEQUENCE_SKEW`: a record is never recorded more than that before
one with a lower sequence. Searches of a time window rely on it (they read by sequence).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshanics.store.items import to_item

TENANT_SK = "#TENANT"
SEQUENCE_BLOCK = 100
BLOCK_LIFETIME = 1.0
# BLOCK_LIFETIME, plus a reservation's round trip and the clock difference of two producers, with
# a wide margin (a search reads this much more of the history than its window).
SEQUENCE_SKEW = 60.0


def tenant_pk(tenant_id: str) -> str:
    """The tenant's own partition: its endpoints, keys, registries and counters."""
    return f"T#{tenant_id}"


def tenant_key(tenant_id: str) -> dict[str, Any]:
    return to_item({"pk": tenant_pk(tenant_id), "sk": TENANT_SK})


@dataclass
class _Block:
    next: int
    last: int
    expires: float
    size: int

    @property
    def used_up(self) -> bool:
        return self.next > self.last


class TenantCounters:
    # Wall time, not monotonic: a block must also expire while its execution environment is frozen
    # between invocations (a monotonic clock may not advance then).
    def __init__(self, client: Callable[[], Any], table: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock
        self._blocks: dict[str, _Block] = {}
        self._lock = threading.Lock()

    def sequences(self, tenant_id: str, count: int) -> list[int]:
        """`count` new sequences for the tenant, increasing (from reserved blocks)."""
        taken: list[int] = []
        with self._lock:
            while len(taken) < count:
                block = self._blocks.get(tenant_id)
                now = self._clock()
                if block is None or block.used_up or block.expires < now:
                    busy = block is not None and block.used_up and block.expires >= now
                    size = min(SEQUENCE_BLOCK, 2 * block.size) if busy and block else 1
                    want = max(size, count - len(taken))
                    last = self._reserve(tenant_id, want)
                    block = self._blocks[tenant_id] = _Block(last - want + 1, last, now + BLOCK_LIFETIME, want)
                take = min(count - len(taken), block.last - block.next + 1)
                taken.extend(range(block.next, block.next + take))
                block.next += take
        return taken

    def _reserve(self, tenant_id: str, count: int) -> int:
        response = self._client().update_item(
            TableName=self._table,
            Key=tenant_key(tenant_id),
            UpdateExpression="ADD #seq :n",
            ExpressionAttributeNames={"#seq": "sequence"},
            ExpressionAttributeValues={":n": {"N": str(count)}},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["sequence"]["N"])

    def reserved(self, tenant_id: str) -> int:
        """The highest sequence reserved so far (0 for a new tenant)."""
        response = self._client().get_item(
            TableName=self._table,
            Key=tenant_key(tenant_id),
            ConsistentRead=True,
            ProjectionExpression="#seq",
            ExpressionAttributeNames={"#seq": "sequence"},
        )
        return int(response.get("Item", {}).get("sequence", {}).get("N", 0))

    def count_change(self, tenant_id: str, counter: str, delta: int, *, limit: int | None = None) -> dict[str, Any]:
        """A transaction item that adds `delta` to a count, refused at `limit` (for creations)."""
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": tenant_key(tenant_id),
            "UpdateExpression": "ADD #count :delta",
            "ExpressionAttributeNames": {"#count": counter},
            "ExpressionAttributeValues": {":delta": {"N": str(delta)}},
        }
        if limit is not None:
            update["ConditionExpression"] = "attribute_not_exists(#count) OR #count < :limit"
            update["ExpressionAttributeValues"][":limit"] = {"N": str(limit)}
        return {"Update": update}

"""Endpoint health: a state item and hourly counters per endpoint, kept with the attempts.

Items, in their own partition per endpoint (`T#<tenant>#EPH#<endpoint>`, apart from the delivery
items so a history Query never meets them):
* `HEALTH`: `consecutive_failures`, `failing_since` (the first failed attempt after the last
  success), `last_success_at`, `last_failure_at`, `last_status_code`;
* `H#<yyyymmddhh>` (UTC hour): `delivered` (attempts that succeeded), `retried` (failed attempts
  with another one to come), `failed` (deliveries that failed for good), `l<i>` (attempt latency
  histogram, bucket i of LATENCY_BUCKETS_MS), `e:<kind>` (failed attempts by kind of error), and a
  TTL a day past the longest stats window.

The deliverer adds what one function instance saw since its last write (see meshanics.health): two
UpdateItems per endpoint at most every few seconds, never a read of the attempts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from meshanics.store.batch import batch_get
from meshanics.store.items import from_item, to_item, to_value

# Upper bounds (ms) of the latency histogram's buckets; the last one is open.
LATENCY_BUCKETS_MS: tuple[int, ...] = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000)
ERROR_PREFIX = "e:"
HOURS_KEPT = 8 * 24
STATE_KEPT_SECONDS = 90 * 86_400  # the state of an endpoint silent (or deleted) that long expires


def health_pk(tenant_id: str, endpoint_id: str) -> str:
    return f"T#{tenant_id}#EPH#{endpoint_id}"


def hour_of(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y%m%d%H")


def _key(tenant_id: str, endpoint_id: str, sort_key: str) -> dict[str, Any]:
    return to_item({"pk": health_pk(tenant_id, endpoint_id), "sk": sort_key})


@dataclass
class HealthDelta:
    """What one instance saw of an endpoint since its last write (attempts that made a POST)."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    errors: dict[str, int] = field(default_factory=dict)
    last_success_at: str | None = None
    last_failure_at: str | None = None
    last_status_code: int | None = None
    # Failed attempts after the last success in this delta (all of them if there was none), and
    # when the first of those was made.
    trailing_failures: int = 0
    trailing_failure_since: str | None = None

    @property
    def attempts(self) -> int:
        return self.delivered + self.retried + self.failed


@dataclass(frozen=True)
class HealthState:
    consecutive_failures: int = 0
    failing_since: str | None = None
    last_success_at: str | None = None
    last_failure_at: str | None = None
    last_status_code: int | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> HealthState:
        return cls(
            consecutive_failures=int(values.get("consecutive_failures", 0)),
            failing_since=values.get("failing_since"),
            last_success_at=values.get("last_success_at"),
            last_failure_at=values.get("last_failure_at"),
            last_status_code=values.get("last_status_code"),
        )


@dataclass(frozen=True)
class HourStats:
    hour: str
    delivered: int
    retried: int
    failed: int
    latency: tuple[int, ...]
    errors: Mapping[str, int]

    @classmethod
    def of(cls, hour: str, values: Mapping[str, Any]) -> HourStats:
        return cls(
            hour=hour,
            delivered=int(values.get("delivered", 0)),
            retried=int(values.get("retried", 0)),
            failed=int(values.get("failed", 0)),
            latency=tuple(int(values.get(f"l{i}", 0)) for i in range(len(LATENCY_BUCKETS_MS) + 1)),
            errors={k.removeprefix(ERROR_PREFIX): int(v) for k, v in values.items() if k.startswith(ERROR_PREFIX)},
        )


class HealthStore:
    def __init__(self, client: Callable[[], Any], table: str) -> None:
        self._client = client
        self._table = table

    def add(self, tenant_id: str, endpoint_id: str, delta: HealthDelta, *, now: float | None = None) -> HealthState:
        """Add an instance's delta to the endpoint's hour and state; the state as it is now."""
        moment = time.time() if now is None else now
        self._add_to_hour(tenant_id, endpoint_id, delta, moment)
        return self._update_state(tenant_id, endpoint_id, delta, moment)

    def _add_to_hour(self, tenant_id: str, endpoint_id: str, delta: HealthDelta, moment: float) -> None:
        counters: dict[str, int] = {"delivered": delta.delivered, "retried": delta.retried, "failed": delta.failed}
        counters |= {f"l{i}": n for i, n in enumerate(delta.latency)}
        counters |= {ERROR_PREFIX + kind: n for kind, n in delta.errors.items()}
        names: dict[str, str] = {"#ttl": "expires_at"}
        values: dict[str, Any] = {":ttl": to_value(int(moment) + HOURS_KEPT * 3600)}
        adds = []
        for i, (name, count) in enumerate(c for c in counters.items() if c[1]):
            names[f"#a{i}"] = name
            values[f":a{i}"] = to_value(count)
            adds.append(f"#a{i} :a{i}")
        expression = "SET #ttl = :ttl" + (" ADD " + ", ".join(adds) if adds else "")
        self._client().update_item(
            TableName=self._table,
            Key=_key(tenant_id, endpoint_id, f"H#{hour_of(moment)}"),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _update_state(self, tenant_id: str, endpoint_id: str, delta: HealthDelta, moment: float) -> HealthState:
        sets: list[str] = ["expires_at = :ttl"]
        removes: list[str] = []
        adds: list[str] = []
        values: dict[str, Any] = {":ttl": int(moment) + STATE_KEPT_SECONDS}
        if delta.last_success_at is not None:
            # A success resets the run of failures to the ones that followed it.
            sets.append("last_success_at = :success, consecutive_failures = :trailing")
            values[":success"] = delta.last_success_at
            values[":trailing"] = delta.trailing_failures
            if delta.trailing_failures:
                sets.append("failing_since = :since")
                values[":since"] = delta.trailing_failure_since
            else:
                removes.append("failing_since")
        elif delta.trailing_failures:
            adds.append("consecutive_failures :trailing")
            values[":trailing"] = delta.trailing_failures
            sets.append("failing_since = if_not_exists(failing_since, :since)")
            values[":since"] = delta.trailing_failure_since
        if delta.last_failure_at is not None:
            sets.append("last_failure_at = :failure")
            values[":failure"] = delta.last_failure_at
        if delta.last_status_code is not None:
            sets.append("last_status_code = :code")
            values[":code"] = delta.last_status_code
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets),
                "REMOVE " + ", ".join(removes) if removes else "",
                "ADD " + ", ".join(adds) if adds else "",
            )
            if part
        )
        response = self._client().update_item(
            TableName=self._table,
            Key=_key(tenant_id, endpoint_id, "HEALTH"),
            UpdateExpression=expression,
            ExpressionAttributeValues=to_item(values),
            ReturnValues="ALL_NEW",
        )
        return HealthState.of(from_item(response.get("Attributes", {})))

    # -- reads -------------------------------------------------------------------------------
    def read(
        self, tenant_id: str, endpoint_id: str, *, hours: int, now: float | None = None
    ) -> tuple[HealthState, list[HourStats]]:
        """The state and the last `hours` hours' counters (the current hour included), in one read."""
        moment = time.time() if now is None else now
        start = datetime.fromtimestamp(moment, UTC)
        wanted = [(start - timedelta(hours=h)).strftime("%Y%m%d%H") for h in range(hours)]
        keys = [_key(tenant_id, endpoint_id, "HEALTH")] + [_key(tenant_id, endpoint_id, f"H#{h}") for h in wanted]
        found = batch_get(self._client(), self._table, keys)
        state = HealthState()
        stats: list[HourStats] = []
        for (_pk, sk), item in found.items():
            values = from_item(item)
            if sk == "HEALTH":
                state = HealthState.of(values)
            else:
                stats.append(HourStats.of(sk.removeprefix("H#"), values))
        stats.sort(key=lambda s: s.hour)
        return state, stats

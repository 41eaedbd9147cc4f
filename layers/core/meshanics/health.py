"""Endpoint health, kept up to date by the deliverer as it attempts deliveries.

Each function instance tallies the attempts it made per endpoint and adds the tally to the store
(meshanics.store.health) at the end of a batch: at once when the endpoint's state turns (its first
attempt seen by this instance, a success after failures, a failure after successes) and otherwise
at most every FLUSH_SECONDS, so a busy endpoint costs two writes per instance every few seconds,
not per delivery. An instance stopped between two writes loses at most those seconds of counters;
the state (failing or not, since when) is written when it turns, so it is not lost that way.

Two rules act on what the store answers:
* an endpoint that has failed every attempt since `failing_since`, for longer than the configured
  period, is disabled (`failing`);
* a receiver answering 410 Gone to a live delivery disables its endpoint at once (`gone`).
Both go through the same switch as the API (EndpointSwitch) and write `webhook.disabled`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshanics.clock import now_iso, parse_iso
from meshanics.model import Attempt
from meshanics.store.health import LATENCY_BUCKETS_MS, HealthDelta, HealthState, HealthStore, HourStats

if TYPE_CHECKING:
    from meshanics.switch import EndpointSwitch

log = logging.getLogger("meshanics.health")

FLUSH_SECONDS = 5.0
GONE = 410
TOP_ERRORS = 5


def error_kind(status_code: int | None, error: str | None) -> str:
    """A failed attempt's error, reduced to a small fixed set of kinds (counted per hour)."""
    if status_code is not None:
        return f"HTTP {status_code}"
    text = (error or "").lower()
    for prefix, kind in (
        ("connect timeout", "timeout"),
        ("no response within", "timeout"),
        ("no complete answer", "timeout"),
        ("connection failed", "connection failed"),
        ("tls error", "TLS error"),
        ("connection error", "connection error"),
        ("refused by egress guard", "refused by egress guard"),
        ("could not unseal", "signing secret unavailable"),
    ):
        if text.startswith(prefix):
            return kind
    return "other"


@dataclass
class _Tally:
    delta: HealthDelta = field(default_factory=HealthDelta)
    started: float = 0.0
    turned: bool = False  # the state changed within this tally: write it at once


@dataclass
class Observed:
    """One POST made for a live delivery, and what it left the delivery in."""

    tenant_id: str
    endpoint_id: str
    attempt: Attempt
    final: bool  # failed for good (no attempt left) or delivered


class HealthRecorder:
    def __init__(
        self,
        store: HealthStore,
        *,
        switch: Callable[[], EndpointSwitch],
        disable_after_seconds: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._switch = switch
        self._disable_after = disable_after_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._tallies: dict[tuple[str, str], _Tally] = {}
        # Whether each endpoint was failing as last written by this instance (None: not known yet).
        self._failing: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    def observe(self, seen: Sequence[Observed]) -> None:
        with self._lock:
            for o in seen:
                key = (o.tenant_id, o.endpoint_id)
                tally = self._tallies.get(key)
                if tally is None:
                    tally = self._tallies[key] = _Tally(started=self._monotonic())
                self._add(key, tally, o)

    def _add(self, key: tuple[str, str], tally: _Tally, o: Observed) -> None:
        d, a = tally.delta, o.attempt
        d.latency[bisect.bisect_left(LATENCY_BUCKETS_MS, a.duration_ms)] += 1
        if a.status_code is not None:
            d.last_status_code = a.status_code
        was_failing = self._failing.get(key)
        if a.outcome == "delivered":
            d.delivered += 1
            d.last_success_at = a.at
            d.trailing_failures, d.trailing_failure_since = 0, None
            tally.turned |= was_failing is not False
            self._failing[key] = False
            return
        if o.final:
            d.failed += 1
        else:
            d.retried += 1
        kind = error_kind(a.status_code, a.error)
        d.errors[kind] = d.errors.get(kind, 0) + 1
        d.last_failure_at = a.at
        d.trailing_failures += 1
        d.trailing_failure_since = d.trailing_failure_since or a.at
        tally.turned |= was_failing is not True or a.status_code == GONE
        self._failing[key] = True

    def flush(self, *, force: bool = False) -> None:
        """Write the tallies that are due; act on what the store says of each endpoint."""
        now = self._monotonic()
        with self._lock:
            due = {
                key: tally
                for key, tally in self._tallies.items()
                if force or tally.turned or now - tally.started >= FLUSH_SECONDS
            }
            for key in due:
                del self._tallies[key]
        for (tenant_id, endpoint_id), tally in due.items():
            try:
                state = self._store.add(tenant_id, endpoint_id, tally.delta, now=self._clock())
            except Exception:
                # Counters are best effort; the next write carries the state again.
                log.exception("could not write the health of %s", endpoint_id)
                with self._lock:
                    self._failing.pop((tenant_id, endpoint_id), None)
                continue
            self._act(tenant_id, endpoint_id, state, tally.delta)

    def _act(self, tenant_id: str, endpoint_id: str, state: HealthState, delta: HealthDelta) -> None:
        if delta.last_status_code == GONE and delta.trailing_failures:
            self._disable(tenant_id, endpoint_id, "gone", state)
            return
        if self._disable_after <= 0 or not state.consecutive_failures or state.failing_since is None:
            return
        if parse_iso(state.failing_since) <= self._clock() - self._disable_after:
            self._disable(tenant_id, endpoint_id, "failing", state)

    def _disable(self, tenant_id: str, endpoint_id: str, reason: str, state: HealthState) -> None:
        try:
            self._switch().disable(
                tenant_id,
                endpoint_id,
                reason=reason,
                failing_since=state.failing_since if reason == "failing" else None,
                last_status_code=state.last_status_code,
            )
        except Exception:
            log.exception("could not disable %s (%s); the next write of its health tries again", endpoint_id, reason)
            with self._lock:
                self._failing.pop((tenant_id, endpoint_id), None)


# -- reading it back ------------------------------------------------------------------------------
def percentile(histogram: Sequence[int], fraction: float) -> int | None:
    """The latency (ms) below which `fraction` of the attempts fell, interpolated in its bucket."""
    total = sum(histogram)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = LATENCY_BUCKETS_MS[index - 1] if index else 0
            if index == len(LATENCY_BUCKETS_MS):
                return low  # the open bucket: at least its lower bound
            high = LATENCY_BUCKETS_MS[index]
            return round(low + (high - low) * (rank - seen) / count)
        seen += count
    return LATENCY_BUCKETS_MS[-1]


def summarize(hours: Sequence[HourStats]) -> dict[str, Any]:
    delivered = sum(h.delivered for h in hours)
    retried = sum(h.retried for h in hours)
    failed = sum(h.failed for h in hours)
    attempts = delivered + retried + failed
    histogram = [sum(h.latency[i] for h in hours) for i in range(len(LATENCY_BUCKETS_MS) + 1)]
    errors: dict[str, int] = {}
    for h in hours:
        for kind, count in h.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    top = sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERRORS]
    return {
        "attempts": attempts,
        "delivered": delivered,
        "retried": retried,
        "failed": failed,
        "success_rate": round(delivered / attempts, 4) if attempts else None,
        "latency_ms": {"p50": percentile(histogram, 0.5), "p95": percentile(histogram, 0.95)},
        "top_errors": [{"error": kind, "count": count} for kind, count in top],
    }


class HealthReader:
    WINDOWS = {"24h": 24, "7d": 7 * 24}

    def __init__(self, store: HealthStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def health(self, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        """What GET /v1/webhooks/{id} shows: the state and the last 24 hours' success rate."""
        state, hours = self._store.read(tenant_id, endpoint_id, hours=24, now=self._clock())
        summary = summarize(hours)
        return {
            "consecutive_failures": state.consecutive_failures,
            "failing_since": state.failing_since,
            "last_success_at": state.last_success_at,
            "last_failure_at": state.last_failure_at,
            "last_status_code": state.last_status_code,
            "attempts_24h": summary["attempts"],
            "success_rate_24h": summary["success_rate"],
        }

    def stats(self, tenant_id: str, endpoint_id: str, window: str) -> dict[str, Any]:
        now = self._clock()
        hours = self.WINDOWS[window]
        _state, found = self._store.read(tenant_id, endpoint_id, hours=hours, now=now)
        return {"window": window, "from": now_iso(now - hours * 3600), "to": now_iso(now)} | summarize(found)

"""The append-only audit log: the one way any producer records a platform event.

`AuditLog.append` validates each event against the catalog (type, declared fields, size), numbers
it (the tenant's sequences, reserved in blocks), matches it against the tenant's subscriptions (read
consistently, then reused for at most `SubscriptionCacheMs`),
serializes its delivery envelope once, and writes it to the subject's shard of the tenant. The
endpoints subscribed at that moment are stored with the event: fan-out only sends their jobs, and
an endpoint receives exactly the events written after it subscribed (and before it stopped).
A sequence is never reused: a failed write leaves a gap, never a duplicate.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from meshanics import catalog, envelope, filters, parallel
from meshanics.config import Limits
from meshanics.errors import InvalidInput, LimitExceeded, MeshanicsError
from meshanics.ids import check_tenant
from meshanics.model import AuditRecord, EventInput
from meshanics.store.audit import AuditTable
from meshanics.store.endpoints import EndpointStore
from meshanics.store.tenants import TenantCounters

# Fixed product limits, from the one place every limit comes from.
MAX_SUBJECT = Limits.max_subject_length
MAX_ACTOR = Limits.max_actor_length
MAX_EVENTS = Limits.max_events_per_request


def rfc3339(moment: datetime) -> str:
    """UTC, second precision with milliseconds when present: 2026-06-16T09:30:00Z."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not an RFC 3339 timestamp", field="occurred_at") from None
    if moment.tzinfo is None:
        raise InvalidInput("occurred_at must carry a time zone (e.g. Z)", field="occurred_at")
    return moment


def validate(event: EventInput, *, max_record_bytes: int) -> dict[str, Any]:
    """The event's clean data, or a clear error: unknown type, undeclared field, oversized record."""
    data = catalog.validate_data(event.type, event.data)
    if not event.subject or len(event.subject) > MAX_SUBJECT:
        raise InvalidInput(f"subject must be 1-{MAX_SUBJECT} characters", field="subject")
    if not event.actor or len(event.actor) > MAX_ACTOR:
        raise InvalidInput(f"actor must be 1-{MAX_ACTOR} characters", field="actor")
    size = len(json.dumps(data, separators=(",", ":")).encode()) + len(event.subject) + len(event.actor)
    if size > max_record_bytes:
        raise LimitExceeded(
            f"{event.type}: record is {size} bytes, above the {max_record_bytes}-byte limit", field="data"
        )
    return data


class Subscriptions:
    """What the subscription index says, as producers read it when they write events.

    Each index key is read strongly consistently and then reused for `cache_seconds`, so a busy
    tenant's producers do not all read the same few index items for every event. A subscription
    change waits that long before it answers (`settle`): every event written after the change has
    answered is matched against it, as if nothing were cached.
    """

    def __init__(self, endpoints: EndpointStore, *, cache_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._endpoints = endpoints
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def subscribers(self, tenant_id: str, keys: Sequence[str]) -> dict[str, list[str]]:
        now = self._clock()
        with self._lock:
            fresh = {k: hit[1] for k in keys if (hit := self._cache.get((tenant_id, k))) and hit[0] > now}
        missing = [k for k in keys if k not in fresh]
        read = parallel.each(lambda key: self._endpoints.subscribers(tenant_id, key), missing)
        if self._cache_seconds > 0:
            with self._lock:
                for key, ids in zip(missing, read, strict=True):
                    self._cache[(tenant_id, key)] = (now + self._cache_seconds, ids)
        return fresh | dict(zip(missing, read, strict=True))

    def settle(self, tenant_id: str) -> None:
        """After a subscription change: forget this process's copy, and wait until every other
        producer's copy is too old to be used."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == tenant_id]:
                del self._cache[key]
        if self._cache_seconds > 0:
            time.sleep(self._cache_seconds)


class AuditLog:
    def __init__(
        self,
        *,
        table: AuditTable,
        counters: TenantCounters,
        subscriptions: Subscriptions,
        max_record_bytes: int,
    ) -> None:
        self.table = table
        self.subscriptions = subscriptions
        self._counters = counters
        self._max_record_bytes = max_record_bytes

    def append(self, tenant_id: str, events: Sequence[EventInput]) -> list[AuditRecord]:
        """Validate and write up to 100 events atomically; return them with their sequences."""
        check_tenant(tenant_id)
        if not events:
            return []
        if len(events) > MAX_EVENTS:
            raise LimitExceeded(f"at most {MAX_EVENTS} events per write", field="events")
        cleaned = []
        for index, event in enumerate(events):
            try:
                cleaned.append(validate(event, max_record_bytes=self._max_record_bytes))
            except MeshanicsError as error:
                if len(events) > 1:  # name the event of a batch the error is about
                    error.field = f"events.{index}.{error.field or ''}".rstrip(".")
                    error.message = f"events[{index}]: {error.message}"
                raise
        subscribed = self._subscribed(tenant_id, {e.type for e in events})
        sequences = self._counters.sequences(tenant_id, len(events))
        now = datetime.now(UTC)
        records = []
        for sequence, event, data in zip(sequences, events, cleaned, strict=True):
            endpoints = subscribed[event.type]
            if catalog.CATALOG[event.type].operational:  # never to the endpoint it is about
                endpoints = tuple(e for e in endpoints if e != data.get("webhook_id"))
            record = AuditRecord(
                tenant_id=tenant_id,
                sequence=sequence,
                event_id=secrets.token_hex(10),
                type=event.type,
                occurred_at=rfc3339(event.occurred_at or now),
                subject=event.subject,
                actor=event.actor,
                data=data,
                partition=self.table.partition(tenant_id, event.subject),
                endpoints=endpoints,
                recorded_at=rfc3339(now),
            )
            records.append(replace(record, body=envelope.serialize(record)))
        self.table.put(records)
        return records

    def _subscribed(self, tenant_id: str, event_types: set[str]) -> dict[str, tuple[str, ...]]:
        """Per event type, the ids of the tenant's endpoints subscribed to it now (index lookups of
        the keys a type can match, side by side, each key once)."""
        wanted = {t: filters.candidate_keys(t) if catalog.CATALOG[t].subscribable else [] for t in event_types}
        found = self.subscriptions.subscribers(tenant_id, sorted({key for keys in wanted.values() for key in keys}))
        return {t: tuple(sorted({e for key in keys for e in found[key]})) for t, keys in wanted.items()}

    def current_sequence(self, tenant_id: str) -> int:
        """The highest sequence reserved for the tenant so far."""
        return self._counters.reserved(tenant_id)

    def get(self, partition: str, sequence: int) -> AuditRecord | None:
        return self.table.get(partition, sequence)

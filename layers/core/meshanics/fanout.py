"""Fan-out: each new audit record becomes one delivery (record + queued job) per subscribed endpoint.

Matching looks up only the index keys an event type can match (`a.b`, `a.*`, `*`); an endpoint gets
the event only if its sequence is after the endpoint's subscription point, even when the stream
delivers an older record late. Lookups are cached for one batch: every record in a batch was written
before the batch started, and an endpoint subscribed since then has a later subscription point.
Writes and sends are batched across the whole stream batch to keep AWS calls per delivery low, and
the independent calls of each step (lookups, record writes, job sends) are made side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshanics import catalog, dynamo, envelope, filters, parallel
from meshanics.deliveries import DeliveryJob, DeliveryStore
from meshanics.endpoints import EndpointStore
from meshanics.envelope import AuditRecord
from meshanics.jobqueue import DeliveryQueue

log = logging.getLogger("meshanics.fanout")


@dataclass
class FanOutReport:
    failed_items: set[str] = field(default_factory=set)
    created: int = 0
    duplicates: int = 0


class FanOut:
    def __init__(self, endpoints: EndpointStore, deliveries: DeliveryStore, queue: DeliveryQueue) -> None:
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._queue = queue
        self._subscribers: dict[tuple[str, str], dict[str, int]] = {}

    def fan_out(self, records: Mapping[str, AuditRecord]) -> FanOutReport:
        """Records and jobs for a batch of audit records (item id -> record); reports failed items."""
        self._look_up(records.values())
        return self.commit({item: self.plan(record) for item, record in records.items()})

    def _look_up(self, records: Iterable[AuditRecord]) -> None:
        """Every subscription lookup the records need, made side by side (each key once)."""
        wanted = sorted(
            {
                (r.tenant_id, key)
                for r in records
                if _subscribable(r.type)
                for key in filters.candidate_keys(r.type)
                if (r.tenant_id, key) not in self._subscribers
            }
        )
        found = parallel.each(lambda pair: self._endpoints.subscribers(*pair), wanted)
        self._subscribers.update(zip(wanted, found, strict=True))

    def plan(self, record: AuditRecord) -> list[DeliveryJob]:
        """The jobs one audit record needs (nothing is written yet)."""
        if not _subscribable(record.type):
            return []
        matched: set[str] = set()
        for key in filters.candidate_keys(record.type):
            for endpoint_id, subscribed_after in self._lookup(record.tenant_id, key).items():
                if record.sequence > subscribed_after:
                    matched.add(endpoint_id)
        if not matched:
            return []
        body = envelope.serialize(record)
        return [
            DeliveryJob(
                tenant_id=record.tenant_id,
                endpoint_id=endpoint_id,
                sequence=record.sequence,
                event_type=record.type,
                idempotency_key=record.idempotency_key,
                body=body,
            )
            for endpoint_id in sorted(matched)
        ]

    def _lookup(self, tenant_id: str, key: str) -> dict[str, int]:
        cached = self._subscribers.get((tenant_id, key))
        if cached is None:
            cached = self._subscribers[(tenant_id, key)] = self._endpoints.subscribers(tenant_id, key)
        return cached

    def commit(self, planned: Mapping[str, Sequence[DeliveryJob]]) -> FanOutReport:
        """Create records then enqueue jobs for every planned item; report the items that failed.

        A job whose record was attempted already (a redelivered stream record) is not enqueued
        again; one whose record exists but was never attempted is (an earlier run may have stopped
        before enqueueing it). An item whose records or jobs could not all be written is reported
        failed: the stream hands it over again, and that run sends whatever is still unsent.
        """
        report = FanOutReport()
        owner = {(job.tenant_id, job.endpoint_id, job.sequence): item for item, jobs in planned.items() for job in jobs}
        all_jobs = [job for jobs in planned.values() for job in jobs]

        def create(chunk: Sequence[DeliveryJob]) -> tuple[list[DeliveryJob], int] | None:
            try:
                return self._deliveries.create_pending(chunk)
            except Exception:
                log.exception("could not create delivery records")
                return None

        chunks = list(dynamo.chunks(all_jobs, 100))
        to_send: list[DeliveryJob] = []
        for chunk, created in zip(chunks, parallel.each(create, chunks), strict=True):
            if created is None:
                report.failed_items.update(owner[_key(job)] for job in chunk)
                continue
            sendable, done = created
            report.duplicates += done
            to_send.extend(sendable)
        unsent = self._queue.send(to_send)
        report.failed_items.update(owner[_key(job)] for job in unsent)
        report.created = len(to_send) - len(unsent)
        return report


def _subscribable(event_type: str) -> bool:
    declared = catalog.CATALOG.get(event_type)
    return declared is not None and declared.subscribable


def _key(job: DeliveryJob) -> tuple[str, str, int]:
    return (job.tenant_id, job.endpoint_id, job.sequence)

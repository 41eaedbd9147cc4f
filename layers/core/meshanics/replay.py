"""Replays, and the scheduled sweep that keeps nothing stuck.

One way to replay a failed delivery, used by the API and the sweep: enqueue its job first, starting
a new run of the retry schedule at the record's attempt count, then show the record as pending. A
crash between the two leaves the record failed with the job queued; the job is accepted as the
replay when it arrives (see `Delivery.accepts`), so nothing is ever pending without a job.

The sweep runs two passes:
* the dead-letter queue holds only jobs the delivery function failed to process many times in a row
  (SQS's maxReceiveCount, a backstop above the attempt bound): their deliveries are marked failed,
  visible and replayable, and the letters dropped; a letter that is not a job is set aside for an
  operator without stopping the sweep;
* failed deliveries (the `failed` index) are replayed automatically once their endpoint has
  delivered successfully again (the receiver is back), within the per-delivery replay bound.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from meshanics.errors import Conflict, MeshanicsError, NotFound
from meshanics.jobqueue import DeadLetters, DeliveryQueue
from meshanics.model import MAX_REPLAYS, Delivery, DeliveryFilter
from meshanics.store.audit import AuditTable
from meshanics.store.deliveries import DeliveryStore
from meshanics.store.endpoints import EndpointStore

log = logging.getLogger("meshanics.replay")

DEAD_LETTER_VISIBILITY = 300


class ServiceUnavailable(MeshanicsError):
    status = 503
    code = "unavailable"


@dataclass
class SweepReport:
    dead_letters_seen: int = 0
    dead_letters_dropped: int = 0
    dead_letters_malformed: int = 0
    marked_failed: int = 0
    failed_seen: int = 0
    replayed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def replay(deliveries: DeliveryStore, audit: AuditTable, queue: DeliveryQueue, delivery: Delivery) -> None:
    """Send a settled delivery (failed or delivered) again: same bytes, same idempotency key,
    attempt numbering continued. A pending one is already on its way: a conflict."""
    if delivery.status == "pending":
        raise Conflict("this delivery is pending (an attempt is on its way); replay it once it is settled")
    if delivery.replays >= MAX_REPLAYS:
        raise Conflict(f"this delivery was already replayed {MAX_REPLAYS} times")
    record = audit.get(delivery.partition, delivery.sequence)
    if record is None:
        raise Conflict("the event is no longer in the audit log (past its retention); it cannot be replayed")
    job = delivery.job(record.body, attempt_base=delivery.attempt_count)
    if queue.send([job]):
        raise ServiceUnavailable("the delivery queue did not accept the job; retry the request")
    deliveries.reopen(delivery)  # False: the job ran already, which is just as good


class Replayer:
    def __init__(
        self,
        *,
        deliveries: DeliveryStore,
        endpoints: EndpointStore,
        audit: AuditTable,
        queue: DeliveryQueue,
        dead_letters: DeadLetters,
    ) -> None:
        self._deliveries = deliveries
        self._audit = audit
        self._endpoints = endpoints
        self._queue = queue
        self._dead = dead_letters

    def run(self, *, max_dead_letters: int = 1000, max_replays: int = 500) -> SweepReport:
        report = SweepReport()
        self.settle_dead_letters(report, limit=max_dead_letters)
        self.replay_recovered(report, limit=max_replays)
        return report

    def settle_dead_letters(self, report: SweepReport, *, limit: int) -> None:
        while report.dead_letters_seen < limit:
            batch = self._dead.receive(max_messages=10, visibility=DEAD_LETTER_VISIBILITY)
            if not batch:
                return
            drop: list[str] = []
            aside: list[str] = []
            for letter in batch:
                report.dead_letters_seen += 1
                if letter.job is None:
                    report.dead_letters_malformed += 1
                    aside.append(letter.receipt_handle)
                    continue
                job = letter.job
                delivery = self._deliveries.find(job.tenant_id, job.endpoint_id, job.sequence)
                never_attempted = delivery is None and job.attempt_base == 0
                stuck = never_attempted or (
                    delivery is not None and delivery.status == "pending" and delivery.accepts(job)
                )
                # The function failed on this job every time it received it: failed, replayable.
                if stuck and self._deliveries.mark_failed(
                    letter.job, "the delivery function failed repeatedly on this job; replay to retry"
                ):
                    report.marked_failed += 1
                drop.append(letter.receipt_handle)
            report.dead_letters_dropped += len(drop)
            self._dead.delete(drop)
            self._dead.set_aside(aside)

    def replay_recovered(self, report: SweepReport, *, limit: int) -> None:
        by_endpoint: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for failed in self._deliveries.failed(limit=limit):
            report.failed_seen += 1
            by_endpoint[(failed.tenant_id, failed.endpoint_id)].append(failed)
        for (tenant_id, endpoint_id), failures in by_endpoint.items():
            back_since = self._delivering_since(tenant_id, endpoint_id)
            if back_since is None:
                continue
            for failed in failures:
                if failed.updated_at >= back_since or failed.replays >= MAX_REPLAYS:
                    continue
                try:
                    replay(self._deliveries, self._audit, self._queue, failed)
                except MeshanicsError as refused:  # changed meanwhile, or the queue refused: next sweep
                    log.info("not replaying %s now: %s", failed.id, refused.message)
                    continue
                report.replayed += 1

    def _delivering_since(self, tenant_id: str, endpoint_id: str) -> str | None:
        """When the endpoint last delivered, if it exists and is enabled; None otherwise."""
        try:
            endpoint = self._endpoints.get(tenant_id, endpoint_id)
        except NotFound:
            return None
        if not endpoint.enabled:
            return None
        latest = self._deliveries.page(
            tenant_id, endpoint_id, limit=1, before=None, search=DeliveryFilter(status="delivered")
        ).items
        return (latest[0].delivered_at or None) if latest else None

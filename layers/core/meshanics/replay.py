"""Replays and the scheduled sweep: nothing recorded is left behind, nothing dead-lettered is lost.

The schedule runs two passes:
* jobs recorded but never attempted (the fan-out stopped between writing a record and enqueueing
  its job) are enqueued again;
* the dead-letter queue is settled against the delivery records: a job whose delivery was since
  delivered or replayed is dropped; one the delivery function never managed to record is marked
  failed; a failed one is replayed automatically once its endpoint has delivered successfully again
  (the receiver is back), within the per-delivery replay bound. Others stay in the DLQ, visible
  in the history as failed and replayable on demand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshanics.deliveries import MAX_REPLAYS, Delivery, DeliveryStore
from meshanics.endpoints import EndpointStore
from meshanics.errors import NotFound
from meshanics.jobqueue import DeadLetters, DeliveryQueue

log = logging.getLogger("meshanics.replay")

UNSENT_GRACE_SECONDS = 900


@dataclass
class SweepReport:
    requeued_unsent: int = 0
    dead_letters_seen: int = 0
    dead_letters_replayed: int = 0
    dead_letters_dropped: int = 0
    dead_letters_kept: int = 0
    marked_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Replayer:
    def __init__(
        self,
        *,
        deliveries: DeliveryStore,
        endpoints: EndpointStore,
        queue: DeliveryQueue,
        dead_letters: DeadLetters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._queue = queue
        self._dead = dead_letters
        self._clock = clock

    def run(self, *, max_dead_letters: int = 1000) -> SweepReport:
        report = SweepReport()
        self.requeue_unsent(report)
        self.settle_dead_letters(report, limit=max_dead_letters)
        return report

    def requeue_unsent(self, report: SweepReport, *, grace: float = UNSENT_GRACE_SECONDS) -> None:
        jobs = self._deliveries.unsent(older_than=self._clock() - grace)
        if not jobs:
            return
        failed = {j.delivery_id for j in self._queue.send(jobs)}
        for job in jobs:
            if job.delivery_id not in failed:
                self._deliveries.touch_unsent(job)
                report.requeued_unsent += 1
        log.info("re-enqueued %d unsent jobs", report.requeued_unsent)

    def settle_dead_letters(self, report: SweepReport, *, limit: int) -> None:
        seen: set[tuple[str, str]] = set()
        recovered: dict[tuple[str, str], bool] = {}
        while report.dead_letters_seen < limit:
            batch = self._dead.receive(max_messages=10, visibility=300)
            if not batch:
                return
            drop: list[str] = []
            for job, receipt in batch:
                report.dead_letters_seen += 1
                key = (job.tenant_id, job.delivery_id)
                try:
                    delivery = self._deliveries.get(job.tenant_id, job.delivery_id)
                except NotFound:
                    delivery = None
                stale = delivery is None or delivery.job.attempt_base != job.attempt_base
                if stale or key in seen or delivery is None or delivery.status == "delivered":
                    drop.append(receipt)  # expired, replayed since, a duplicate, or delivered after all
                    continue
                seen.add(key)
                if delivery.status == "pending":
                    # Dead-lettered without a recorded outcome: the function failed on every receive.
                    if self._deliveries.mark_failed(job, "the delivery function failed repeatedly; replay to retry"):
                        report.marked_failed += 1
                    report.dead_letters_kept += 1
                    continue
                endpoint_key = (job.tenant_id, job.endpoint_id)
                if endpoint_key not in recovered:
                    recovered[endpoint_key] = self._recovered_since(delivery)
                if recovered[endpoint_key] and delivery.replays < MAX_REPLAYS:
                    replayed = self._deliveries.reopen_for_replay(job.tenant_id, job.delivery_id)
                    if self._queue.send([replayed]):
                        # Not enqueued: failed again (still replayable on demand), never stuck pending.
                        self._deliveries.mark_failed(replayed, "the replay could not be enqueued; replay again")
                        report.dead_letters_kept += 1
                        continue
                    report.dead_letters_replayed += 1
                    drop.append(receipt)
                else:
                    report.dead_letters_kept += 1
            report.dead_letters_dropped += len(drop)
            self._dead.delete(drop)

    def _recovered_since(self, failed: Delivery) -> bool:
        """True if the endpoint exists, is enabled, and delivered something after this failure."""
        try:
            endpoint = self._endpoints.get(failed.job.tenant_id, failed.job.endpoint_id)
        except NotFound:
            return False
        if not endpoint.enabled:
            return False
        latest, _ = self._deliveries.page(
            failed.job.tenant_id, failed.job.endpoint_id, limit=1, cursor=None, status="delivered"
        )
        return bool(latest) and (latest[0].delivered_at or "") > failed.updated_at

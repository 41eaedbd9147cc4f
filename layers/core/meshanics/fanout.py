"""Fan-out: each new audit record becomes one queued job per endpoint it was matched to.

The audit record already names its endpoints (matched when it was written) and carries the
envelope, so the fan-out reads nothing and writes nothing: it sends jobs, in batches, side by
side. A record whose jobs could not all be sent is reported failed; the stream hands it over again
and its jobs are sent again (the deliverer drops the copies of a job that already ran).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshanics.jobqueue import DeliveryQueue
from meshanics.model import AuditRecord, DeliveryJob

log = logging.getLogger("meshanics.fanout")


@dataclass
class FanOutReport:
    failed_items: set[str] = field(default_factory=set)
    sent: int = 0


class FanOut:
    def __init__(self, queue: DeliveryQueue) -> None:
        self._queue = queue

    def fan_out(self, records: Mapping[str, AuditRecord]) -> FanOutReport:
        """Send the jobs of a batch of audit records (item id -> record); report the failed items."""
        owners: dict[tuple[str, str, int], str] = {}
        jobs: list[DeliveryJob] = []
        for item, record in records.items():
            for endpoint_id in record.endpoints:
                job = DeliveryJob.of(record, endpoint_id)
                owners[(job.tenant_id, job.endpoint_id, job.sequence)] = item
                jobs.append(job)
        unsent = self._queue.send(jobs)
        report = FanOutReport(sent=len(jobs) - len(unsent))
        report.failed_items.update(owners[(j.tenant_id, j.endpoint_id, j.sequence)] for j in unsent)
        if unsent:
            log.warning(
                "%d of %d jobs could not be enqueued; their records will be handed over again", len(unsent), len(jobs)
            )
        return report

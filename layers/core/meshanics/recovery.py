"""Fan-out recovery: stream batches the fan-out gave up on are fanned out again.

After its retries, Lambda sends the coordinates of a stream batch it could not process (shard, first
and last stream sequence number) to the fan-out failure queue. Those coordinates are good only while
the stream retains the records (24 hours), so the first step turns them into durable ones at once:
the records are read from the stream and, per audit partition (a tenant's shard), the range of
sequences they cover is put back on the same queue. A range is then fanned out from the audit table
itself, as often as it takes (a job sent twice is harmless: the deliverer drops the copy). A range
that still fails on its last receive is recorded as an operational audit event
(`webhook.fanout_failed`, never delivered, so it cannot loop) before SQS moves it to the
unrecoverable queue, whose alarm calls an operator; redriving that queue once the cause is fixed
finishes the work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from meshanics.audit import AuditLog
from meshanics.errors import TransientFailure
from meshanics.fanout import FanOut
from meshanics.model import EventInput
from meshanics.store.items import chunks

log = logging.getLogger("meshanics.recovery")

RANGE_KIND = "audit-range"
_LOST_STREAM_CODES = frozenset({"TrimmedDataAccessException", "ResourceNotFoundException"})


class Unrecoverable(RuntimeError):
    """The failure record can no longer be turned into audit ranges (the stream no longer holds it)."""


@dataclass(frozen=True)
class AuditRange:
    partition: str
    first: int
    last: int

    @property
    def tenant_id(self) -> str:
        return self.partition.rsplit("#", 1)[0]

    def to_message(self) -> str:
        return json.dumps({"kind": RANGE_KIND, "partition": self.partition, "first": self.first, "last": self.last})


@dataclass(frozen=True)
class StreamBatch:
    """What Lambda's on-failure record says about a stream batch."""

    stream_arn: str
    shard_id: str
    first: str
    last: str


def parse(body: str) -> StreamBatch | AuditRange:
    """A failure-queue message: Lambda's on-failure record, or an audit range put back by recovery."""
    try:
        message = json.loads(body)
        if message.get("kind") == RANGE_KIND:
            return AuditRange(str(message["partition"]), int(message["first"]), int(message["last"]))
        info = message["DDBStreamBatchInfo"]
        return StreamBatch(
            str(info["streamArn"]),
            str(info["shardId"]),
            str(info["startSequenceNumber"]),
            str(info["endSequenceNumber"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise ValueError(f"not a fan-out failure record: {error}") from None


class FanoutRecovery:
    def __init__(
        self,
        *,
        streams: Callable[[], Any],
        audit_log: AuditLog,
        fanout: Callable[[], FanOut],
        requeue: Callable[[Sequence[AuditRange]], None],
    ) -> None:
        self._streams = streams
        self._audit = audit_log
        self._fanout = fanout
        self._requeue = requeue

    def handle(self, body: str, *, last_receive: bool = False) -> None:
        """Process one failure-queue message; raises if it must be tried again."""
        work = parse(body)
        if isinstance(work, StreamBatch):
            ranges = self.ranges(work)
            log.warning(
                "stream batch %s..%s of %s becomes %d audit range(s)", work.first, work.last, work.shard_id, len(ranges)
            )
            self._requeue(ranges)
            return
        try:
            self.fan_out(work)
        except Exception as error:
            if last_receive:
                self._record_unrecoverable(work, error)
            raise

    def ranges(self, batch: StreamBatch) -> list[AuditRange]:
        """The audit sequences, per partition, of the stream records between the batch's first and last."""
        first, last = int(batch.first), int(batch.last)
        bounds: dict[str, tuple[int, int]] = {}
        try:
            iterator: str | None = self._streams().get_shard_iterator(
                StreamArn=batch.stream_arn,
                ShardId=batch.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=batch.first,
            )["ShardIterator"]
            while iterator:
                page = self._streams().get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records", [])
                for record in records:
                    if int(record["dynamodb"]["SequenceNumber"]) > last:
                        iterator = None
                        break
                    if record.get("eventName") != "INSERT":
                        continue
                    image = record["dynamodb"]["NewImage"]
                    partition, sequence = image["partition"]["S"], int(image["sequence"]["N"])
                    low, high = bounds.get(partition, (sequence, sequence))
                    bounds[partition] = (min(low, sequence), max(high, sequence))
                else:
                    # An empty page means the open shard holds nothing newer: the range is complete.
                    iterator = page.get("NextShardIterator") if records else None
        except ClientError as error:
            if error.response["Error"]["Code"] in _LOST_STREAM_CODES:
                raise Unrecoverable(
                    f"the stream no longer holds records {first}..{last} of {batch.shard_id}: "
                    "fan them out from the audit log by partition and sequence"
                ) from error
            raise
        return [AuditRange(partition, low, high) for partition, (low, high) in sorted(bounds.items())]

    def fan_out(self, work: AuditRange) -> int:
        """Fan out the range's records again; returns how many jobs were sent."""
        records = self._audit.table.between(work.partition, work.first, work.last)
        report = self._fanout().fan_out({str(r.sequence): r for r in records})
        if report.failed_items:
            raise TransientFailure(f"{len(report.failed_items)} record(s) of the range could not be fanned out yet")
        log.info(
            "fanned out %s %d..%d again: %d record(s), %d job(s) sent",
            work.partition,
            work.first,
            work.last,
            len(records),
            report.sent,
        )
        return report.sent

    def _record_unrecoverable(self, work: AuditRange, error: Exception) -> None:
        log.error("giving up on %s %d..%d: %s", work.partition, work.first, work.last, error)
        try:
            self._audit.append(
                work.tenant_id,
                [
                    EventInput(
                        "webhook.fanout_failed",
                        subject=f"audit/{work.first}-{work.last}",
                        actor="platform",
                        data={"first_sequence": work.first, "last_sequence": work.last, "reason": str(error)[:256]},
                    )
                ],
            )
        except Exception:
            log.exception("could not record webhook.fanout_failed for %s", work.tenant_id)


class FailureQueue:
    """The fan-out failure queue, as far as recovery writes to it: audit ranges put back."""

    def __init__(self, client: Callable[[], Any], url: str) -> None:
        self._client = client
        self.url = url

    def send(self, ranges: Sequence[AuditRange]) -> None:
        for chunk in chunks(ranges, 10):
            response = self._client().send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "MessageBody": r.to_message()} for i, r in enumerate(chunk)],
            )
            if response.get("Failed"):
                raise TransientFailure(f"the failure queue refused {len(response['Failed'])} range(s)")

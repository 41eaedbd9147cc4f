"""The SQS poller: plays Lambda's event source mapping for a queue.

Receives up to BatchSize messages (AttributeNames All, a short long-poll) and keeps collecting for
MaximumBatchingWindowInSeconds; after the invocation it deletes every message not listed in
`batchItemFailures` (ReportBatchItemFailures) or, without that setting, every message. A raised
function error (or an invalid failure report) deletes none. The visibility of failed messages is
left alone: the handler may have changed it, otherwise the queue's VisibilityTimeout applies, and
moto's own redrive moves a message to the dead-letter queue once its receive count reaches
maxReceiveCount. Up to ScalingConfig.MaximumConcurrency batches run at once (capped by the
function's worker pool). Messages that do not match FilterCriteria are deleted, as Lambda does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from meshanics_local.awsserver import client
from meshanics_local.events import sqs_record
from meshanics_local.functions import EventSourceMapping
from meshanics_local.workers import Invocation, Loop

log = logging.getLogger("meshanics_local.sqs")
Invoke = Callable[[dict[str, Any]], Invocation]
RECEIVE_WAIT_SECONDS = 1


def to_delete(result: Any, batch: Sequence[dict[str, Any]], *, report_failures: bool) -> list[dict[str, Any]]:
    """The records to delete after a successful invocation (none if the failure report is invalid)."""
    if not report_failures or not isinstance(result, dict) or result.get("batchItemFailures") is None:
        return list(batch)
    failures = result["batchItemFailures"]
    if not isinstance(failures, list):
        return []
    ids = {r["messageId"] for r in batch}
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in ids:
            return []  # Lambda treats the whole batch as failed
        failed.add(identifier)
    return [r for r in batch if r["messageId"] not in failed]


def _filter_view(record: dict[str, Any]) -> dict[str, Any]:
    """What FilterCriteria see: the record, with a JSON body parsed (as Lambda does)."""
    try:
        body = json.loads(record["body"])
    except ValueError:
        return record
    return record | {"body": body}


class QueuePoller(Loop):
    def __init__(
        self,
        mapping: EventSourceMapping,
        invoke: Invoke,
        *,
        endpoint: str,
        region: str,
        concurrency: int,
    ) -> None:
        self.mapping = mapping
        self._invoke = invoke
        self._endpoint = endpoint
        self._region = region
        super().__init__(f"sqs:{mapping.logical_id}", max(1, concurrency))
        self._sqs = client("sqs", endpoint)  # shared by the threads (boto3 clients are thread-safe)
        self.queue_url = str(self._sqs.get_queue_url(QueueName=mapping.source_arn.rsplit(":", 1)[1])["QueueUrl"])
        self.invocations = 0

    def step(self) -> None:
        batch = self._collect(self._sqs)
        if batch:
            self._process(self._sqs, batch)

    def _receive(self, sqs: Any, count: int, wait: int) -> list[dict[str, Any]]:
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        records = [
            sqs_record(m, queue_arn=self.mapping.source_arn, region=self._region) for m in response.get("Messages", [])
        ]
        if not self.mapping.filter_patterns:
            return records
        kept = [r for r in records if self.mapping.passes(_filter_view(r))]
        dropped = [r for r in records if r not in kept]
        if dropped:
            self._delete(sqs, dropped)
        return kept

    def _collect(self, sqs: Any) -> list[dict[str, Any]]:
        size = self.mapping.batch_size
        batch = self._receive(sqs, size, RECEIVE_WAIT_SECONDS)
        if not batch:
            return []
        deadline = time.monotonic() + self.mapping.window_seconds
        while len(batch) < size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(sqs, size - len(batch), 0)
            if more:
                batch.extend(more)
            else:
                self._stop.wait(min(0.1, remaining))
        return batch

    def _process(self, sqs: Any, batch: list[dict[str, Any]]) -> None:
        invocation = self._invoke({"Records": batch})
        self.invocations += 1
        if not invocation.ok:
            log.info(
                "%s: function error on a batch of %d; none deleted: %s",
                self.mapping.logical_id,
                len(batch),
                invocation.error_message,
            )
            return
        done = to_delete(invocation.result, batch, report_failures=self.mapping.report_batch_item_failures)
        if len(done) < len(batch):
            log.info("%s: %d of %d messages failed", self.mapping.logical_id, len(batch) - len(done), len(batch))
        self._delete(sqs, done)

    def _delete(self, sqs: Any, records: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(records), 10):
            chunk = records[start : start + 10]
            response = sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
            for failed in response.get("Failed", []):
                log.warning("%s: could not delete a message: %s", self.mapping.logical_id, failed.get("Message"))

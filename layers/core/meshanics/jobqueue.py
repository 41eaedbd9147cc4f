"""The delivery queue: enqueue jobs in batches, postpone a job (its retry delay), move DLQ jobs back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from meshanics import dynamo
from meshanics.deliveries import DeliveryJob

log = logging.getLogger("meshanics.jobqueue")


class DeliveryQueue:
    def __init__(self, client: Callable[[], Any], queue_url: str) -> None:
        self._client = client
        self.url = queue_url

    def send(self, jobs: Sequence[DeliveryJob]) -> list[DeliveryJob]:
        """Enqueue with SendMessageBatch (10 per call); return the jobs that could not be sent."""
        failed: list[DeliveryJob] = []
        for chunk in dynamo.chunks(jobs, 10):
            try:
                response = self._client().send_message_batch(
                    QueueUrl=self.url,
                    Entries=[{"Id": str(i), "MessageBody": job.to_message()} for i, job in enumerate(chunk)],
                )
            except Exception:
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(entry["Id"])] for entry in response.get("Failed", []))
        return failed

    def postpone(self, hidden: Sequence[tuple[str, int]]) -> None:
        """Hide received jobs (receipt handle, seconds): a retry's delay, or 0 to let a job whose
        last attempt failed move on to the DLQ. ChangeMessageVisibilityBatch, 10 per call."""
        for chunk in dynamo.chunks(hidden, 10):
            response = self._client().change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": seconds}
                    for i, (receipt, seconds) in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                # The job then reappears after the queue's visibility timeout: later, never lost.
                log.warning("could not postpone %d jobs: %s", len(response["Failed"]), response["Failed"][0])


class DeadLetters:
    """The dead-letter queue of the delivery queue, read by replays."""

    def __init__(self, client: Callable[[], Any], dlq_url: str) -> None:
        self._client = client
        self.url = dlq_url

    def receive(self, *, max_messages: int = 10, visibility: int = 60) -> list[tuple[DeliveryJob, str]]:
        response = self._client().receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
        )
        return [(DeliveryJob.from_message(m["Body"]), m["ReceiptHandle"]) for m in response.get("Messages", [])]

    def delete(self, receipt_handles: Sequence[str]) -> None:
        for chunk in dynamo.chunks(list(receipt_handles), 10):
            self._client().delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)],
            )

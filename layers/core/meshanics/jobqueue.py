"""The delivery queue: enqueue jobs in batches, postpone a job (its retry delay), move DLQ jobs back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from meshanics import parallel
from meshanics.model import DeliveryJob
from meshanics.store.items import chunks

log = logging.getLogger("meshanics.jobqueue")


class DeliveryQueue:
    def __init__(self, client: Callable[[], Any], queue_url: str) -> None:
        self._client = client
        self.url = queue_url

    def send(self, jobs: Sequence[DeliveryJob]) -> list[DeliveryJob]:
        """Enqueue with SendMessageBatch (10 per call); return the jobs that could not be sent."""

        def send(chunk: Sequence[DeliveryJob]) -> list[DeliveryJob]:
            try:
                response = self._client().send_message_batch(
                    QueueUrl=self.url,
                    Entries=[{"Id": str(i), "MessageBody": job.to_message()} for i, job in enumerate(chunk)],
                )
            except Exception:
                log.exception("could not enqueue %d jobs", len(chunk))
                return list(chunk)
            return [chunk[int(entry["Id"])] for entry in response.get("Failed", [])]

        return [job for unsent in parallel.each(send, list(chunks(jobs, 10))) for job in unsent]

    def postpone(self, hidden: Sequence[tuple[str, int]]) -> None:
        """Hide received jobs (receipt handle, seconds): a retry's delay, or 0 to hand a job that was
        not attempted back at once. ChangeMessageVisibilityBatch, 10 per call."""
        for chunk in chunks(hidden, 10):
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


@dataclass(frozen=True)
class DeadLetter:
    """A message of the dead-letter queue; `job` is None when its body is not a delivery job."""

    message_id: str
    receipt_handle: str
    job: DeliveryJob | None


# A dead letter that is not a job is set aside this long (about SQS's maximum visibility) so later sweeps
# do not stop on it again; it stays in the queue, where the depth alarm points an operator at it.
MALFORMED_HIDE_SECONDS = 43_000  # SQS caps visibility at 12 h from the receive


class DeadLetters:
    """The dead-letter queue of the delivery queue, read by the sweep."""

    def __init__(self, client: Callable[[], Any], dlq_url: str) -> None:
        self._client = client
        self.url = dlq_url

    def receive(self, *, max_messages: int = 10, visibility: int = 60) -> list[DeadLetter]:
        """Up to `max_messages` dead letters, each parsed on its own: one malformed body never
        hides the others."""
        response = self._client().receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
        )
        letters = []
        for message in response.get("Messages", []):
            try:
                job: DeliveryJob | None = DeliveryJob.from_message(message["Body"])
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                log.error("dead letter %s is not a delivery job; set aside", message.get("MessageId"))
                job = None
            letters.append(DeadLetter(message.get("MessageId", ""), message["ReceiptHandle"], job))
        return letters

    def set_aside(self, receipt_handles: Sequence[str]) -> None:
        for chunk in chunks(list(receipt_handles), 10):
            self._client().change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": MALFORMED_HIDE_SECONDS}
                    for i, r in enumerate(chunk)
                ],
            )

    def delete(self, receipt_handles: Sequence[str]) -> None:
        for chunk in chunks(list(receipt_handles), 10):
            self._client().delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)],
            )

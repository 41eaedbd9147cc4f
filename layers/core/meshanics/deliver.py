"""Delivery: sign the stored envelope bytes and POST them through the egress guard, then decide.

2xx is delivered. Anything else (non-2xx, a redirect, a timeout, a reset, an egress refusal) is a
failed attempt: retried after the schedule's next delay (at least the receiver's Retry-After on a
429/503) by hiding the job in the queue, or, after the last attempt of the run, marked failed (the
record keeps everything a replay needs) and the job deleted. Every attempt is recorded with a short
error, never the body.

The delivery record decides: a job is attempted only if its record accepts it (a copy of a job that
already finished is dropped unsent), the attempt number comes from the record's count, not from how
often SQS handed the job over, and transient AWS failures (throttling, a KMS hiccup) leave the job
queued without charging an attempt. Each attempt has a whole-request deadline, and a batch stops
starting attempts when the invocation's time runs short: what it could not start goes back at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from meshanics import aws, backoff, custom_headers, signing
from meshanics.clock import now_iso
from meshanics.envelope import SPEC_VERSION
from meshanics.errors import EgressRefused
from meshanics.health import GONE, HealthRecorder, Observed
from meshanics.jobqueue import DeliveryQueue
from meshanics.model import Attempt, AttemptResult, Delivery, DeliveryJob, Endpoint
from meshanics.sealing import Sealer
from meshanics.store.deliveries import DeliveryStore

if TYPE_CHECKING:
    from meshanics.operational import OperationalEvents

log = logging.getLogger("meshanics.delivery")

DRAIN_LIMIT = 65_536
DRAIN_SECONDS = 1.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


# Time kept back from the invocation's remaining time to record attempts and postpone retries.
BATCH_MARGIN_SECONDS = 3.0
# How long a job that met a transient AWS failure stays hidden before it is tried again.
TRANSIENT_RETRY_SECONDS = 10


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    retry_after: float | None = None


class Sender(Protocol):
    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], *, allow_private_network: bool, deadline: float
    ) -> SendResult: ...


class HttpSender:
    """POSTs through the shared, guarded keep-alive pools; never follows redirects.

    `deadline` bounds the whole request (connect, send, status line, headers and the drained body);
    the connect and read timeouts bound each step within it.
    """

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._drain_seconds = min(read_timeout, DRAIN_SECONDS)

    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], *, allow_private_network: bool, deadline: float
    ) -> SendResult:
        from meshanics import egress  # at the first POST: not on the delivery function's import path

        policy = egress.EgressPolicy(allow_private_network=allow_private_network, require_https=True)
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        with egress.request_deadline(deadline) as limit:
            try:
                response = egress.pool_manager(policy).request(
                    "POST",
                    url,
                    body=body,
                    headers=headers,
                    timeout=self._timeout,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                )
            except EgressRefused as refused:
                return SendResult(False, None, elapsed(), f"refused by egress guard: {refused.message}")
            except HTTPError as error:
                if limit.expired:
                    return SendResult(False, None, elapsed(), f"no complete answer within the {deadline:g}s deadline")
                return SendResult(False, None, elapsed(), self._describe(error))
            status = response.status
            self._discard_body(response)
        duration = elapsed()
        if 200 <= status < 300:
            return SendResult(True, status, duration, None)
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = backoff.parse_retry_after(response.headers.get("Retry-After"))
        if 300 <= status < 400:
            location = str(response.headers.get("Location", "?"))[:120]
            summary = f"receiver answered {status} (redirect to {location}); redirects are not followed"
        else:
            summary = f"receiver answered {status} {response.reason or ''}".strip()
        return SendResult(False, status, duration, _short(summary), retry_after)

    def _describe(self, error: HTTPError) -> str:
        if isinstance(error, NewConnectionError):  # a subclass of ConnectTimeoutError: test it first
            return _short(f"connection failed: {_reason(error)}")
        if isinstance(error, ConnectTimeoutError):
            return f"connect timeout after {self._timeout.connect_timeout}s"
        if isinstance(error, ReadTimeoutError):
            return f"no response within {self._timeout.read_timeout}s"
        if isinstance(error, SSLError):
            return _short(f"TLS error: {_reason(error)}")
        if isinstance(error, ProtocolError):
            return _short(f"connection error: {_reason(error)}")
        return _short(f"HTTP error: {_reason(error)}")

    def _discard_body(self, response: urllib3.BaseHTTPResponse) -> None:
        """Read and drop a small body so the connection is reused; close on a large or slow one.

        The outcome is already decided by the status line; the body is never stored.
        """
        read = 0
        deadline = time.perf_counter() + self._drain_seconds
        try:
            while read <= DRAIN_LIMIT and time.perf_counter() < deadline:
                chunk = response.read1(8192)
                if not chunk:
                    response.release_conn()
                    return
                read += len(chunk)
        except HTTPError:
            pass
        response.close()


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    return text.split(": ", 1)[-1] if "object at 0x" in text else text


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(frozen=True)
class QueuedJob:
    """A job as received from the queue."""

    job: DeliveryJob
    receipt_handle: str


@dataclass(frozen=True)
class Message:
    """An SQS message of the delivery queue, as the trigger hands it over."""

    id: str
    body: str
    receipt_handle: str


@dataclass
class BatchReport:
    """What a batch came to: the messages to keep in the queue, and each outcome (for metrics)."""

    failed: list[str]
    outcomes: list[Outcome]
    malformed: int = 0


OutcomeStatus = Literal["delivered", "failed", "retrying", "dropped", "released"]


@dataclass(frozen=True)
class Outcome:
    """What became of one job of a batch.

    `done`: delete the job from the queue. Otherwise it stays queued and comes back after
    `retry_in` seconds (its visibility is changed), or after the queue's visibility timeout when
    `retry_in` is None. `posted`: the attempt made a request (it counts in the endpoint's health).
    """

    status: OutcomeStatus
    done: bool
    retry_in: int | None = None
    attempt: Attempt | None = None
    posted: bool = False


def _released(seconds: int) -> Outcome:
    return Outcome("released", done=False, retry_in=seconds)


DROPPED = Outcome("dropped", done=True)


class Deliverer:
    def __init__(
        self,
        *,
        deliveries: DeliveryStore,
        sealer: Sealer,
        queue: DeliveryQueue | None,
        schedule: tuple[int, ...],
        sender: Sender,
        attempt_deadline: float,
        concurrency: int = 10,
        health: HealthRecorder | None = None,
        operational: Callable[[], OperationalEvents] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._deliveries = deliveries
        self._health = health
        self._operational = operational
        self._sealer = sealer
        self._queue = queue
        self._schedule = schedule
        self._send = sender
        self._attempt_deadline = attempt_deadline
        self._clock = clock
        # One bounded pool per container: a batch's POSTs run concurrently over kept-alive connections.
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver")

    def deliver(self, messages: Sequence[Message], *, deadline: float) -> BatchReport:
        """A batch from the delivery queue: the ids of the messages to keep (retries scheduled, jobs
        released unattempted, and malformed ones, which reach the dead-letter queue after their
        receives), and the outcome of each job."""
        queued: list[QueuedJob] = []
        ids: list[str] = []
        failed: list[str] = []
        for message in messages:
            try:
                job = DeliveryJob.from_message(message.body)
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                log.error("malformed delivery job in message %s", message.id)
                failed.append(message.id)
                continue
            queued.append(QueuedJob(job, message.receipt_handle))
            ids.append(message.id)
        outcomes = self.deliver_batch(queued, deadline=deadline)
        failed += [message_id for message_id, o in zip(ids, outcomes, strict=True) if not o.done]
        return BatchReport(failed, outcomes, malformed=len(messages) - len(queued))

    def deliver_batch(self, queued: Sequence[QueuedJob], *, deadline: float) -> list[Outcome]:
        """Attempt every job of an SQS batch concurrently, record each attempt, schedule retries.

        `deadline` (time.monotonic()) is when the last attempt must have ended; a job that cannot
        start in time is released unattempted. AWS calls for a batch of n: one BatchGetItem (the
        endpoints and the delivery items), n writes (each right after its POST, overlapping the
        others; a first attempt creates the item), and one ChangeMessageVisibilityBatch if anything
        must wait.
        """
        try:
            endpoints, records = self._deliveries.read_for([q.job for q in queued])
        except Exception as error:
            if not aws.is_transient(error):
                raise
            log.warning("could not read the batch's records (%s); its jobs stay queued", error)
            outcomes = [_released(TRANSIENT_RETRY_SECONDS) for _ in queued]
            self._postpone(queued, outcomes)
            return outcomes
        first: dict[str, int] = {}
        for index, q in enumerate(queued):
            first.setdefault(q.job.delivery_id, index)

        def one(index: int) -> Outcome:
            try:
                return attempt(index)
            except Exception:
                # One job's unexpected failure stays with that job: it is tried again later.
                log.exception("delivery %s failed unexpectedly; its job stays queued", queued[index].job.delivery_id)
                return _released(TRANSIENT_RETRY_SECONDS)

        def attempt(index: int) -> Outcome:
            job = queued[index].job
            if first[job.delivery_id] != index:
                return DROPPED  # two copies of one job in a batch: only one may POST
            record = records.get(job.delivery_id)
            fresh = record is None and job.attempt_base == 0  # never attempted: this is its first
            if not fresh and (record is None or not record.accepts(job)):
                return DROPPED  # a stale copy of a job that ran, or one whose delivery expired
            if deadline - time.monotonic() < self._attempt_deadline:
                return _released(0)  # no time left in this invocation: back to the queue at once
            return self._attempt(job, record, endpoints.get((job.tenant_id, job.endpoint_id)))

        outcomes = list(self._pool.map(one, range(len(queued))))
        self._postpone(queued, outcomes)
        self._report(queued, outcomes)
        return outcomes

    def _report(self, queued: Sequence[QueuedJob], outcomes: Sequence[Outcome]) -> None:
        """The batch's POSTs into the endpoints' health, and `delivery_exhausted` for deliveries that
        failed for good (after they were recorded: a crash in between loses the notice, never the
        delivery, which stays failed and replayable)."""
        made = [(q.job, o) for q, o in zip(queued, outcomes, strict=True) if o.posted and o.attempt is not None]
        exhausted = [
            (job, o.attempt)
            for job, o in made
            if o.status == "failed" and o.attempt is not None and o.attempt.status_code != GONE
        ]
        if exhausted and self._operational is not None:
            try:
                self._operational().exhausted(exhausted)
            except Exception:
                log.exception("could not write delivery_exhausted for %d deliveries", len(exhausted))
        if self._health is not None:
            self._health.observe(
                [Observed(job.tenant_id, job.endpoint_id, o.attempt, final=o.done) for job, o in made if o.attempt]
            )
            self._health.flush()

    def _postpone(self, queued: Sequence[QueuedJob], outcomes: Sequence[Outcome]) -> None:
        hidden = [
            (q.receipt_handle, o.retry_in)
            for q, o in zip(queued, outcomes, strict=True)
            if not o.done and o.retry_in is not None
        ]
        if hidden:
            assert self._queue is not None
            try:
                self._queue.postpone(hidden)
            except Exception:
                # Not postponed: those jobs come back after the queue's visibility timeout instead.
                log.exception("could not postpone %d jobs", len(hidden))

    def _attempt(self, job: DeliveryJob, record: Delivery | None, endpoint: Endpoint | None) -> Outcome:
        number = (record.attempt_count if record else 0) + 1
        if endpoint is None or not endpoint.enabled:
            reason = "webhook was deleted" if endpoint is None else "webhook is disabled"
            attempt = Attempt(number, now_iso(self._clock()), "failed", None, 0, reason)
            return self._record(AttemptResult(job, attempt, "failed"), record)
        try:
            result = self._sign_and_send(job, endpoint)
        except Exception as error:
            if not aws.is_transient(error):
                raise
            log.warning("could not unseal the signing secret of %s (%s); the job stays queued", endpoint.id, error)
            return _released(TRANSIENT_RETRY_SECONDS)
        at = now_iso(self._clock())
        if result.ok:
            attempt = Attempt(number, at, "delivered", result.status_code, result.duration_ms, None)
            return self._record(AttemptResult(job, attempt, "delivered"), record, posted=True)
        attempt = Attempt(number, at, "failed", result.status_code, result.duration_ms, result.error)
        # The run's attempt number: a replay starts the schedule again from its first delay. A 410
        # Gone is final: the endpoint is disabled with it (see meshanics.health).
        delay = (
            None
            if result.status_code == GONE
            else backoff.next_delay(self._schedule, number - job.attempt_base, retry_after=result.retry_after)
        )
        if delay is None:
            log.info("delivery %s failed for good: %s", job.delivery_id, result.error)
            return self._record(AttemptResult(job, attempt, "failed"), record, posted=True)
        next_at = now_iso(self._clock() + delay)
        return self._record(AttemptResult(job, attempt, "pending", next_at), record, retry_in=delay, posted=True)

    def _record(
        self, result: AttemptResult, seen: Delivery | None, *, retry_in: int | None = None, posted: bool = False
    ) -> Outcome:
        try:
            recorded = self._deliveries.record(result, seen)
        except Exception:
            # The POST may have been made: the job comes back and is sent again (at least once).
            log.exception("delivery %s could not be recorded; it will be retried", result.job.delivery_id)
            return _released(TRANSIENT_RETRY_SECONDS)
        if not recorded:
            log.info(
                "delivery %s changed while it was attempted; this copy of its job is dropped", result.job.delivery_id
            )
            return DROPPED
        if result.status == "pending":
            return Outcome("retrying", done=False, retry_in=retry_in, attempt=result.attempt, posted=posted)
        return Outcome(result.status, done=True, attempt=result.attempt, posted=posted)

    def test(self, job: DeliveryJob, endpoint: Endpoint) -> Attempt:
        """One immediate attempt with no retry (test deliveries), recorded once it is made."""
        try:
            result = self._sign_and_send(job, endpoint)
        except Exception:
            log.exception("could not unseal the signing secret of %s", endpoint.id)
            result = SendResult(False, None, 0, "could not unseal the signing secret; nothing was sent")
        outcome: Literal["delivered", "failed"] = "delivered" if result.ok else "failed"
        attempt = Attempt(1, now_iso(self._clock()), outcome, result.status_code, result.duration_ms, result.error)
        # Written once, after the POST; never replayed by the sweep on its own.
        self._deliveries.record(AttemptResult(job, attempt, outcome), None, index_failure=False)
        return attempt

    def _sign_and_send(self, job: DeliveryJob, endpoint: Endpoint) -> SendResult:
        """Sign the stored bytes with every live secret and POST them with the endpoint's custom
        headers (which never replace the platform's). A secret or header set that does not open for a
        lasting reason is a failed attempt; a transient KMS failure raises (nothing was sent)."""
        body = job.body.encode("utf-8")
        try:
            secrets = self._secrets(endpoint)
        except Exception as error:
            if aws.is_transient(error):
                raise
            log.exception("could not unseal the signing secret of %s", endpoint.id)
            return SendResult(False, None, 0, "could not unseal the signing secret; nothing was sent")
        try:
            # Sealed beside the current secret: the data key just opened (cached) opens them too.
            custom = custom_headers.unsealed(self._sealer, endpoint)
        except Exception as error:
            if aws.is_transient(error):
                raise
            log.exception("could not unseal the custom headers of %s", endpoint.id)
            return SendResult(False, None, 0, "could not unseal the custom headers; nothing was sent")
        signed = signing.signed_headers(
            body=body,
            event_type=job.event_type,
            idempotency_key=job.idempotency_key,
            spec_version=SPEC_VERSION,
            secrets=secrets,
            timestamp=int(self._clock()),
        )
        headers = custom_headers.combine(custom, signed)
        return self._send(
            endpoint.url,
            body,
            headers,
            allow_private_network=endpoint.allow_private_network,
            deadline=self._attempt_deadline,
        )

    def _secrets(self, endpoint: Endpoint) -> list[str]:
        """Live signing secrets, newest first (two during a rotation's overlap window)."""
        live = [self._sealer.unseal(endpoint.sealed_secret, endpoint.secret_context)]
        if endpoint.previous_sealed_secret is not None and endpoint.previous_overlap_active(self._clock()):
            live.append(self._sealer.unseal(endpoint.previous_sealed_secret, endpoint.secret_context))
        return live

"""Delivery: sign the stored envelope bytes and POST them through the egress guard, then decide.

2xx is delivered. Anything else (non-2xx, a redirect, a timeout, a reset, an egress refusal) is a
failed attempt: retried after the schedule's next delay (at least the receiver's Retry-After on a
429/503) by hiding the job in the queue, or, after the last attempt, marked failed with the job left
to the dead-letter queue for replay. Every attempt is recorded with a short error, never the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from meshanics import backoff, egress, signing
from meshanics.clock import now_iso
from meshanics.deliveries import Attempt, AttemptResult, DeliveryJob, DeliveryStore, Status
from meshanics.endpoints import Endpoint, EndpointStore
from meshanics.envelope import SPEC_VERSION
from meshanics.errors import EgressRefused
from meshanics.jobqueue import DeliveryQueue
from meshanics.sealing import Sealer

log = logging.getLogger("meshanics.delivery")

DRAIN_LIMIT = 65_536
DRAIN_SECONDS = 1.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    retry_after: float | None = None


class Sender(Protocol):
    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], *, allow_private_network: bool
    ) -> SendResult: ...


class HttpSender:
    """POSTs through the shared, guarded keep-alive pools; never follows redirects."""

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._drain_seconds = min(read_timeout, DRAIN_SECONDS)

    def __call__(self, url: str, body: bytes, headers: dict[str, str], *, allow_private_network: bool) -> SendResult:
        policy = egress.EgressPolicy(allow_private_network=allow_private_network, require_https=True)
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

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
        except ConnectTimeoutError:
            return SendResult(False, None, elapsed(), f"connect timeout after {self._timeout.connect_timeout}s")
        except ReadTimeoutError:
            return SendResult(False, None, elapsed(), f"no response within {self._timeout.read_timeout}s")
        except NewConnectionError as error:
            return SendResult(False, None, elapsed(), _short(f"connection failed: {_reason(error)}"))
        except SSLError as error:
            return SendResult(False, None, elapsed(), _short(f"TLS error: {_reason(error)}"))
        except ProtocolError as error:
            return SendResult(False, None, elapsed(), _short(f"connection error: {_reason(error)}"))
        except HTTPError as error:
            return SendResult(False, None, elapsed(), _short(f"HTTP error: {_reason(error)}"))
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
    receive_count: int
    receipt_handle: str


@dataclass(frozen=True)
class Outcome:
    result: AttemptResult
    # Done with: delete the job. Otherwise SQS delivers it again after `retry_in` seconds (a
    # scheduled retry) or, after the last attempt, moves it to the dead-letter queue.
    settled: bool
    retry_in: int | None = None

    @property
    def status(self) -> Status:
        return self.result.status


class Deliverer:
    def __init__(
        self,
        *,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        sealer: Sealer,
        queue: DeliveryQueue | None,
        schedule: tuple[int, ...],
        sender: Sender,
        concurrency: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._sealer = sealer
        self._queue = queue
        self._schedule = schedule
        self._send = sender
        self._clock = clock
        # One bounded pool per container: a batch's POSTs run concurrently over kept-alive connections.
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver")

    def deliver_batch(self, queued: Sequence[QueuedJob]) -> list[Outcome | None]:
        """Attempt every job of an SQS batch concurrently, record each attempt, schedule retries.

        AWS calls for a batch of n: one BatchGetItem for the endpoints, n UpdateItems (each made as
        soon as its POST returns, overlapping the others), and one ChangeMessageVisibilityBatch if
        anything must be retried. A job whose attempt could not be recorded (a storage error) gives
        None: it stays queued and comes back after the queue's visibility timeout, alone.
        """
        endpoints = self._endpoints.get_many((q.job.tenant_id, q.job.endpoint_id) for q in queued)

        def attempt(q: QueuedJob) -> Outcome | None:
            endpoint = endpoints.get((q.job.tenant_id, q.job.endpoint_id))
            number = q.job.attempt_base + q.receive_count
            try:
                outcome = self.attempt(q.job, endpoint, number=number, receive_count=q.receive_count)
                self._deliveries.record_attempt(outcome.result)
            except Exception:
                log.exception("delivery %s could not be recorded; it will be retried", q.job.delivery_id)
                return None
            return outcome

        outcomes = list(self._pool.map(attempt, queued))
        hidden = [
            (q.receipt_handle, o.retry_in or 0)
            for q, o in zip(queued, outcomes, strict=True)
            if o is not None and not o.settled
        ]
        if hidden:
            assert self._queue is not None
            self._queue.postpone(hidden)
        return outcomes

    def test(self, job: DeliveryJob, endpoint: Endpoint) -> Outcome:
        """One immediate attempt with no retry (test deliveries), recorded at once."""
        outcome = self.attempt(job, endpoint, number=1, receive_count=None)
        self._deliveries.record_attempt(outcome.result)
        return outcome

    def attempt(
        self,
        job: DeliveryJob,
        endpoint: Endpoint | None,
        *,
        number: int,
        receive_count: int | None,
    ) -> Outcome:
        """Sign and send once and decide what follows; the caller records the result.

        `receive_count` is the job's attempt within its current run of the schedule; None means a
        one-off attempt with no retry (test deliveries).
        """
        if endpoint is None or not endpoint.enabled:
            reason = "webhook was deleted" if endpoint is None else "webhook is disabled"
            attempt = Attempt(number, now_iso(self._clock()), "failed", None, 0, reason)
            return Outcome(AttemptResult(job, attempt, "failed"), settled=True)
        body = job.body.encode("utf-8")
        try:
            secrets = self._secrets(endpoint)
        except Exception:
            # KMS unavailable or a sealed value that does not open: a failed attempt, retried later.
            log.exception("could not unseal the signing secret of %s", endpoint.id)
            result = SendResult(False, None, 0, "could not unseal the signing secret; nothing was sent")
        else:
            headers = signing.signed_headers(
                body=body,
                event_type=job.event_type,
                idempotency_key=job.idempotency_key,
                spec_version=SPEC_VERSION,
                secrets=secrets,
                timestamp=int(self._clock()),
            )
            result = self._send(endpoint.url, body, headers, allow_private_network=endpoint.allow_private_network)
        at = now_iso(self._clock())
        if result.ok:
            attempt = Attempt(number, at, "delivered", result.status_code, result.duration_ms, None)
            return Outcome(AttemptResult(job, attempt, "delivered"), settled=True)
        attempt = Attempt(number, at, "failed", result.status_code, result.duration_ms, result.error)
        delay = (
            None
            if receive_count is None
            else backoff.next_delay(self._schedule, receive_count, retry_after=result.retry_after)
        )
        if delay is None:
            log.info("delivery %s failed for good: %s", job.delivery_id, result.error)
            return Outcome(AttemptResult(job, attempt, "failed"), settled=False)
        next_at = now_iso(self._clock() + delay)
        return Outcome(AttemptResult(job, attempt, "pending", next_at), settled=False, retry_in=delay)

    def _secrets(self, endpoint: Endpoint) -> list[str]:
        """Live signing secrets, newest first (two during a rotation's overlap window)."""
        live = [self._sealer.unseal(endpoint.sealed_secret, endpoint.secret_context)]
        if endpoint.previous_sealed_secret is not None and endpoint.previous_overlap_active(self._clock()):
            live.append(self._sealer.unseal(endpoint.previous_sealed_secret, endpoint.secret_context))
        return live

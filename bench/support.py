"""What the benchmarks share: the template's resources in a moto server, handlers loaded as Lambda
loads them, loopback receivers, the local platform's AWS metering, and silence.

A benchmark prints nothing itself: `python -m bench` points file descriptors 1 and 2 at a log file
while the sections run (the functions' Powertools metrics and logs, warnings, the local platform's
logging and every child process go there) and prints the tables on the terminal it kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshanics.model import DeliveryJob
    from meshanics_local.awscalls import CallMeter
    from meshanics_local.stack import LocalPlatform

ROOT = Path(__file__).resolve().parents[1]
SPAWN = get_context("spawn")
REGION = "us-east-1"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
# What the functions need besides the template's variables when run in a benchmark's own process.
BENCH_ENV = {"POWERTOOLS_SERVICE_NAME": "bench", "POWERTOOLS_TRACE_DISABLED": "true", "PYTHONWARNINGS": "ignore"}


# -- silence --------------------------------------------------------------------------------------
def quiet() -> None:
    """Warnings off and the local platform's logging kept in its own files (nothing reaches the root
    logger's last-resort handler). What the code under test prints goes where fd 1 and 2 point:
    `python -m bench` points them at its log before any section runs; child processes inherit it."""
    warnings.simplefilter("ignore")
    logging.getLogger("meshanics_local").propagate = False


def quiet_child() -> None:
    """In a spawned child: the same, and fd 1 and 2 to /dev/null when not run under `python -m bench`."""
    quiet()
    if not os.environ.get("MESHANICS_BENCH_LOG"):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)


# -- AWS ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def pointed_at(stack: LocalPlatform, extra: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Point this process's core (services, boto3) at the stack, as its functions see it, with
    `extra` variables on top; yields that environment (for the processes a benchmark starts)."""
    from meshanics import services

    saved = dict(os.environ)
    os.environ.update(stack.parent_environment())
    os.environ.update(BENCH_ENV)
    os.environ.update(extra or {})
    services.reset()
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        services.reset()


@contextlib.contextmanager
def aws_resources(overrides: Mapping[str, str] | None = None) -> Iterator[LocalPlatform]:
    """moto in its own process with the template's resources (no function workers); this process's
    core points at it."""
    from meshanics_local.stack import LocalPlatform

    quiet()
    with tempfile.TemporaryDirectory(prefix="bench-aws-") as state:
        stack = LocalPlatform(
            api_port=0,
            aws_port=0,
            state_dir=Path(state),
            parameter_overrides=dict(overrides or {}),
            demo_key=False,
            run_functions=False,
        )
        with stack, pointed_at(stack):
            yield stack


_metering = threading.Lock()
_metered = False


def meter() -> CallMeter:
    """The local platform's AWS metering (every request per service and operation, DynamoDB items
    written and read), installed once in this process, as each function worker installs it."""
    global _metered
    from meshanics_local import awscalls

    with _metering:
        if not _metered:
            awscalls.install(None)
            _metered = True
    return awscalls.METER


class _Body:
    """What botocore reads a response body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


Answer = Callable[[dict[str, Any]], dict[str, Any]]


class CannedAws:
    """botocore's HTTP send in this process, below its retries, with chosen operations answered here
    after a fixed latency instead of by the emulation (whose CPU time would compete with the code
    measured): requests are still built and signed and answers parsed by botocore. Operations named
    in `record` keep their last real answer (`recorded`), to be replayed."""

    def __init__(self, *, record: Sequence[str] = ()) -> None:
        self.answers: dict[str, Answer] = {}
        self.latency = 0.0
        self.recorded: dict[str, dict[str, Any]] = {}
        self._record = set(record)
        self._original: Any = None

    def install(self) -> CannedAws:
        from botocore.awsrequest import AWSResponse, HTTPHeaders
        from botocore.endpoint import Endpoint

        original = self._original = Endpoint._send  # type: ignore[attr-defined]
        canned = self

        def send(self: Any, request: Any) -> Any:
            raw = request.headers.get("X-Amz-Target") or b""
            target = raw.decode() if isinstance(raw, bytes) else str(raw)  # e.g. "AmazonSQS.SendMessageBatch"
            answer = canned.answers.get(target)
            if answer is None:
                response = original(self, request)
                if target in canned._record and response.status_code == 200:
                    canned.recorded[target] = json.loads(response.content)
                return response
            body = json.dumps(answer(json.loads(request.body or b"{}"))).encode()
            time.sleep(canned.latency)
            headers = HTTPHeaders()
            headers["Content-Type"] = "application/x-amz-json-1.0"
            headers["Content-Length"] = str(len(body))
            return AWSResponse(request.url, 200, headers, _Body(body))

        Endpoint._send = send  # type: ignore[attr-defined]
        return self

    def restore(self) -> None:
        from botocore.endpoint import Endpoint

        if self._original is not None:
            Endpoint._send = self._original  # type: ignore[attr-defined]
            self._original = None


# -- handlers -------------------------------------------------------------------------------------
def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py as Lambda would (fresh, with its own directory first)."""
    for name in ("app", "models"):
        sys.modules.pop(name, None)
    path = str(ROOT / "functions" / function)
    sys.path.insert(0, path)
    try:
        return importlib.import_module("app")
    finally:
        sys.path.remove(path)


class Context:
    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def audit_record(tenant: str, sequence: int, *, subject: str = "rollout/r-1", endpoints: Sequence[str] = ()) -> Any:
    """An audit record as AuditLog.append writes it (envelope serialized once)."""
    from dataclasses import replace

    from meshanics import envelope
    from meshanics.model import AuditRecord

    record = AuditRecord(
        tenant_id=tenant,
        sequence=sequence,
        event_id=f"{sequence:020x}",
        type="rollout.created",
        occurred_at="2026-06-16T09:30:00Z",
        subject=subject,
        actor="user:alice",
        data={"rollout_id": "r-1", "name": "canary", "device_count": 250},
        partition=f"{tenant}#0",
        endpoints=tuple(endpoints),
        recorded_at="2026-06-16T09:30:00.123Z",
    )
    return replace(record, body=envelope.serialize(record))


def sqs_event(jobs: Sequence[DeliveryJob], *, first_id: int = 0) -> dict[str, Any]:
    """The SQS event Lambda's poller hands the delivery function for these jobs (first receives)."""
    records = []
    for index, job in enumerate(jobs, start=first_id):
        body = job.to_message()
        records.append(
            {
                "messageId": f"m-{index}",
                "receiptHandle": f"r-{index}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1",
                    "SenderId": "bench",
                    "ApproximateFirstReceiveTimestamp": "1",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def jobs_for(endpoint_id: str, tenant: str, sequences: Sequence[int]) -> list[DeliveryJob]:
    from meshanics.model import DeliveryJob

    return [DeliveryJob.of(audit_record(tenant, s, endpoints=[endpoint_id]), endpoint_id) for s in sequences]


# -- receivers ------------------------------------------------------------------------------------
def _serve(delay: float, conn: Connection) -> None:
    quiet_child()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if delay:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    conn.send(server.server_address[1])
    server.serve_forever()


@contextlib.contextmanager
def receiver(delay_ms: int) -> Iterator[str]:
    """A keep-alive HTTP receiver in its own process answering 200 after `delay_ms`."""
    parent, child = SPAWN.Pipe()
    process = SPAWN.Process(target=_serve, args=(delay_ms / 1000, child), daemon=True)
    process.start()
    port = parent.recv()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.kill()
        process.join()


class ArrivalReceiver:
    """A loopback receiver in this process that notes when each delivery first arrived
    (time.monotonic(), by endpoint path and the envelope's sequence) and answers 200 at once."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, int], float] = {}
        self.requests = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.monotonic()
                sequence = int(json.loads(body)["sequence"])
                with arrivals._changed:
                    arrivals.requests += 1
                    arrivals.arrivals.setdefault((self.path, sequence), now)
                    arrivals._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 256
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> ArrivalReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for_key(self, key: tuple[str, int], timeout: float) -> bool:
        """Wait until the delivery (path, sequence) has arrived; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while key not in self.arrivals:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` distinct deliveries have arrived; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.arrivals) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True


# -- figures --------------------------------------------------------------------------------------
def percentile(samples: Sequence[float], share: float) -> float:
    """The `share` percentile (0..1) of `samples`, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)

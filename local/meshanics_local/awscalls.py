"""A function worker's AWS calls: metered always, and faulted on request (the chaos harness).

Installed by the worker process before it imports the handler, by wrapping botocore's HTTP send
(`Endpoint._send`), below botocore's own retries: an injected throttle or 5xx meets the same retry
policy a real one would, and what survives it reaches the code under test.

* Metering counts every HTTP request per service and operation, and DynamoDB items written and read
  (what on-demand capacity bills), for the cost figures of `make chaos`.
* Faults (environment variable MESHANICS_FAULTS, a JSON object) answer a seeded share of requests with
  a throttling or a 5xx error, some of them after the request was made ("ambiguous": the write
  happened but its answer was lost, so the caller's retry repeats it), and report a share of the
  items of BatchGetItem/BatchWriteItem as unprocessed.

    {"seed": 7, "error_rate": 0.03, "ambiguous_share": 0.2, "unprocessed_rate": 0.1,
     "services": ["dynamodb", "sqs", "kms"]}

Standard library and botocore only: it runs inside the function's sandbox.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ENV = "MESHANICS_FAULTS"

# X-Amz-Target prefixes of the JSON-protocol services the platform calls.
_SERVICES = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "AmazonSQS": "sqs",
    "TrentService": "kms",
}
_THROTTLES = {
    "dynamodb": (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"),
    "dynamodbstreams": (400, "com.amazonaws.dynamodb.v20120810#LimitExceededException"),
    "sqs": (400, "com.amazonaws.sqs#ThrottlingException"),
    "kms": (400, "ThrottlingException"),
}
_WRITES = {"PutItem": 1, "UpdateItem": 1, "DeleteItem": 1}


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    error_rate: float = 0.0
    ambiguous_share: float = 0.0
    unprocessed_rate: float = 0.0
    services: frozenset[str] = frozenset({"dynamodb", "sqs", "kms"})

    @classmethod
    def from_env(cls, raw: str | None) -> FaultPlan | None:
        if not raw:
            return None
        values = json.loads(raw)
        return cls(**values | {"services": frozenset(values.get("services", cls.services))})

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"services": sorted(self.services)})


@dataclass
class CallMeter:
    """What one worker asked of AWS; `take()` hands over what accumulated since the last take."""

    requests: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> HTTP requests
    dynamodb_writes: int = 0  # items written (a transaction's items count twice, as billed)
    dynamodb_reads: int = 0  # items asked for by key, and Query/Scan pages
    faults: Counter[str] = field(default_factory=Counter)  # kind -> injected
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> dict[str, Any]:
        with self._lock:
            taken = {
                "requests": dict(self.requests),
                "dynamodb_writes": self.dynamodb_writes,
                "dynamodb_reads": self.dynamodb_reads,
                "faults": dict(self.faults),
            }
            self.requests.clear()
            self.faults.clear()
            self.dynamodb_writes = self.dynamodb_reads = 0
        return taken

    def count(self, service: str, operation: str, body: dict[str, Any]) -> None:
        writes = reads = 0
        if service == "dynamodb":
            if operation in _WRITES:
                writes = 1
            elif operation == "BatchWriteItem":
                writes = sum(len(v) for v in body.get("RequestItems", {}).values())
            elif operation == "TransactWriteItems":
                writes = 2 * len(body.get("TransactItems", []))
            elif operation == "GetItem" or operation in ("Query", "Scan"):
                reads = 1
            elif operation == "BatchGetItem":
                reads = sum(len(v.get("Keys", [])) for v in body.get("RequestItems", {}).values())
        with self._lock:
            self.requests[f"{service}:{operation}"] += 1
            self.dynamodb_writes += writes
            self.dynamodb_reads += reads

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1


METER = CallMeter()


class RawBody:
    """The body of a made-up HTTP response, in the shape botocore reads."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _response(request: Any, status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    from botocore.awsrequest import AWSResponse

    merged = {"Content-Type": "application/x-amz-json-1.0", **(headers or {})}
    merged["x-amz-crc32"] = str(zlib.crc32(body) & 0xFFFFFFFF)
    headers_: Any = merged  # botocore reads them as a mapping
    return AWSResponse(request.url, status, headers_, RawBody(body))


def _error(request: Any, service: str, rng: random.Random) -> Any:
    if rng.random() < 0.5:
        status, kind = _THROTTLES[service]
    else:
        status, kind = 500, "InternalServerError" if service != "sqs" else "com.amazonaws.sqs#InternalError"
    body = json.dumps({"__type": kind, "message": "injected by the local platform's fault plan"}).encode()
    fault = "Receiver" if status >= 500 else "Sender"
    return _response(request, status, body, {"x-amzn-query-error": f"{kind.rsplit('#', 1)[-1]};{fault}"})


def _unprocessed(
    endpoint: Any, send: Any, request: Any, operation: str, sent: dict[str, Any], rng: random.Random
) -> Any:
    """Part of a batch left unprocessed, as DynamoDB does under throttling: held-back writes are not
    made (only the rest is sent), held-back reads are not answered. The caller must ask again."""
    if operation == "BatchWriteItem":
        held = {t: [r for r in reqs if rng.random() < 0.5] for t, reqs in sent["RequestItems"].items()}
        held = {t: r for t, r in held.items() if r}
        kept = {t: [r for r in reqs if r not in held.get(t, [])] for t, reqs in sent["RequestItems"].items()}
        kept = {t: r for t, r in kept.items() if r}
        answer: dict[str, Any] = {"UnprocessedItems": held}
        if kept:
            body = json.dumps({**sent, "RequestItems": kept}).encode()
            request.body = body  # moto does not check signatures; AWS would get a re-signed request
            request.headers["Content-Length"] = str(len(body))
            METER.count("dynamodb", operation, {**sent, "RequestItems": kept})
            made = send(endpoint, request)
            if made.status_code != 200:
                return made
        return _response(request, 200, json.dumps(answer).encode())
    METER.count("dynamodb", operation, sent)
    response = send(endpoint, request)
    if response.status_code != 200:
        return response
    answer = json.loads(response.content or b"{}")
    unprocessed: dict[str, Any] = {}
    for table, items in (answer.get("Responses") or {}).items():
        asked = sent["RequestItems"][table]
        key_names = list(asked["Keys"][0]) if asked.get("Keys") else []
        keep = [i for i in items if rng.random() >= 0.5]
        moved = [i for i in items if i not in keep and all(k in i for k in key_names)]
        if moved:
            unprocessed[table] = {**asked, "Keys": [{k: i[k] for k in key_names} for i in moved]}
            answer["Responses"][table] = [i for i in items if i not in moved]
    if unprocessed:
        answer["UnprocessedKeys"] = unprocessed
    return _response(request, response.status_code, json.dumps(answer).encode(), dict(response.headers))


def install(plan: FaultPlan | None) -> None:
    """Wrap botocore's HTTP send in this process: meter every request, inject `plan`'s faults."""
    from botocore.endpoint import Endpoint

    original = Endpoint._send  # type: ignore[attr-defined]  # botocore's private send, below its retries
    rng = random.Random(f"{plan.seed if plan else 0}/{os.environ.get('AWS_LAMBDA_FUNCTION_NAME')}/{os.getpid()}")
    lock = threading.Lock()

    def draw() -> float:
        with lock:
            return rng.random()

    def send(self: Any, request: Any) -> Any:
        raw_target = request.headers.get("X-Amz-Target") or b""
        target = raw_target.decode() if isinstance(raw_target, bytes) else str(raw_target)
        prefix, _, operation = target.partition(".")
        service = _SERVICES.get(prefix)
        if service is None:
            return original(self, request)
        try:
            sent = json.loads(request.body or b"{}")
        except (TypeError, ValueError):
            sent = {}
        if plan is None or service not in plan.services:
            METER.count(service, operation, sent)
            return original(self, request)
        if draw() < plan.error_rate:
            with lock:
                fault_rng = random.Random(rng.random())
            if draw() < plan.ambiguous_share:
                METER.fault(f"{service}:ambiguous")
                METER.count(service, operation, sent)
                original(self, request)  # made, but its answer is lost
            else:
                METER.fault(f"{service}:error")
            return _error(request, service, fault_rng)
        if operation in ("BatchGetItem", "BatchWriteItem") and draw() < plan.unprocessed_rate:
            METER.fault(f"{service}:unprocessed")
            with lock:
                batch_rng = random.Random(rng.random())
            return _unprocessed(self, original, request, operation, sent, batch_rng)
        METER.count(service, operation, sent)
        return original(self, request)

    Endpoint._send = send  # type: ignore[attr-defined]

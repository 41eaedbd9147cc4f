"""The Lambda events the local platform sends, in the shapes Lambda and API Gateway send them.

Pure builders (no I/O): the pollers and the API front call them, the in-process test harness builds
its events with them, and a test checks that each sample in `events/` is what they build.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from meshanics_local.template import ACCOUNT_ID


def _wire(value: Any) -> Any:
    """boto3-parsed data back in the services' JSON wire form, as Lambda passes it on: binary values
    base64-encoded, times as epoch seconds."""

    def encode(item: Any) -> Any:
        if isinstance(item, datetime):
            return int(item.timestamp())
        if isinstance(item, bytes | bytearray):
            return base64.b64encode(item).decode("ascii")
        raise TypeError(f"{type(item).__name__} is not JSON")

    return json.loads(json.dumps(value, default=encode))


# ------------------------------------------------------------------------------- DynamoDB streams
# The fields of a stream record's "dynamodb" member, in Lambda's order (then StreamViewType).
_STREAM_FIELDS = ("ApproximateCreationDateTime", "Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes")


def dynamodb_stream_record(record: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """One record of a DynamoDB stream event, from a (boto3-parsed) GetRecords record."""
    source = _wire(record.get("dynamodb") or {})
    out: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", region),
        "dynamodb": {k: source[k] for k in (*_STREAM_FIELDS, "StreamViewType") if k in source},
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:
        out["userIdentity"] = record["userIdentity"]
    return out


# ------------------------------------------------------------------------------- SQS
def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "stringListValues": value.get("StringListValues", []),
        "binaryListValues": value.get("BinaryListValues", []),
        "dataType": value.get("DataType", "String"),
    }
    return out | {k[0].lower() + k[1:]: value[k] for k in ("StringValue", "BinaryValue") if k in value}


def sqs_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of an SQS event, from a (boto3-parsed) ReceiveMessage message."""
    attributes = message.get("Attributes") or {}
    wanted = ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")
    extra = ("SequenceNumber", "MessageGroupId", "MessageDeduplicationId", "AWSTraceHeader", "DeadLetterQueueSourceArn")
    message_attributes = _wire(message.get("MessageAttributes") or {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: attributes[k] for k in (*wanted, *extra) if k in attributes},
        "messageAttributes": {k: _message_attribute(v) for k, v in message_attributes.items()},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


# ------------------------------------------------------------------------------- EventBridge schedule
def scheduled_event(
    *, rule_arn: str, region: str, event_id: str | None = None, at: float | None = None
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at)),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


# ------------------------------------------------------------------------------- API Gateway (REST, v1)
@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as the API front received it."""

    method: str
    target: str  # path and query string, as on the request line
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    @property
    def raw_path(self) -> str:
        return self.target.split("?", 1)[0] or "/"

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    @property
    def query(self) -> list[tuple[str, str]]:
        _, _, query = self.target.partition("?")
        return parse_qsl(query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        found = [v for k, v in self.headers if k.lower() == wanted]
        return found[-1] if found else None


@dataclass(frozen=True)
class ApiContext:
    """Where a request landed: the API, its stage, the matched resource and the request's ids."""

    api_id: str
    stage: str
    resource_path: str
    path_parameters: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""
    request_time: float = 0.0
    domain_name: str = "127.0.0.1"


def forwarded_headers(source_ip: str, port: int, proto: str = "http") -> list[tuple[str, str]]:
    """The headers API Gateway adds to every proxied request."""
    return [("X-Forwarded-For", source_ip), ("X-Forwarded-Port", str(port)), ("X-Forwarded-Proto", proto)]


def resource_id(resource_path: str) -> str:
    return hashlib.sha256(resource_path.encode()).hexdigest()[:6]


def method_arn(region: str, api: ApiContext, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:{api.api_id}/{api.stage}/{method}/{path.lstrip('/')}"


def _single_and_multi(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """The REST API's two views of headers or query parameters: the last value of each, and all of them."""
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi.items()}, multi


def _request_context(request: HttpRequest, api: ApiContext, account_id: str = ACCOUNT_ID) -> dict[str, Any]:
    moment = api.request_time
    return {
        "resourceId": resource_id(api.resource_path),
        "resourcePath": api.resource_path,
        "httpMethod": request.method,
        "extendedRequestId": api.request_id,
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(moment)),
        "path": f"/{api.stage}{request.path}",
        "accountId": account_id,
        "protocol": request.protocol,
        "stage": api.stage,
        "domainPrefix": api.domain_name.split(".", 1)[0],
        "requestTimeEpoch": int(moment * 1000),
        "requestId": api.request_id,
        "identity": {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "sourceIp": request.source_ip,
            "principalOrgId": None,
            "accessKey": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": request.header("User-Agent"),
            "user": None,
        },
        "domainName": api.domain_name,
        "apiId": api.api_id,
    }


def _common(request: HttpRequest, api: ApiContext) -> dict[str, Any]:
    headers, multi_headers = _single_and_multi(request.headers)
    query, multi_query = _single_and_multi(request.query)
    return {
        "resource": api.resource_path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(api.path_parameters) or None,
        "stageVariables": None,
    }


def authorizer_request_event(request: HttpRequest, api: ApiContext, *, region: str) -> dict[str, Any]:
    """The event of a Lambda REQUEST authorizer."""
    event: dict[str, Any] = {"type": "REQUEST", "methodArn": method_arn(region, api, request.method, request.path)}
    event.update(_common(request, api))
    event["requestContext"] = _request_context(request, api)
    return event


def proxy_event(
    request: HttpRequest,
    api: ApiContext,
    *,
    authorizer: Mapping[str, Any] | None = None,
    binary: bool = False,
) -> dict[str, Any]:
    """The Lambda proxy integration event (REST API, payload format 1.0).

    `binary`: the request's Content-Type matches a binary media type, so the body is passed
    base64-encoded with isBase64Encoded true, as API Gateway does.
    """
    event = _common(request, api)
    context = _request_context(request, api)
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    event["requestContext"] = context
    if not request.body:
        event["body"] = None
        event["isBase64Encoded"] = False
    elif binary:
        event["body"] = base64.b64encode(request.body).decode("ascii")
        event["isBase64Encoded"] = True
    else:
        event["body"] = request.body.decode("utf-8", errors="replace")
        event["isBase64Encoded"] = False
    return event

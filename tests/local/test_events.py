"""Event shapes: the builders the pollers and the front use, and the samples in events/."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from meshanics_local.events import (
    ApiContext,
    HttpRequest,
    authorizer_request_event,
    dynamodb_stream_record,
    proxy_event,
    scheduled_event,
    sqs_record,
)
from meshanics_local.template import load
from tests.local.conftest import EVENTS, ROOT, Wiring


def rebuilt(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample built again by the local platform's builders from its own values (what a poller or the
    API front would send for the same record, message or request)."""
    if "Records" in sample:
        records = []
        for r in sample["Records"]:
            if r["eventSource"] == "aws:dynamodb":
                records.append(dynamodb_stream_record(r, stream_arn=r["eventSourceARN"], region=r["awsRegion"]))
                continue
            assert r["md5OfBody"] == hashlib.md5(r["body"].encode(), usedforsecurity=False).hexdigest()
            message = {"MessageId": r["messageId"], "ReceiptHandle": r["receiptHandle"], "Body": r["body"]}
            message |= {"MD5OfBody": r["md5OfBody"], "Attributes": r["attributes"]}
            records.append(sqs_record(message, queue_arn=r["eventSourceARN"], region=r["awsRegion"]))
        return {"Records": records}
    if set(sample) == {"task"}:  # an EventBridge Scheduler schedule's constant input, from the template
        sweep = load(ROOT / "template.yaml")["Resources"]["ReplayFunction"]["Properties"]["Events"]["Sweep"]
        return json.loads(sweep["Properties"]["Input"])  # type: ignore[no-any-return]
    if sample.get("source") == "aws.events":
        at = datetime.strptime(sample["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        return scheduled_event(rule_arn=sample["resources"][0], region=sample["region"], event_id=sample["id"], at=at)
    context = sample["requestContext"]
    query = urlencode(sample["multiValueQueryStringParameters"] or {}, doseq=True)
    body = sample.get("body") or ""
    request = HttpRequest(
        sample["httpMethod"],
        quote(sample["path"], safe="/:") + (f"?{query}" if query else ""),
        [(k, v) for k, values in sample["multiValueHeaders"].items() for v in values],
        base64.b64decode(body) if sample.get("isBase64Encoded") else body.encode(),
        source_ip=context["identity"]["sourceIp"],
    )
    api = ApiContext(
        context["apiId"],
        context["stage"],
        sample["resource"],
        sample["pathParameters"] or {},
        context["requestId"],
        context["requestTimeEpoch"] / 1000,
        context["domainName"],
    )
    if sample.get("type") == "REQUEST":
        return authorizer_request_event(request, api, region=sample["methodArn"].split(":")[3])
    return proxy_event(request, api, authorizer=context.get("authorizer"), binary=sample["isBase64Encoded"])


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_samples_are_what_the_builders_produce(path: Path) -> None:
    sample = json.loads(path.read_text(encoding="utf-8"))
    assert rebuilt(sample) == sample


def test_every_function_has_a_sample(wiring: Wiring) -> None:
    names = {p.name for p in EVENTS.glob("*.json")}
    for spec in wiring.functions.values():
        prefix = spec.code_dir.name + "-"
        assert any(n.startswith(prefix) for n in names), f"no events/{prefix}*.json for {spec.logical_id}"


def test_stream_record_is_lambdas_shape() -> None:
    created = datetime(2026, 6, 16, 9, 30, 5, 250000, tzinfo=UTC)
    raw = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {
                "pk": {"S": "a"},
                "blob": {"B": b"\x00\xff"},
                "set": {"BS": [b"\x01"]},
                "nested": {"M": {"inner": {"L": [{"B": b"\x02"}, {"N": "1"}]}}},
            },
            "SequenceNumber": "100",
            "SizeBytes": 50,
            "StreamViewType": "NEW_IMAGE",
        },
    }
    record = dynamodb_stream_record(raw, stream_arn="arn:stream", region="us-east-1")
    assert list(record) == [
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    ]
    assert record["eventVersion"] == "1.1"
    assert record["eventSourceARN"] == "arn:stream"
    dynamodb = record["dynamodb"]
    assert dynamodb["ApproximateCreationDateTime"] == int(created.timestamp())
    assert dynamodb["NewImage"]["blob"] == {"B": base64.b64encode(b"\x00\xff").decode()}
    assert dynamodb["NewImage"]["set"] == {"BS": ["AQ=="]}
    assert dynamodb["NewImage"]["nested"]["M"]["inner"]["L"] == [{"B": "Ag=="}, {"N": "1"}]
    json.dumps(record)  # JSON-serializable, as Lambda sends it


def test_sqs_record_is_lambdas_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "rh",
        "MD5OfBody": "x",
        "Body": "{}",
        "Attributes": {
            "SenderId": "S",
            "SentTimestamp": "1",
            "ApproximateReceiveCount": "2",
            "ApproximateFirstReceiveTimestamp": "3",
        },
        "MessageAttributes": {"kind": {"StringValue": "job", "DataType": "String"}},
    }
    record = sqs_record(message, queue_arn="arn:aws:sqs:us-east-1:123456789012:q", region="us-east-1")
    sample = json.loads((EVENTS / "deliver-sqs.json").read_text())["Records"][0]
    assert list(record) == list(sample)
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"] == {
        "kind": {"stringListValues": [], "binaryListValues": [], "dataType": "String", "stringValue": "job"}
    }


API = ApiContext(api_id="abc", stage="dev", resource_path="/v1/items/{id}", path_parameters={"id": "i 1"})


def test_proxy_event_query_headers_and_text_body() -> None:
    request = HttpRequest(
        "POST",
        "/v1/items/i%201?tag=a&tag=b&q=x%20y",
        [("Content-Type", "text/plain"), ("X-Multi", "1"), ("X-Multi", "2")],
        b"hello",
    )
    event = proxy_event(request, API)
    assert event["path"] == "/v1/items/i 1"
    assert event["resource"] == "/v1/items/{id}"
    assert event["pathParameters"] == {"id": "i 1"}
    assert event["queryStringParameters"] == {"tag": "b", "q": "x y"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["x y"]}
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["body"] == "hello" and event["isBase64Encoded"] is False
    assert event["requestContext"]["path"] == "/dev/v1/items/i 1"
    assert "authorizer" not in event["requestContext"]


def test_proxy_event_binary_and_empty_bodies() -> None:
    binary = proxy_event(HttpRequest("PUT", "/x", [("Content-Type", "application/json")], b'{"a":1}'), API, binary=True)
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b'{"a":1}'
    empty = proxy_event(HttpRequest("GET", "/x"), API, binary=True)
    assert empty["body"] is None and empty["isBase64Encoded"] is False
    assert empty["headers"] is None and empty["queryStringParameters"] is None


def test_authorizer_event() -> None:
    request = HttpRequest("GET", "/v1/items/i1", [("Authorization", "Bearer k")])
    event = authorizer_request_event(request, API, region="us-east-1")
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:abc/dev/GET/v1/items/i1"
    sample = json.loads((EVENTS / "authorizer-request.json").read_text())
    assert list(event) == list(sample)

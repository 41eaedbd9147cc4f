"""Delivery against real loopback receivers: success, 5xx, timeouts, resets, redirects, slow bodies."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.signing import verify
from meshanics_local.receiver import Behaviour, Receiver, running_receiver
from tests.support.harness import Platform

ADMIN = ["integrations:admin", "events:write"]


def subscribe(platform: Platform, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body = {"url": url, "events": events or ["rollout.*"], "allow_private_network": True}
    created = platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body)
    assert created.status == 201, created.json
    return created.json  # type: ignore[no-any-return]


def emit(platform: Platform, count: int = 1, type_: str = "rollout.created") -> list[int]:
    events = [{"type": type_, "subject": f"rollout/r{i}", "data": {"rollout_id": f"r{i}"}} for i in range(count)]
    written = platform.api_as("acme", ADMIN, "POST", "/v1/events", body={"events": events})
    assert written.status == 201, written.json
    return [item["sequence"] for item in written.json["items"]]


def only_delivery(platform: Platform, webhook_id: str) -> dict[str, Any]:
    listed = platform.api_as("acme", ["integrations:read"], "GET", f"/v1/webhooks/{webhook_id}/deliveries")
    (item,) = listed.json["items"]
    detail = platform.api_as("acme", ["integrations:read"], "GET", f"/v1/deliveries/{item['id']}")
    return detail.json  # type: ignore[no-any-return]


def visible_jobs(queue_url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_success_is_signed_with_every_header_and_recorded(platform: Platform, receiver: Receiver) -> None:
    webhook = subscribe(platform, receiver.url)
    (sequence,) = emit(platform)
    platform.pump()
    (request,) = receiver.requests
    headers = request.headers
    assert verify(request.body, headers["X-Meshanics-Signature"], webhook["secret"]) > 0
    envelope = json.loads(request.body)
    assert envelope["sequence"] == sequence
    assert headers["X-Meshanics-Event"] == "rollout.created"
    assert headers["X-Meshanics-Delivery"] == envelope["idempotency_key"] == headers["webhook-id"]
    assert headers["X-Meshanics-Spec"] == "1.0"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("Meshanics-Webhooks/")
    delivery = only_delivery(platform, webhook["id"])
    assert delivery["status"] == "delivered"
    assert delivery["attempts"][0] | {"at": None, "duration_ms": None} == {
        "attempt": 1,
        "at": None,
        "outcome": "delivered",
        "status_code": 200,
        "duration_ms": None,
        "error": None,
    }
    assert delivery["envelope"] == envelope


def _retry_once(platform: Platform, receiver: Receiver, behaviour: Behaviour) -> dict[str, Any]:
    receiver.behaviours = [behaviour]
    webhook = subscribe(platform, receiver.url)
    emit(platform)
    platform.fan_out()
    event, response = platform.deliver()
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [event["Records"][0]["messageId"]]
    # The job was hidden for the retry delay, not dropped and not immediately visible again.
    assert visible_jobs(platform.env["DELIVERY_QUEUE_URL"]) == 0
    delivery = only_delivery(platform, webhook["id"])
    assert delivery["status"] == "pending"
    assert delivery["next_attempt_at"] is not None
    return delivery


def test_server_error_schedules_a_retry(platform: Platform, receiver: Receiver) -> None:
    delivery = _retry_once(platform, receiver, Behaviour(status=500, body=b"<html>secret stack trace</html>"))
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] == 500
    assert attempt["outcome"] == "failed"
    assert "500" in attempt["error"]
    assert "stack trace" not in json.dumps(delivery)  # the receiver's body is never recorded


def test_read_timeout_is_a_failed_attempt(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELIVERY_READ_TIMEOUT_MS", "300")
    services.reset()
    delivery = _retry_once(platform, receiver, Behaviour(delay=1.5))
    assert "no response within 0.3s" in delivery["attempts"][0]["error"]
    assert delivery["attempts"][0]["status_code"] is None


def test_connection_reset_is_a_failed_attempt(platform: Platform, receiver: Receiver) -> None:
    delivery = _retry_once(platform, receiver, Behaviour(reset=True))
    assert "connection" in delivery["attempts"][0]["error"].lower()


def test_redirects_are_not_followed(platform: Platform, receiver: Receiver) -> None:
    with running_receiver() as elsewhere:
        delivery = _retry_once(platform, receiver, Behaviour(status=302, headers={"Location": elsewhere.url}))
        assert "redirects are not followed" in delivery["attempts"][0]["error"]
        assert delivery["attempts"][0]["status_code"] == 302
        assert elsewhere.requests == []


def test_slow_body_after_a_2xx_is_delivered_and_bounded(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELIVERY_READ_TIMEOUT_MS", "500")
    services.reset()
    receiver.behaviours = [Behaviour(status=200, body=b"x" * 100, drip=0.05)]
    webhook = subscribe(platform, receiver.url)
    emit(platform)
    platform.fan_out()
    started = time.monotonic()
    _, response = platform.deliver()
    assert time.monotonic() - started < 3.0  # the drain stops at the deadline, it does not read 5 s
    assert response["batchItemFailures"] == []
    assert only_delivery(platform, webhook["id"])["status"] == "delivered"


def test_retry_after_is_honoured(platform: Platform, receiver: Receiver) -> None:
    delivery = _retry_once(platform, receiver, Behaviour(status=429, headers={"Retry-After": "3600"}))
    from meshanics.clock import parse_iso

    wait = parse_iso(delivery["next_attempt_at"]) - parse_iso(delivery["attempts"][0]["at"])
    assert 3590 <= wait <= 3610


def test_last_attempt_marks_failed_and_settles_the_job(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A three-attempt schedule of 1-second delays, so the test can walk the whole bound.
    monkeypatch.setenv("DELIVERY_RETRY_SCHEDULE", "0,1,1")
    monkeypatch.setenv("DELIVERY_MAX_ATTEMPTS", "3")
    services.reset()
    receiver.behaviours = [Behaviour(status=503)]
    webhook = subscribe(platform, receiver.url)
    emit(platform)
    platform.fan_out()
    for _ in range(40):
        platform.deliver()
        if len(receiver.requests) == 3:
            break
        time.sleep(0.1)
    delivery = only_delivery(platform, webhook["id"])
    assert delivery["status"] == "failed"
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    assert delivery["next_attempt_at"] is None
    # The record keeps what a replay needs; the job is done with, and the DLQ is only for crashes.
    sqs = boto3.client("sqs")
    for url in (platform.env["DELIVERY_QUEUE_URL"], platform.env["DELIVERY_DLQ_URL"]):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    # Every attempt sent the same bytes.
    assert len({r.body for r in receiver.requests}) == 1


def test_a_batch_is_delivered_concurrently_over_kept_alive_connections(platform: Platform) -> None:
    def slow(r: Receiver) -> None:
        r.behaviours = [Behaviour(delay=0.2)]

    with running_receiver(slow) as receiver:
        subscribe(platform, receiver.url)
        emit(platform, count=10)
        platform.fan_out()
        _, response = platform.deliver()
        assert response["batchItemFailures"] == []
        assert len(receiver.requests) == 10
        assert receiver.max_in_flight > 1  # POSTs of one batch overlap
        connections = receiver.connections
        emit(platform, count=10)
        platform.fan_out()
        platform.deliver()
        assert len(receiver.requests) == 20
        assert receiver.connections == connections  # the second invocation reused the pool


def test_egress_guard_refuses_at_connect_time_without_connecting(platform: Platform, receiver: Receiver) -> None:
    webhook = subscribe(platform, receiver.url)
    # The endpoint loses its private-network opt-in behind the API's back (think: the name now
    # resolves somewhere internal). The delivery must be refused before any connection is made.
    ddb = boto3.client("dynamodb")
    ddb.update_item(
        TableName=platform.env["INTEGRATIONS_TABLE"],
        Key={"pk": {"S": "T#acme"}, "sk": {"S": f"EP#{webhook['id']}"}},
        UpdateExpression="SET allow_private_network = :f",
        ExpressionAttributeValues={":f": {"BOOL": False}},
    )
    emit(platform)
    platform.fan_out()
    platform.deliver()
    assert receiver.connections == 0
    error = only_delivery(platform, webhook["id"])["attempts"][0]["error"]
    assert error.startswith("refused by egress guard")  # plain http to a non-opted-in receiver


def test_proxy_environment_does_not_route_around_the_guard(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url.removesuffix("/hook"))
        monkeypatch.setenv("NO_PROXY", "")
        subscribe(platform, receiver.url)
        emit(platform)
        platform.pump()
        assert len(receiver.requests) == 1
        assert proxy.connections == 0


def test_disabled_or_deleted_endpoint_fails_the_pending_job(platform: Platform, receiver: Receiver) -> None:
    webhook = subscribe(platform, receiver.url)
    emit(platform)
    platform.fan_out()
    patched = platform.api_as("acme", ADMIN, "PATCH", f"/v1/webhooks/{webhook['id']}", body={"enabled": False})
    assert patched.json["disabled_reason"]
    _, response = platform.deliver()
    assert response["batchItemFailures"] == []
    assert receiver.requests == []
    delivery = only_delivery(platform, webhook["id"])
    assert delivery["status"] == "failed" and delivery["last_error"] == "webhook is disabled"

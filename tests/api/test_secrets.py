"""Signing secrets: shown only by create and rotate, sealed at rest (bound to tenant and endpoint),
never in a table item, a queued job, a delivery, a log line or any other response."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import struct
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag

from meshanics import services
from meshanics.model import secret_context
from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import (
    ADMIN,
    EVENTS,
    OTHER,
    PUBLIC_URL,
    READ,
    TENANT,
    create_webhook,
    receiver_webhook,
    rollout_created,
    write_events,
)
from tests.support.harness import ApiResponse, Platform


def forms(secret: str) -> list[bytes]:
    """Every form a secret could leak in: as shown, its base64 part, the key bytes, their hex."""
    found = [secret.encode()]
    if secret.startswith("whsec_"):
        part = secret.removeprefix("whsec_")
        raw = base64.b64decode(part)
        found += [part.encode(), raw, raw.hex().encode(), base64.urlsafe_b64encode(raw).rstrip(b"=")]
        found.append(part.rstrip("=").encode())
    return found


def _flatten(value: Any) -> Iterator[bytes]:
    """Every string and byte value inside a raw DynamoDB item (any attribute type, nested)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield str(key).encode()
            yield from _flatten(inner)
    elif isinstance(value, list | set | tuple):
        for inner in value:
            yield from _flatten(inner)
    elif isinstance(value, bytes | bytearray):
        yield bytes(value)
    else:
        yield str(value).encode()


def raw_items(table: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stored_bytes() -> bytes:
    """Everything the tables hold, every value of every item, as one searchable blob."""
    return b"\x00".join(
        b for table in (os.environ["INTEGRATIONS_TABLE"], os.environ["AUDIT_TABLE"]) for b in _flatten(raw_items(table))
    )


def assert_absent(secrets_: list[str], haystack: bytes | str, where: str) -> None:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    for secret in secrets_:
        for form in forms(secret):
            assert form not in data, f"a secret ({form[:10]!r}...) appears in {where}"


def endpoint_item(tenant: str, webhook_id: str) -> dict[str, Any]:
    response = boto3.client("dynamodb").get_item(
        TableName=os.environ["INTEGRATIONS_TABLE"], Key={"pk": {"S": f"T#{tenant}"}, "sk": {"S": f"EP#{webhook_id}"}}
    )
    return response["Item"]


# -- at rest --------------------------------------------------------------------------------------
def test_no_table_item_holds_a_secret_before_or_after_rotation(platform: Platform, receiver: Receiver) -> None:
    first = receiver_webhook(platform, receiver, events=["rollout.*", "webhook.*"])
    second = create_webhook(platform, OTHER, url=PUBLIC_URL, events=["device.*"])
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    shown = [first["secret"], second["secret"]]
    blob = stored_bytes()
    assert len(blob) > 1000
    assert_absent(shown, blob, "a table item")

    rotated = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{first['id']}/rotate-secret").json
    shown.append(rotated["secret"])
    send = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{first['id']}/test")
    assert send.json["status"] == "delivered"
    write_events(platform, [rollout_created("r2")])
    platform.pump()
    assert_absent(shown, stored_bytes(), "a table item after rotation")

    # What is stored instead: sealed values (both during the overlap), each a fresh envelope.
    item = endpoint_item(TENANT, first["id"])
    assert set(item) >= {"secret", "previous_secret", "previous_secret_expires_at"}
    sealed, previous = item["secret"]["B"], item["previous_secret"]["B"]
    assert sealed != previous
    for value, secret in ((sealed, rotated["secret"]), (previous, first["secret"])):
        version, length = struct.unpack_from(">BH", value)
        assert version == 1
        assert len(value) == 3 + length + 12 + len(secret) + 16  # wrapped key, nonce, AES-GCM ciphertext + tag
    # The audit log recorded the management events without any secret-like field.
    audit_text = b"\x00".join(_flatten(raw_items(os.environ["AUDIT_TABLE"])))
    assert b"whsec_" not in audit_text
    assert b"webhook.secret_rotated" in audit_text


def test_queued_jobs_hold_no_secret(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*", "webhook.*"])
    rotated = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/rotate-secret").json
    write_events(platform, [rollout_created("r1")])
    platform.fan_out()
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=platform.env["DELIVERY_QUEUE_URL"], MaxNumberOfMessages=10, VisibilityTimeout=0
    ).get("Messages", [])
    assert messages
    assert_absent([created["secret"], rotated["secret"]], json.dumps(messages), "a queued delivery job")


# -- in responses -----------------------------------------------------------------------------------
def test_only_create_and_rotate_return_a_secret(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["webhook.*", "rollout.*"])
    webhook_id = created["id"]
    rotated = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/rotate-secret")
    assert rotated.status == 200 and "secret" in rotated.json
    secrets_ = [created["secret"], rotated.json["secret"]]
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    receiver.behaviours = [Behaviour(status=500)]
    failed = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/test").json
    receiver.behaviours = []

    scopes = [READ, ADMIN, EVENTS]
    responses: dict[str, ApiResponse] = {
        "get": platform.api_as(TENANT, scopes, "GET", f"/v1/webhooks/{webhook_id}"),
        "list": platform.api_as(TENANT, scopes, "GET", "/v1/webhooks"),
        "patch": platform.api_as(TENANT, scopes, "PATCH", f"/v1/webhooks/{webhook_id}", body={"description": "d"}),
        "test": platform.api_as(TENANT, scopes, "POST", f"/v1/webhooks/{webhook_id}/test"),
        "deliveries": platform.api_as(TENANT, scopes, "GET", f"/v1/webhooks/{webhook_id}/deliveries"),
        "replay": platform.api_as(TENANT, scopes, "POST", f"/v1/deliveries/{failed['delivery_id']}/replay"),
        "replay-all": platform.api_as(TENANT, scopes, "POST", f"/v1/webhooks/{webhook_id}/replay"),
        "event-types": platform.api_as(TENANT, scopes, "GET", "/v1/event-types"),
        "events": platform.api_as(TENANT, scopes, "POST", "/v1/events", body=rollout_created("r2")),
        "openapi": platform.api("GET", "/v1/openapi.json", context={}),
        "docs": platform.api("GET", "/v1/docs", context={}),
        "error": platform.api_as(TENANT, scopes, "PATCH", f"/v1/webhooks/{webhook_id}", body={"secret": "x"}),
    }
    platform.pump()
    for item in responses["deliveries"].json["items"]:
        responses[f"delivery {item['event_type']}"] = platform.api_as(
            TENANT, scopes, "GET", f"/v1/deliveries/{item['id']}"
        )
    assert any(name.startswith("delivery webhook.secret_rotated") for name in responses)
    for name, response in responses.items():
        assert response.status < 500, (name, response.status)
        assert_absent(secrets_, response.body, f"the {name} response")
        assert b"whsec_" not in response.body, name
        if name not in ("openapi", "docs", "error"):
            assert b'"secret"' not in response.body, name
    # Deliveries (including webhook.* events about this endpoint) never carry one either.
    assert len(receiver.requests) >= 4
    for request in receiver.requests:
        assert_absent(secrets_, request.body, "a delivered body")
        assert_absent(secrets_, json.dumps(request.headers), "delivery headers")


# -- in logs ----------------------------------------------------------------------------------------
class Everything(logging.Handler):
    """Keeps every record with all it carries: message, arguments, extra fields, exception text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.levelname} {record.getMessage()} {record.__dict__!r}"
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture
def all_logs(configured: Any) -> Iterator[tuple[Platform, Everything]]:
    """Functions started at DEBUG, every logger (theirs, the core's, boto's) captured at DEBUG."""
    platform = configured(POWERTOOLS_LOG_LEVEL="DEBUG", LOG_LEVEL="DEBUG")
    for name in ("api", "authorizer", "fanout", "deliver"):
        platform.handler(name)  # loaded now, so their loggers exist to be captured
    handler = Everything()
    loggers = [logging.getLogger()] + [
        logging.getLogger(name)
        for name, value in logging.Logger.manager.loggerDict.items()
        if isinstance(value, logging.Logger)
    ]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield platform, handler
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_no_log_line_holds_a_secret(
    all_logs: tuple[Platform, Everything],
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform, handler = all_logs
    caplog.set_level(logging.DEBUG)
    key = platform.key(TENANT, [ADMIN, READ, EVENTS])
    revoked = platform.key(TENANT, [READ])
    services.api_keys().revoke(TENANT, revoked.split("_")[1])

    created = platform.api(
        "POST", "/v1/webhooks", key=key, body={"url": receiver.url, "allow_private_network": True, "events": []}
    )
    assert created.status == 201
    webhook_id = created.json["id"]
    rotated = platform.api("POST", f"/v1/webhooks/{webhook_id}/rotate-secret", key=key, body={"overlap_seconds": 60})
    assert rotated.status == 200
    assert platform.api("POST", f"/v1/webhooks/{webhook_id}/test", key=key).json["status"] == "delivered"
    receiver.behaviours = [Behaviour(status=500, body=b"receiver error page")]
    failed = platform.api("POST", f"/v1/webhooks/{webhook_id}/test", key=key).json
    assert failed["status"] == "failed"
    receiver.behaviours = []
    assert platform.api("POST", "/v1/events", key=key, body=rollout_created("r1")).status == 201
    platform.pump()
    assert platform.api("POST", f"/v1/deliveries/{failed['delivery_id']}/replay", key=key).status == 202
    platform.pump()
    assert platform.api("GET", f"/v1/deliveries/{failed['delivery_id']}", key=key).json["status"] == "delivered"
    assert platform.api("PATCH", f"/v1/webhooks/{webhook_id}", key=key, body={"description": "x"}).status == 200
    assert platform.api("GET", "/v1/webhooks", key=revoked).status == 401
    assert platform.api("GET", "/v1/webhooks", key=key + "tampered").status == 401
    assert platform.api("DELETE", f"/v1/webhooks/{webhook_id}", key=key).status == 204
    assert len(receiver.requests) >= 5

    secrets_ = [created.json["secret"], rotated.json["secret"], key, revoked, key.split("_", 2)[2]]
    captured = capsys.readouterr()
    everything = "\n".join([*handler.lines, caplog.text, captured.out, captured.err])
    assert any("authentication refused" in line for line in handler.lines)  # the capture sees the functions
    assert len(handler.lines) > 50
    assert_absent(secrets_, everything, "the logs")
    assert "whsec_" not in everything


# -- sealed, and bound to tenant and endpoint ----------------------------------------------------------
def test_a_sealed_secret_opens_only_for_its_tenant_and_endpoint(platform: Platform) -> None:
    first = create_webhook(platform, url=PUBLIC_URL)
    second = create_webhook(platform, url=PUBLIC_URL)
    foreign = create_webhook(platform, OTHER, url=PUBLIC_URL)
    sealer = services.sealer()
    sealed = endpoint_item(TENANT, first["id"])["secret"]["B"]
    assert sealer.unseal(sealed, secret_context(TENANT, first["id"])) == first["secret"]
    for tenant, webhook_id in ((TENANT, second["id"]), (OTHER, first["id"]), (OTHER, foreign["id"])):
        with pytest.raises((ClientError, InvalidTag)):
            sealer.unseal(sealed, secret_context(tenant, webhook_id))
    # KMS itself refuses the data key under another context (not only the AES-GCM associated data).
    _, length = struct.unpack_from(">BH", sealed)
    wrapped = sealed[3 : 3 + length]
    kms = boto3.client("kms")
    plaintext = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=secret_context(TENANT, first["id"]))["Plaintext"]
    assert len(plaintext) == 32  # AES-256 data key
    with pytest.raises(ClientError, match="InvalidCiphertext"):
        kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=secret_context(TENANT, second["id"]))


def test_a_sealed_secret_copied_onto_another_endpoint_does_not_sign(platform: Platform, receiver: Receiver) -> None:
    donor = receiver_webhook(platform, receiver, events=["device.*"])
    target = receiver_webhook(platform, receiver, events=["rollout.*"])
    sealed = endpoint_item(TENANT, donor["id"])["secret"]["B"]
    boto3.client("dynamodb").update_item(
        TableName=os.environ["INTEGRATIONS_TABLE"],
        Key={"pk": {"S": f"T#{TENANT}"}, "sk": {"S": f"EP#{target['id']}"}},
        UpdateExpression="SET secret = :sealed",
        ExpressionAttributeValues={":sealed": {"B": sealed}},
    )
    # The copy cannot be opened under the target's context ...
    with pytest.raises((ClientError, InvalidTag)):
        services.sealer().unseal(sealed, secret_context(TENANT, target["id"]))
    # ... so nothing is ever sent to the target signed with the donor's secret: the attempt fails
    # (and is retried on the schedule, the job staying queued) ...
    write_events(platform, [rollout_created("r1")])
    platform.fan_out()
    event, response = platform.deliver()
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed == [r["messageId"] for r in event["Records"]]
    (delivery,) = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{target['id']}/deliveries").json["items"]
    assert delivery["status"] == "pending"
    assert delivery["last_error"] == "could not unseal the signing secret; nothing was sent"
    # ... and a test delivery reports the failure instead of a 500.
    tested = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{target['id']}/test")
    assert tested.status == 200 and tested.json["status"] == "failed"
    assert tested.json["error"] == "could not unseal the signing secret; nothing was sent"
    assert receiver.requests == []
    assert platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{target['id']}").status == 200


def test_secrets_are_high_entropy_and_unique(platform: Platform) -> None:
    secrets_ = [create_webhook(platform, url=PUBLIC_URL)["secret"] for _ in range(5)]
    assert len(set(secrets_)) == 5
    for secret in secrets_:
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert len(raw) >= 32
        assert len(set(raw)) > 16  # not a constant or a short repeated pattern
    with pytest.raises(binascii.Error):
        base64.b64decode("whsec_" + secrets_[0], validate=True)

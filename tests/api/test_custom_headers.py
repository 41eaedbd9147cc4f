"""Custom headers per endpoint: validated (every refused class, every limit), merged by PATCH, sealed
at rest beside the secret, masked in every response, never logged, sent with every POST of the
endpoint (test deliveries too) and never in place of the platform's own headers."""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag

from meshanics import aws, custom_headers, services
from meshanics.config import Limits
from meshanics.model import HEADER_MASK, secret_context
from meshanics.signing import verify
from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import (
    ADMIN,
    EVENTS,
    PUBLIC_URL,
    READ,
    TENANT,
    assert_error,
    create_webhook,
    deliveries,
    receiver_webhook,
    rollout_created,
    send_test,
    write_events,
)
from tests.api.test_secrets import Everything, all_logs, endpoint_item, raw_items, stored_bytes
from tests.support.harness import ApiResponse, Platform

__all__ = ["all_logs"]  # the fixture of test_secrets.py, used here too

LIMITS = Limits()
# Values a test sets, to look for wherever they must not be.
TOKEN = "gw-token-7d0c9a55e1f34b2b"
API_KEY = "k3y-4f1e0b6a2c9d8e7f"
ROUTE = "route-blue-5c1d93"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Gateway-Key": API_KEY}


def _create(platform: Platform, headers: Any, url: str = PUBLIC_URL) -> ApiResponse:
    body = {"url": url, "headers": headers, "allow_private_network": url != PUBLIC_URL}
    return platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=body)


def _patch(platform: Platform, webhook_id: str, headers: Any) -> ApiResponse:
    return platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{webhook_id}", body={"headers": headers})


def _get(platform: Platform, webhook_id: str) -> dict[str, Any]:
    response = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{webhook_id}")
    assert response.status == 200, response.json
    return response.json  # type: ignore[no-any-return]


def _stored_headers(webhook_id: str) -> dict[str, str]:
    item = endpoint_item(TENANT, webhook_id)
    sealed = item["headers"]["B"]
    text = services.sealer().unseal(sealed, secret_context(TENANT, webhook_id), label=custom_headers.SEALED_LABEL)
    return dict(json.loads(text))


# -- refused, with a 400 naming the header ---------------------------------------------------------
REFUSED_NAMES = [
    # the platform's signature and delivery headers, and their namespaces
    "X-Meshanics-Signature",
    "x-meshanics-event",
    "X-MESHANICS-DELIVERY",
    "X-Meshanics-Spec",
    "X-Meshanics-Anything",
    "Meshanics-Signature",
    "webhook-id",
    "Webhook-Timestamp",
    "webhook-signature",
    "webhook-other",
    # what describes the signed body
    "Content-Type",
    "content-length",
    "Content-Encoding",
    "Content-MD5",
    # set by the platform
    "Host",
    "User-Agent",
    # hop-by-hop and transport
    "Connection",
    "Keep-Alive",
    "Proxy-Authorization",
    "proxy-connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Expect",
    "Cookie",
]


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_reserved_names_are_refused_on_create_and_patch(platform: Platform, name: str) -> None:
    error = assert_error(_create(platform, {"X-Ok": "1", name: "v"}), 400, "invalid_header", f"headers.{name}")
    assert name in error["message"] and "cannot be set" in error["message"]
    created = create_webhook(platform, url=PUBLIC_URL)
    error = assert_error(_patch(platform, created["id"], {name: "v"}), 400, "invalid_header", f"headers.{name}")
    assert name in error["message"]
    assert _get(platform, created["id"])["headers"] == {}


@pytest.mark.parametrize(
    "name",
    ["", "X Gateway", "X:Gateway", "X-Gateway\r\nX-Evil", "X-\x00", "Ключ", "(x)", "X/Y", "a=b", "n" * 65],
)
def test_names_must_be_tokens_within_the_length_limit(platform: Platform, name: str) -> None:
    error = assert_error(_create(platform, {name: "v"}), 400, "invalid_header", "headers")
    assert "token" in error["message"] and str(LIMITS.max_header_name_length) in error["message"]
    created = create_webhook(platform, url=PUBLIC_URL)
    assert_error(_patch(platform, created["id"], {name: None}), 400, "invalid_header", "headers")


@pytest.mark.parametrize(
    "value",
    [
        "Qx7\r\nX-Evil: 1",
        "Qx7\nb",
        "Qx7\rb",
        "Qx7\x00b",
        "Qx7\tb",
        "Qx7\x1bb",
        "Qx7\x7fb",
        " Qx7",
        "Qx7 ",
        "",
        "Qx7caf\u00e9",
        "Qx7" + "v" * LIMITS.max_header_value_length,
    ],
)
def test_values_must_be_printable_ascii_within_the_length_limit(platform: Platform, value: str) -> None:
    response = _create(platform, {"X-Gateway-Key": value})
    error = assert_error(response, 400, "invalid_header", "headers.X-Gateway-Key")
    assert "X-Gateway-Key" in error["message"]
    assert b"Qx7" not in response.body  # the value is never echoed
    created = create_webhook(platform, url=PUBLIC_URL, headers={"X-Gateway-Key": "ok"})
    patched = _patch(platform, created["id"], {"x-gateway-key": value})
    assert_error(patched, 400, "invalid_header", "headers.x-gateway-key")
    assert b"Qx7" not in patched.body
    assert _stored_headers(created["id"]) == {"X-Gateway-Key": "ok"}


@pytest.mark.parametrize("value", [1, True, ["a"], {"a": "b"}])
def test_values_must_be_strings(platform: Platform, value: Any) -> None:
    assert_error(_create(platform, {"X-Gateway-Key": value}), 400, field="headers")


def test_a_null_value_on_create_is_refused(platform: Platform) -> None:
    assert_error(_create(platform, {"X-Gateway-Key": None}), 400, field="headers")


def test_names_differing_only_by_case_are_refused(platform: Platform) -> None:
    error = assert_error(_create(platform, {"X-Gateway-Key": "a", "x-gateway-key": "b"}), 400, "invalid_header")
    assert "X-Gateway-Key" in error["message"] and "x-gateway-key" in error["message"]
    created = create_webhook(platform, url=PUBLIC_URL, headers={"X-A": "1"})
    assert_error(_patch(platform, created["id"], {"X-B": "1", "x-b": None}), 400, "invalid_header", "headers.x-b")


def test_count_and_total_size_limits(platform: Platform) -> None:
    most = {f"X-H{i}": "v" for i in range(LIMITS.max_custom_headers)}
    created = _create(platform, most)
    assert created.status == 201 and len(created.json["headers"]) == LIMITS.max_custom_headers
    over = _create(platform, most | {"X-One-More": "v"})
    error = assert_error(over, 400, "invalid_request", "headers")
    assert str(LIMITS.max_custom_headers) in error["message"]
    # The count is checked on the merged set too: a PATCH cannot add past it.
    patched = _patch(platform, created.json["id"], {"X-One-More": "v"})
    error = assert_error(patched, 400, "invalid_header", "headers")
    assert f"at most {LIMITS.max_custom_headers}" in error["message"]
    assert _patch(platform, created.json["id"], {"X-One-More": "v", "X-H0": None}).status == 200

    # Longest name, longest value: accepted; names and values together past the total: refused.
    name = "N" * LIMITS.max_header_name_length
    value = "v" * LIMITS.max_header_value_length
    assert _create(platform, {name: value}).status == 201
    total = LIMITS.max_custom_headers_bytes
    fits = {"X-A": "a" * (total // 2 - 3), "X-B": "b" * (total // 2 - 3)}
    assert sum(len(k) + len(v) for k, v in fits.items()) == total
    assert _create(platform, fits).status == 201
    over_total = _create(platform, fits | {"X-C": "c"})
    error = assert_error(over_total, 400, "invalid_header", "headers")
    assert f"{total}-byte" in error["message"]


def test_the_document_states_the_header_limits(platform: Platform) -> None:
    spec = platform.api("GET", "/v1/openapi.json", context={}).json
    schemas = spec["components"]["schemas"]
    create = schemas["WebhookCreate"]["properties"]["headers"]
    assert create["maxProperties"] == LIMITS.max_custom_headers
    for bound in (
        LIMITS.max_header_name_length,
        LIMITS.max_header_value_length,
        LIMITS.max_custom_headers_bytes,
    ):
        assert str(bound) in create["description"]
    assert "X-Meshanics-*" in create["description"] and "webhook-*" in create["description"]
    update = schemas["WebhookUpdate"]["properties"]["headers"]
    assert "null` removes" in update["description"]
    shown = schemas["Webhook"]["properties"]["headers"]
    assert HEADER_MASK in shown["description"]


# -- write-only: masked in responses, sealed at rest, absent from logs -----------------------------
def test_values_are_masked_in_every_response(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"], headers=HEADERS)
    masked = {"Authorization": HEADER_MASK, "X-Gateway-Key": HEADER_MASK}
    assert created["headers"] == masked
    webhook_id = created["id"]
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    responses = {
        "get": platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{webhook_id}"),
        "list": platform.api_as(TENANT, [READ], "GET", "/v1/webhooks"),
        "patch": _patch(platform, webhook_id, {"X-Gateway-Key": API_KEY + "-2"}),
        "rotate": platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/rotate-secret"),
        "test": platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/test"),
        "deliveries": platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{webhook_id}/deliveries"),
        "refused": _patch(platform, webhook_id, {"Host": TOKEN}),
    }
    for item in responses["deliveries"].json["items"]:
        responses[item["id"]] = platform.api_as(TENANT, [READ], "GET", f"/v1/deliveries/{item['id']}")
    for name, response in responses.items():
        assert response.status < 500, name
        for value in (TOKEN, API_KEY):
            assert value.encode() not in response.body, name
    assert responses["get"].json["headers"] == masked
    assert responses["list"].json["items"][0]["headers"] == masked
    assert responses["patch"].json["headers"] == masked
    assert responses["rotate"].json["headers"] == masked


def test_values_are_sealed_beside_the_secret_and_in_no_table_item(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*", "webhook.*"], headers=HEADERS)
    webhook_id = created["id"]
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    assert _patch(platform, webhook_id, {"X-Route": ROUTE}).status == 200
    rotated = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/rotate-secret")
    assert rotated.status == 200
    platform.pump()
    assert len(receiver.requests) >= 3
    blob = stored_bytes()
    for value in (TOKEN, API_KEY, ROUTE):
        assert value.encode() not in blob, value
    item = endpoint_item(TENANT, webhook_id)
    assert [n["S"] for n in item["header_names"]["L"]] == ["Authorization", "X-Gateway-Key", "X-Route"]
    # Sealed under the current secret's data key (one Decrypt opens both), moved with the rotation.
    secret, headers = item["secret"]["B"], item["headers"]["B"]
    _, length = struct.unpack_from(">BH", secret)
    assert headers[: 3 + length] == secret[: 3 + length]
    assert headers != secret
    assert _stored_headers(webhook_id) == HEADERS | {"X-Route": ROUTE}
    # Bound to its purpose: the sealed set does not open as the secret, nor for another endpoint.
    sealer = services.sealer()
    with pytest.raises(InvalidTag):
        sealer.unseal(headers, secret_context(TENANT, webhook_id))
    other = create_webhook(platform, url=PUBLIC_URL)
    with pytest.raises((ClientError, InvalidTag)):
        sealer.unseal(headers, secret_context(TENANT, other["id"]), label=custom_headers.SEALED_LABEL)
    # The audit log says that headers changed, never what they hold.
    updates = [i for i in raw_items(os.environ["AUDIT_TABLE"]) if i["type"]["S"] == "webhook.updated"]
    (update,) = updates
    assert json.loads(update["body"]["S"])["data"]["changed"] == ["headers"]


def test_values_never_reach_a_log_line(
    all_logs: tuple[Platform, Everything],
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform, handler = all_logs
    caplog.set_level(logging.DEBUG)
    key = platform.key(TENANT, [ADMIN, READ, EVENTS])
    body = {"url": receiver.url, "allow_private_network": True, "headers": HEADERS}
    created = platform.api("POST", "/v1/webhooks", key=key, body=body)
    assert created.status == 201
    webhook_id = created.json["id"]
    path = f"/v1/webhooks/{webhook_id}"
    assert platform.api("PATCH", path, key=key, body={"headers": {"X-Route": TOKEN + "-route"}}).status == 200
    assert platform.api("PATCH", path, key=key, body={"headers": {"X-Bad": TOKEN + "\r\n"}}).status == 400
    assert platform.api("PATCH", path, key=key, body={"headers": {"Cookie": API_KEY}}).status == 400
    assert platform.api("POST", "/v1/webhooks", key=key, body=body | {"headers": {"X": 7}}).status == 400
    assert platform.api("POST", f"{path}/rotate-secret", key=key).status == 200
    assert platform.api("POST", f"{path}/test", key=key).json["status"] == "delivered"
    assert platform.api("POST", "/v1/events", key=key, body=rollout_created("r1")).status == 201
    platform.pump()
    assert len(receiver.requests) >= 2
    assert receiver.requests[-1].headers["X-Gateway-Key"] == API_KEY  # they were sent
    # A set that does not open (another endpoint's): the failure is logged, no value with it.
    donor = platform.api("POST", "/v1/webhooks", key=key, body=body | {"url": receiver.url + "/d"}).json
    boto3.client("dynamodb").update_item(
        TableName=os.environ["INTEGRATIONS_TABLE"],
        Key={"pk": {"S": f"T#{TENANT}"}, "sk": {"S": f"EP#{webhook_id}"}},
        UpdateExpression="SET headers = :h",
        ExpressionAttributeValues={":h": endpoint_item(TENANT, donor["id"])["headers"]},
    )
    assert platform.api("POST", f"{path}/test", key=key).json["status"] == "failed"
    assert any("could not unseal the custom headers" in line for line in handler.lines)
    captured = capsys.readouterr()
    everything = "\n".join([*handler.lines, caplog.text, captured.out, captured.err])
    assert len(handler.lines) > 20
    for value in (TOKEN, API_KEY):
        assert value not in everything, [line[:3000] for line in everything.splitlines() if value in line][:3]


# -- PATCH merges -----------------------------------------------------------------------------------
def test_patch_sets_replaces_and_removes_one_header_at_a_time(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL, headers={"X-A": "1", "X-B": "2"})
    webhook_id = created["id"]
    # Replace one (names match case-insensitively; the new spelling is kept), the other untouched.
    patched = _patch(platform, webhook_id, {"x-b": "3"})
    assert patched.status == 200 and patched.json["headers"] == {"X-A": HEADER_MASK, "x-b": HEADER_MASK}
    assert patched.json["updated_at"] > created["updated_at"]
    assert _stored_headers(webhook_id) == {"X-A": "1", "x-b": "3"}
    # Add one and remove one in the same change.
    patched = _patch(platform, webhook_id, {"X-C": "4", "X-A": None})
    assert _stored_headers(webhook_id) == {"x-b": "3", "X-C": "4"}
    # Nothing to change: not a change (removing a header that is not set, an empty object, null).
    for headers in ({"X-Nope": None}, {}, None, {"x-b": "3"}):
        again = _patch(platform, webhook_id, headers)
        assert again.status == 200 and again.json == patched.json, headers
    # Other fields change without touching the headers.
    described = platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{webhook_id}", body={"description": "d"})
    assert described.json["headers"] == patched.json["headers"]
    assert _stored_headers(webhook_id) == {"x-b": "3", "X-C": "4"}
    # Removing every header leaves none stored at all.
    cleared = _patch(platform, webhook_id, {"X-B": None, "x-c": None})
    assert cleared.json["headers"] == {}
    assert {"headers", "header_names"}.isdisjoint(endpoint_item(TENANT, webhook_id))


def test_an_endpoint_without_headers_stores_none(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    assert created["headers"] == {}
    assert {"headers", "header_names"}.isdisjoint(endpoint_item(TENANT, created["id"]))


# -- delivery -------------------------------------------------------------------------------------
def test_headers_arrive_with_every_post_and_the_signature_verifies(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"], headers=HEADERS)
    write_events(platform, [rollout_created("r1"), rollout_created("r2")])
    platform.pump()
    tested = send_test(platform, created["id"])
    assert tested["status"] == "delivered"
    assert _patch(platform, created["id"], {"X-Gateway-Key": None, "X-Route": ROUTE}).status == 200
    write_events(platform, [rollout_created("r3")])
    platform.pump()
    assert len(receiver.requests) == 4
    *before, after = receiver.requests
    for request in before:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["X-Gateway-Key"] == API_KEY
        assert verify(request.body, request.headers["X-Meshanics-Signature"], created["secret"]) > 0
    assert {json.loads(r.body)["type"] for r in before} == {"rollout.created", "test.ping"}
    assert after.headers["X-Route"] == ROUTE and "X-Gateway-Key" not in after.headers
    assert verify(after.body, after.headers["X-Meshanics-Signature"], created["secret"]) > 0
    assert [d["status"] for d in deliveries(platform, created["id"])] == ["delivered"] * 4


def test_headers_arrive_with_replays_of_delivered_and_failed_deliveries(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"], headers=HEADERS)
    webhook_id = created["id"]
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    receiver.behaviours = [Behaviour(status=503)]
    assert send_test(platform, webhook_id)["status"] == "failed"
    receiver.behaviours = []
    # Replays send the endpoint's headers as they are now.
    assert _patch(platform, webhook_id, {"X-Route": ROUTE}).status == 200
    originals = {r.headers["X-Meshanics-Delivery"]: r for r in receiver.requests}
    settled = deliveries(platform, webhook_id)
    assert sorted(d["status"] for d in settled) == ["delivered", "failed"]
    for delivery in settled:
        replayed = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/deliveries/{delivery['id']}/replay")
        assert replayed.status == 202, replayed.json
    platform.pump()
    assert len(receiver.requests) == 4
    for request in receiver.requests[2:]:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["X-Gateway-Key"] == API_KEY
        assert request.headers["X-Route"] == ROUTE
        original = originals[request.headers["X-Meshanics-Delivery"]]  # same idempotency key
        assert request.body == original.body and "X-Route" not in original.headers
        assert verify(request.body, request.headers["X-Meshanics-Signature"], created["secret"]) > 0
    assert sorted(d["status"] for d in deliveries(platform, webhook_id)) == ["delivered", "delivered"]


def test_a_stored_set_can_never_override_the_platforms_headers(platform: Platform, receiver: Receiver) -> None:
    """Even a set written past the API (older rules, a bug) cannot replace or duplicate a platform
    header: every name the platform sends, or refuses, is left out of the request."""
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    webhook_id = created["id"]
    forged = {
        "X-Meshanics-Signature": "t=1,v1=" + "0" * 64,
        "x-meshanics-event": "forged",
        "webhook-signature": "v1,forged",
        "content-type": "text/plain",
        "Content-Length": "1",
        "user-agent": "forged",
        "Transfer-Encoding": "chunked",
        "X-Kept": "yes",
    }
    endpoint = services.endpoint_store().get(TENANT, webhook_id)
    stored = custom_headers.sealed(services.sealer(), endpoint, forged)
    services.endpoint_store().update(endpoint, stored)
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    send_test(platform, webhook_id)
    assert len(receiver.requests) == 2
    for request in receiver.requests:
        lowered = [name.lower() for name in request.headers]
        assert len(lowered) == len(set(lowered)), request.headers  # no header sent twice
        assert request.headers["X-Kept"] == "yes"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("Meshanics-Webhooks/")
        assert int(request.headers["Content-Length"]) == len(request.body)
        assert "Transfer-Encoding" not in request.headers
        assert request.headers["X-Meshanics-Event"] in ("rollout.created", "test.ping")
        assert request.headers["webhook-signature"].startswith("v1,") and "forged" not in request.headers.values()
        assert verify(request.body, request.headers["X-Meshanics-Signature"], created["secret"]) > 0


def test_a_set_that_does_not_open_sends_nothing(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"], headers=HEADERS)
    donor = receiver_webhook(platform, receiver, events=["device.*"], headers={"X-Other": "x"})
    boto3.client("dynamodb").update_item(
        TableName=os.environ["INTEGRATIONS_TABLE"],
        Key={"pk": {"S": f"T#{TENANT}"}, "sk": {"S": f"EP#{created['id']}"}},
        UpdateExpression="SET headers = :h",
        ExpressionAttributeValues={":h": endpoint_item(TENANT, donor["id"])["headers"]},
    )
    tested = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/test")
    assert tested.status == 200 and tested.json["status"] == "failed"
    assert tested.json["error"] == "could not unseal the custom headers; nothing was sent"
    assert receiver.requests == []


def _aws_calls(run: Callable[[], object]) -> dict[str, int]:
    """The AWS requests `run` makes through the core's clients, by operation."""
    counted: dict[str, int] = {}

    def count(event_name: str, **_: Any) -> None:
        operation = event_name.split(".")[-1]
        counted[operation] = counted.get(operation, 0) + 1

    clients = [aws.client(name) for name in ("dynamodb", "kms", "sqs")]
    for client in clients:
        client.meta.events.register("before-call", count)
    try:
        run()
    finally:
        for client in clients:
            client.meta.events.unregister("before-call", count)
    return counted


def test_headers_cost_no_aws_call_of_their_own(platform: Platform, receiver: Receiver, configured: Any) -> None:
    plain = receiver_webhook(platform, receiver, events=["rollout.created"])
    with_headers = receiver_webhook(platform, receiver, events=["rollout.state_changed"], headers=HEADERS)
    assert plain["headers"] == {} and set(with_headers["headers"]) == set(HEADERS)

    def cold_batch(event_type: str) -> dict[str, int]:
        """Five jobs of one endpoint, delivered by a freshly started delivery function."""
        data = {"rollout_id": "r", "state": "paused"} if event_type == "rollout.state_changed" else {"rollout_id": "r"}
        write_events(platform, [{"type": event_type, "subject": f"rollout/{i}", "data": data} for i in range(5)])
        platform.fan_out()
        fresh = configured()  # a cold start: no data key cached
        return _aws_calls(fresh.deliver)

    calls_plain = cold_batch("rollout.created")
    calls_headers = cold_batch("rollout.state_changed")
    assert calls_headers == calls_plain
    assert calls_headers["Decrypt"] == 1  # one data key opens the secret and the headers
    assert calls_headers["BatchGetItem"] == 1 and calls_headers["PutItem"] == 5
    assert "GenerateDataKey" not in calls_headers
    assert len(receiver.requests) == 10
    sent = [r for r in receiver.requests if json.loads(r.body)["type"] == "rollout.state_changed"]
    assert len(sent) == 5 and all(r.headers["X-Gateway-Key"] == API_KEY for r in sent)
    assert all("X-Gateway-Key" not in r.headers for r in receiver.requests if r not in sent)

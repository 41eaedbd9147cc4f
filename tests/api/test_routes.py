"""Every route of the tenant API, success and failure: status codes, exact field names and shapes."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.clock import parse_iso
from meshanics.signing import verify
from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import (
    ADMIN,
    DOCUMENTED,
    EVENTS,
    OTHER,
    PUBLIC_URL,
    READ,
    TENANT,
    assert_error,
    create_webhook,
    deliveries,
    device_enrolled,
    random_delivery_id,
    random_webhook_id,
    receiver_webhook,
    rollout_created,
    send_test,
    write_events,
)
from tests.conftest import ROOT
from tests.support.harness import Platform

WEBHOOK_FIELDS = {
    "id",
    "url",
    "events",
    "description",
    "allow_private_network",
    "enabled",
    "disabled_reason",
    "created_at",
    "updated_at",
    "secret_rotation_overlap_until",
    "headers",
}
DELIVERY_FIELDS = {
    "id",
    "webhook_id",
    "event_type",
    "sequence",
    "idempotency_key",
    "status",
    "attempt_count",
    "last_status_code",
    "last_error",
    "created_at",
    "updated_at",
    "delivered_at",
    "next_attempt_at",
    "replays",
}
ATTEMPT_FIELDS = {"attempt", "at", "outcome", "status_code", "duration_ms", "error"}
ENVELOPE_FIELDS = {"specversion", "type", "occurred_at", "subject", "actor", "sequence", "idempotency_key", "data"}
TEST_RESULT_FIELDS = {"delivery_id", "status", "status_code", "duration_ms", "error"}

QUIET = "vulnerability.resolved"  # a filter for endpoints that should get only test deliveries


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def without_health(shown: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/webhooks/{id} adds the endpoint's health to what the other routes show."""
    return {k: v for k, v in shown.items() if k != "health"}


def _received_events(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


# -- POST /v1/webhooks ---------------------------------------------------------------------------
def test_create_returns_the_endpoint_and_its_secret_once(platform: Platform) -> None:
    response = platform.api_as(
        TENANT,
        [ADMIN],
        "POST",
        "/v1/webhooks",
        body={"url": PUBLIC_URL, "events": ["rollout.*", "device.enrolled", "rollout.*"], "description": "ops"},
    )
    assert response.status == 201, response.json
    created = response.json
    assert set(created) == WEBHOOK_FIELDS | {"secret"}
    assert created["id"].startswith("ep_") and len(created["id"]) == 27
    assert created["url"] == PUBLIC_URL
    assert created["events"] == ["device.enrolled", "rollout.*"]  # de-duplicated, sorted
    assert created["description"] == "ops"
    assert created["allow_private_network"] is False
    assert created["enabled"] is True
    assert created["disabled_reason"] is None
    assert created["created_at"] == created["updated_at"]
    assert abs(parse_iso(created["created_at"]) - time.time()) < 60
    assert created["secret_rotation_overlap_until"] is None
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 32
    assert response.headers.get("Content-Type", "").startswith("application/json")


def test_create_defaults_and_a_disabled_endpoint(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL, enabled=False)
    assert created["events"] == []  # empty means every event
    assert created["description"] == ""
    assert created["enabled"] is False
    assert created["disabled_reason"] == "api"


def test_create_with_the_catch_all_filter_keeps_only_it(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL, events=["rollout.created", "*"])
    assert created["events"] == ["*"]


def test_every_create_generates_a_different_secret(platform: Platform) -> None:
    secrets_ = {create_webhook(platform, url=PUBLIC_URL)["secret"] for _ in range(3)}
    assert len(secrets_) == 3


@pytest.mark.parametrize(
    ("url", "allow_private_network", "rule"),
    [
        ("http://hooks.example.com/x", False, "egress.scheme"),
        ("ftp://hooks.example.com/x", False, "egress.scheme"),
        ("hooks.example.com/x", False, "egress.scheme"),
        ("https://10.1.2.3/x", False, "egress.private"),
        ("https://192.168.0.7/x", False, "egress.private"),
        ("https://internal.example.com/x", False, "egress.private"),
        ("https://mixed.example.com/x", False, "egress.private"),  # one refused address refuses the host
        ("https://100.64.1.1/x", False, "egress.cgnat"),
        ("https://127.0.0.1/x", False, "egress.loopback"),
        ("https://loopback.example.com/x", False, "egress.loopback"),
        ("https://[::1]/x", False, "egress.loopback"),
        ("http://169.254.169.254/latest/meta-data/", True, "egress.metadata"),
        ("https://metadata.example.com/x", True, "egress.metadata"),
        ("https://[::ffff:169.254.169.254]/x", True, "egress.metadata"),
        ("http://[fd00:ec2::254]/x", True, "egress.metadata"),
        ("https://169.254.10.10/x", True, "egress.link_local"),
        ("https://0.0.0.0/x", True, "egress.unspecified"),
        ("https://user:secret@hooks.example.com/x", False, "egress.credentials"),
        ("https://hooks.example.com:0/x", False, "egress.port"),
        ("https://nowhere.example.net/x", False, "egress.unresolvable"),
        ("https:///x", False, "egress.host"),
    ],
)
def test_create_refuses_urls_with_a_400_naming_the_egress_rule(
    platform: Platform, url: str, allow_private_network: bool, rule: str
) -> None:
    response = platform.api_as(
        TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": url, "allow_private_network": allow_private_network}
    )
    assert_error(response, 400, rule, "url")
    listed = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks")
    assert listed.json["items"] == []


def test_plain_http_error_says_to_use_https(platform: Platform) -> None:
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": "http://hooks.example.com/"})
    error = assert_error(response, 400, "egress.scheme", "url")
    assert "https" in error["message"]


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/x", "http://127.0.0.1:8080/x", "https://internal.example.com/x", "http://[::1]/x"]
)
def test_private_receivers_are_allowed_with_the_opt_in(platform: Platform, url: str) -> None:
    created = create_webhook(platform, url=url, allow_private_network=True)
    assert created["allow_private_network"] is True


@pytest.mark.parametrize(
    ("events", "hint"),
    [
        (["nope"], "valid filters"),
        (["rollout*"], "wildcards are allowed only at the end"),
        (["*.created"], "wildcards are allowed only at the end"),
        (["rollout.*.x"], "wildcards are allowed only at the end"),
        (["test.ping"], "valid filters"),  # a directed type, not subscribable
        ([""], "non-empty"),
    ],
)
def test_create_checks_filters_against_the_catalog(platform: Platform, events: list[str], hint: str) -> None:
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": PUBLIC_URL, "events": events})
    error = assert_error(response, 400, field="events")
    assert hint in error["message"]
    if hint == "valid filters":
        assert error["code"] == "invalid_event_filter"
        assert "rollout.created" in error["message"] and "rollout.*" in error["message"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "url", "field required"),
        ({"url": ""}, "url", None),
        ({"url": "https://hooks.example.com/" + "a" * 2048}, "url", None),
        ({"url": 5}, "url", None),
        ({"url": PUBLIC_URL, "events": "rollout.*"}, "events", None),
        ({"url": PUBLIC_URL, "events": [1]}, "events.0", None),
        ({"url": PUBLIC_URL, "description": ["x"]}, "description", None),
        ({"url": PUBLIC_URL, "allow_private_network": "maybe"}, "allow_private_network", None),
        ({"url": PUBLIC_URL, "enabled": {}}, "enabled", None),
        ({"url": PUBLIC_URL, "colour": "red"}, "colour", "unknown field"),
        ({"url": PUBLIC_URL, "secret": "whsec_mine"}, "secret", "unknown field"),
        ({"url": PUBLIC_URL, "id": "ep_000000000000000000000000"}, "id", "unknown field"),
    ],
)
def test_create_validation_errors_name_the_field(
    platform: Platform, body: dict[str, Any], field: str, message: str | None
) -> None:
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=body)
    error = assert_error(response, 400, "invalid_request", field)
    if message:
        assert error["message"] == f"{field}: {message}"


@pytest.mark.parametrize("raw", [b"{not json", b'{"url": "https://x"', b"\xff\xfe", b'{"url": "a",}'])
def test_malformed_json_is_a_400(platform: Platform, raw: bytes) -> None:
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", raw_body=raw)
    assert_error(response, 400)
    assert response.json["error"]["code"] in ("invalid_json", "invalid_request")


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null", b""])
def test_a_body_that_is_not_an_object_is_a_400(platform: Platform, raw: bytes) -> None:
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", raw_body=raw)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "image/png",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ],
)
def test_a_body_that_is_not_json_is_a_415(platform: Platform, content_type: str) -> None:
    body = b'--xyz\r\nContent-Disposition: form-data; name="url"\r\n\r\nhttps://hooks.example.com/\r\n--xyz--\r\n'
    for raw in (b"url=https%3A%2F%2Fhooks.example.com%2F", body, b"garbage"):
        response = platform.api_as(
            TENANT, [ADMIN], "POST", "/v1/webhooks", raw_body=raw, headers={"Content-Type": content_type}
        )
        assert_error(response, 415, "unsupported_media_type")
    assert platform.api_as(TENANT, [READ], "GET", "/v1/webhooks").json["items"] == []


@pytest.mark.parametrize("content_type", ["", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"])
def test_json_with_or_without_a_content_type(platform: Platform, content_type: str) -> None:
    response = platform.api_as(
        TENANT,
        [ADMIN],
        "POST",
        "/v1/webhooks",
        raw_body=json.dumps({"url": PUBLIC_URL}).encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status == 201, response.json


def test_json_nested_too_deeply_is_a_400(platform: Platform) -> None:
    raw = b'{"url": "https://hooks.example.com/", "events": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert_error(platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", raw_body=raw), 400, "invalid_json")


def test_oversized_body_is_a_413(platform: Platform) -> None:
    body = {"url": PUBLIC_URL, "description": "x" * 300_000}
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=body)
    assert_error(response, 413, "request_too_large")
    # The size is refused before the body is parsed or validated.
    garbage = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", raw_body=b"{" * 300_000)
    assert_error(garbage, 413, "request_too_large")
    events = {"events": [rollout_created(f"r{i}") | {"subject": "s" * 256} for i in range(100)] * 20}
    assert_error(platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=events), 413, "request_too_large")


# -- limits (template parameters) -----------------------------------------------------------------
@pytest.fixture
def limited(configured: Any) -> Platform:
    """The platform deployed with small limits (template parameters, read when the function starts)."""
    return configured(  # type: ignore[no-any-return]
        MAX_ENDPOINTS_PER_TENANT="2",
        MAX_FILTERS_PER_ENDPOINT="2",
        MAX_DESCRIPTION_LENGTH="10",
        MAX_REQUEST_BYTES="2048",
    )


def test_endpoints_per_tenant_limit_is_a_422(limited: Platform) -> None:
    first = create_webhook(limited, url=PUBLIC_URL)
    create_webhook(limited, url=PUBLIC_URL)
    response = limited.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": PUBLIC_URL})
    error = assert_error(response, 422, "limit_exceeded")
    assert "2" in error["message"]
    # The limit is per tenant, and a removed endpoint frees its place.
    create_webhook(limited, OTHER, url=PUBLIC_URL)
    assert limited.api_as(TENANT, [ADMIN], "DELETE", f"/v1/webhooks/{first['id']}").status == 204
    create_webhook(limited, url=PUBLIC_URL)
    assert len(limited.api_as(TENANT, [READ], "GET", "/v1/webhooks").json["items"]) == 2


def test_filter_count_limit(limited: Platform) -> None:
    body = {"url": PUBLIC_URL, "events": ["rollout.created", "rollout.failed", "device.*"]}
    error = assert_error(limited.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=body), 400, field="events")
    assert "at most 2" in error["message"]
    created = create_webhook(limited, url=PUBLIC_URL, events=["rollout.created", "device.*"])
    patch = {"events": ["rollout.created", "rollout.failed", "device.*"]}
    response = limited.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{created['id']}", body=patch)
    assert_error(response, 400, field="events")


def test_description_length_limit(limited: Platform) -> None:
    body = {"url": PUBLIC_URL, "description": "x" * 11}
    error = assert_error(limited.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=body), 400, field="description")
    assert "10" in error["message"]
    created = create_webhook(limited, url=PUBLIC_URL, description="x" * 10)
    response = limited.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{created['id']}", body={"description": "y" * 11})
    assert_error(response, 400, field="description")


def test_request_size_limit(limited: Platform) -> None:
    small = {"url": PUBLIC_URL, "events": ["rollout.created"], "description": "ok"}
    assert limited.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=small).status == 201
    big = {"url": PUBLIC_URL + "?" + "q" * 2100}
    error = assert_error(limited.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=big), 413, "request_too_large")
    assert "2048" in error["message"]


# -- GET /v1/webhooks ------------------------------------------------------------------------------
def test_list_is_items_and_next_cursor(platform: Platform) -> None:
    empty = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks")
    assert empty.status == 200
    assert empty.json == {"items": [], "next_cursor": None}
    created = create_webhook(platform, url=PUBLIC_URL, events=["rollout.*"])
    listed = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks").json
    assert set(listed) == {"items", "next_cursor"}
    (item,) = listed["items"]
    assert set(item) == WEBHOOK_FIELDS
    assert item == {k: v for k, v in created.items() if k != "secret"}


def test_list_pages_with_cursors(platform: Platform) -> None:
    ids = {create_webhook(platform, url=PUBLIC_URL)["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query=query)
        assert page.status == 200, page.json
        assert len(page.json["items"]) <= 2
        seen += [item["id"] for item in page.json["items"]]
        pages += 1
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == ids
    default = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks").json
    assert len(default["items"]) == 5 and default["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5"])
def test_list_limit_is_bounded(platform: Platform, limit: str) -> None:
    response = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query={"limit": limit})
    assert_error(response, 400, "invalid_request", "limit")


def _encode(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_list_refuses_foreign_and_tampered_cursors(platform: Platform) -> None:
    for tenant in (TENANT, OTHER):
        for _ in range(3):
            create_webhook(platform, tenant, url=PUBLIC_URL)
    mine = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query={"limit": "1"}).json["next_cursor"]
    theirs = platform.api_as(OTHER, [READ], "GET", "/v1/webhooks", query={"limit": "1"}).json["next_cursor"]
    assert mine and theirs
    decoded = json.loads(base64.urlsafe_b64decode(mine + "=" * (-len(mine) % 4)))
    bad = [
        theirs,  # another tenant's cursor
        "not a cursor!",
        mine[:-3],
        _encode({"pk": f"T#{OTHER}", "sk": decoded["sk"]}),
        _encode({"pk": decoded["pk"], "sk": 5}),
        _encode({"pk": decoded["pk"]}),
        _encode({"pk": decoded["pk"], "sk": "KEY#0123456789abcdef"}),
        _encode({"pk": decoded["pk"], "sk": decoded["sk"], "extra": "x"}),
        _encode(["pk", "sk"]),
        "x" * 2049,
    ]
    for cursor in bad:
        response = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query={"cursor": cursor})
        assert_error(response, 400, field="cursor")
        if len(cursor) <= 2048:
            assert response.json["error"]["code"] == "invalid_cursor", cursor
    ok = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query={"cursor": mine})
    assert ok.status == 200 and len(ok.json["items"]) == 2


# -- GET/PATCH/DELETE /v1/webhooks/{id} -------------------------------------------------------------
def test_get_one(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL, events=["device.*"], description="devices")
    response = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}")
    assert response.status == 200
    shown = response.json
    assert shown.pop("health")["attempts_24h"] == 0  # see tests/integration/test_health.py
    assert shown == {k: v for k, v in created.items() if k != "secret"}


@pytest.mark.parametrize("webhook_id", ["ep_" + "5" * 24, "nope", "ep_" + "0" * 23, "x" * 3000, "EP_ABC"])
def test_get_unknown_is_404(platform: Platform, webhook_id: str) -> None:
    response = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{webhook_id}")
    error = assert_error(response, 404, "not_found")
    assert len(error["message"]) < 200


def test_patch_changes_fields_and_keeps_the_rest(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"], description="before")
    path = f"/v1/webhooks/{created['id']}"
    time.sleep(0.002)
    response = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"description": "after"})
    assert response.status == 200, response.json
    patched = response.json
    assert set(patched) == WEBHOOK_FIELDS | {"recovery"} and patched["recovery"] is None  # none asked for
    assert patched["description"] == "after"
    assert patched["updated_at"] > created["updated_at"]
    assert patched["created_at"] == created["created_at"]
    assert {k: patched[k] for k in ("url", "events", "enabled")} == {
        k: created[k] for k in ("url", "events", "enabled")
    }

    patched = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"events": ["device.enrolled", "rollout.failed"]})
    assert patched.json["events"] == ["device.enrolled", "rollout.failed"]
    patched = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"enabled": False})
    assert patched.json["enabled"] is False and patched.json["disabled_reason"] == "api"
    patched = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"enabled": True})
    assert patched.json["enabled"] is True and patched.json["disabled_reason"] is None
    patched = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"url": receiver.url + "/v2"})
    assert patched.json["url"] == receiver.url + "/v2"
    shown = without_health(platform.api_as(TENANT, [READ], "GET", path).json)
    assert shown == {k: v for k, v in patched.json.items() if k != "recovery"}


def test_patch_with_nothing_to_change_changes_nothing(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL, description="same")
    path = f"/v1/webhooks/{created['id']}"
    for body in ({}, {"description": "same"}, {"description": None, "enabled": None, "url": None, "events": None}):
        response = platform.api_as(TENANT, [ADMIN], "PATCH", path, body=body)
        assert response.status == 200, (body, response.json)
        assert response.json == {k: v for k, v in created.items() if k != "secret"} | {"recovery": None}


def test_patch_rechecks_egress_rules(platform: Platform, receiver: Receiver) -> None:
    public = create_webhook(platform, url=PUBLIC_URL)
    path = f"/v1/webhooks/{public['id']}"
    assert_error(
        platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"url": "https://10.9.9.9/"}), 400, "egress.private", "url"
    )
    assert_error(
        platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"url": "http://hooks.example.com/"}),
        400,
        "egress.scheme",
        "url",
    )
    response = platform.api_as(
        TENANT, [ADMIN], "PATCH", path, body={"url": "http://169.254.169.254/", "allow_private_network": True}
    )
    assert_error(response, 400, "egress.metadata", "url")
    # Taking the opt-in away from a private receiver is refused too: by address, or for plain http.
    local = create_webhook(platform, url="https://127.0.0.1:9443/x", allow_private_network=True)
    response = platform.api_as(
        TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{local['id']}", body={"allow_private_network": False}
    )
    assert_error(response, 400, "egress.loopback", "url")
    plain = receiver_webhook(platform, receiver)
    response = platform.api_as(
        TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{plain['id']}", body={"allow_private_network": False}
    )
    assert_error(response, 400, "egress.scheme", "url")
    assert platform.api_as(TENANT, [READ], "GET", path).json["url"] == PUBLIC_URL
    assert platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{local['id']}").json["allow_private_network"] is True
    assert platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{plain['id']}").json["allow_private_network"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["nope.*"]}, "events"),
        ({"url": ""}, "url"),
        ({"enabled": "sometimes"}, "enabled"),
        ({"tenant": OTHER}, "tenant"),
        ({"secret": "whsec_x"}, "secret"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ],
)
def test_patch_validation_errors(platform: Platform, body: dict[str, Any], field: str) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    response = platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{created['id']}", body=body)
    assert_error(response, 400, field=field)


def test_patch_unknown_is_404(platform: Platform) -> None:
    response = platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{random_webhook_id()}", body={"enabled": False})
    assert_error(response, 404, "not_found")


def test_delete(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    path = f"/v1/webhooks/{created['id']}"
    response = platform.api_as(TENANT, [ADMIN], "DELETE", path)
    assert response.status == 204
    assert response.body == b""
    assert_error(platform.api_as(TENANT, [READ], "GET", path), 404, "not_found")
    assert_error(platform.api_as(TENANT, [ADMIN], "DELETE", path), 404, "not_found")
    assert_error(platform.api_as(TENANT, [READ], "GET", f"{path}/deliveries"), 404, "not_found")
    assert platform.api_as(TENANT, [READ], "GET", "/v1/webhooks").json["items"] == []


# -- POST /v1/webhooks/{id}/rotate-secret ----------------------------------------------------------
def test_rotate_returns_a_new_secret_and_the_overlap(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    path = f"/v1/webhooks/{created['id']}/rotate-secret"
    response = platform.api_as(TENANT, [ADMIN], "POST", path)
    assert response.status == 200, response.json
    rotated = response.json
    assert set(rotated) == WEBHOOK_FIELDS | {"secret"}
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert abs(parse_iso(rotated["secret_rotation_overlap_until"]) - (time.time() + 86_400)) < 60  # default 24 h
    shown = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}").json
    assert shown["secret_rotation_overlap_until"] == rotated["secret_rotation_overlap_until"]

    short = platform.api_as(TENANT, [ADMIN], "POST", path, body={"overlap_seconds": 600}).json
    assert abs(parse_iso(short["secret_rotation_overlap_until"]) - (time.time() + 600)) < 60
    none = platform.api_as(TENANT, [ADMIN], "POST", path, body={"overlap_seconds": 0}).json
    assert none["secret_rotation_overlap_until"] is None
    assert len({created["secret"], rotated["secret"], short["secret"], none["secret"]}) == 4


@pytest.mark.parametrize(
    "body", [{"overlap_seconds": -1}, {"overlap_seconds": 604_801}, {"overlap_seconds": "soon"}, {"overlap": 5}, [1]]
)
def test_rotate_validation_errors(platform: Platform, body: Any) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/rotate-secret", body=body)
    assert_error(response, 400, "invalid_request")
    again = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}").json
    assert again["updated_at"] == created["updated_at"]


def test_rotate_unknown_is_404(platform: Platform) -> None:
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{random_webhook_id()}/rotate-secret")
    assert_error(response, 404, "not_found")


# -- POST /v1/webhooks/{id}/test -------------------------------------------------------------------
def test_test_delivery_succeeds_signed_and_is_recorded(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.created"])
    response = platform.api_as(
        TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/test", body={"message": "hello from the tests"}
    )
    assert response.status == 200, response.json
    result = response.json
    assert set(result) == TEST_RESULT_FIELDS
    assert result["status"] == "delivered"
    assert result["status_code"] == 200
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] >= 0
    assert result["error"] is None
    (request,) = receiver.requests  # synchronous: already received, no pump needed
    verify(request.body, request.headers["X-Meshanics-Signature"], created["secret"])
    assert request.headers["X-Meshanics-Event"] == "test.ping"
    envelope = json.loads(request.body)
    assert envelope["type"] == "test.ping"
    assert envelope["data"] == {"webhook_id": created["id"], "message": "hello from the tests"}
    (recorded,) = deliveries(platform, created["id"])
    assert recorded["id"] == result["delivery_id"]
    assert recorded["event_type"] == "test.ping"
    assert recorded["status"] == "delivered" and recorded["attempt_count"] == 1
    assert recorded["last_status_code"] == 200
    assert request.headers["X-Meshanics-Delivery"] == recorded["idempotency_key"]


def test_test_delivery_default_message(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver)
    send_test(platform, created["id"])
    assert json.loads(receiver.requests[0].body)["data"]["message"]


def test_test_delivery_failure_is_reported_with_200(platform: Platform, receiver: Receiver) -> None:
    receiver.behaviours = [Behaviour(status=500, body=b"boom")]
    created = receiver_webhook(platform, receiver)
    result = send_test(platform, created["id"])
    assert result["status"] == "failed"
    assert result["status_code"] == 500
    assert "500" in result["error"]
    (recorded,) = deliveries(platform, created["id"], event_type="test.ping")
    assert recorded["id"] == result["delivery_id"]
    assert recorded["status"] == "failed" and recorded["last_status_code"] == 500
    assert recorded["last_error"] == result["error"]


def test_test_delivery_to_a_closed_port(platform: Platform) -> None:
    created = create_webhook(platform, url=_closed_port_url(), allow_private_network=True)
    result = send_test(platform, created["id"])
    assert result["status"] == "failed"
    assert result["status_code"] is None
    assert result["error"]


def test_egress_rules_are_checked_again_on_every_connection(
    platform: Platform, fake_dns: dict[str, list[str]], receiver: Receiver
) -> None:
    created = create_webhook(platform, url="https://hooks.example.com/x")
    fake_dns["hooks.example.com"] = ["127.0.0.1"]  # the name is rebound after it was checked
    result = send_test(platform, created["id"])
    assert result["status"] == "failed"
    assert result["status_code"] is None
    assert "egress" in result["error"] and "loopback" in result["error"]
    assert receiver.requests == []


@pytest.mark.parametrize("body", [{"message": "m" * 257}, {"msg": "x"}, {"message": 5}])
def test_test_delivery_validation_errors(platform: Platform, receiver: Receiver, body: dict[str, Any]) -> None:
    created = receiver_webhook(platform, receiver)
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/test", body=body)
    assert_error(response, 400, "invalid_request")
    assert receiver.requests == []


def test_test_delivery_unknown_is_404(platform: Platform) -> None:
    assert_error(platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{random_webhook_id()}/test"), 404, "not_found")


# -- GET /v1/webhooks/{id}/deliveries and GET /v1/deliveries/{id} ------------------------------------
@pytest.fixture
def history(platform: Platform, receiver: Receiver) -> dict[str, Any]:
    """An endpoint with delivered, failed and pending deliveries of several types."""
    created = receiver_webhook(platform, receiver, events=["rollout.*", "device.*"])
    write_events(platform, [rollout_created("r1"), rollout_created("r2"), device_enrolled("d1")])
    platform.pump()
    assert len(receiver.requests) == 3
    receiver.behaviours = [Behaviour(status=503)]
    failed = send_test(platform, created["id"])
    receiver.behaviours = []
    state = {"type": "rollout.state_changed", "subject": "rollout/r1", "data": {"rollout_id": "r1", "state": "paused"}}
    write_events(platform, [state])
    platform.fan_out()  # recorded and queued, not yet attempted
    return {"webhook": created, "failed": failed["delivery_id"]}


FILTERED = [
    ({}, ["rollout.state_changed", "test.ping", "device.enrolled", "rollout.created", "rollout.created"]),
    ({"status": "delivered"}, ["device.enrolled", "rollout.created", "rollout.created"]),
    ({"status": "failed"}, ["test.ping"]),
    ({"status": "pending"}, ["rollout.state_changed"]),
    ({"event_type": "rollout.created"}, ["rollout.created", "rollout.created"]),
    ({"event_type": "rollout.*"}, ["rollout.state_changed", "rollout.created", "rollout.created"]),
    ({"event_type": "device.enrolled"}, ["device.enrolled"]),
    ({"event_type": "test.ping"}, ["test.ping"]),
    ({"event_type": "artifact.*"}, []),
    (
        {"event_type": "*"},
        ["rollout.state_changed", "test.ping", "device.enrolled", "rollout.created", "rollout.created"],
    ),
    ({"status": "delivered", "event_type": "rollout.*"}, ["rollout.created", "rollout.created"]),
    ({"status": "pending", "event_type": "device.*"}, []),
]


def test_deliveries_newest_first_with_filters(platform: Platform, history: dict[str, Any]) -> None:
    path = f"/v1/webhooks/{history['webhook']['id']}/deliveries"
    for query, expected in FILTERED:
        response = platform.api_as(TENANT, [READ], "GET", path, query=query or None)
        assert response.status == 200, (query, response.json)
        assert set(response.json) == {"items", "next_cursor"}
        assert response.json["next_cursor"] is None
        items = response.json["items"]
        # Producers reserve sequences in blocks, so the test delivery's place among the others is not fixed:
        # the order is checked on the sequences, the contents on the types.
        assert sorted(d["event_type"] for d in items) == sorted(expected), query
        sequences = [d["sequence"] for d in items]
        assert sequences == sorted(sequences, reverse=True), query
        for item in items:
            assert set(item) == DELIVERY_FIELDS
            assert item["webhook_id"] == history["webhook"]["id"]
            assert "status" not in query or item["status"] == query["status"]


def test_deliveries_shapes_by_status(platform: Platform, history: dict[str, Any]) -> None:
    by_type = {d["event_type"]: d for d in deliveries(platform, history["webhook"]["id"])}
    delivered = by_type["device.enrolled"]
    assert delivered["status"] == "delivered"
    assert delivered["attempt_count"] == 1 and delivered["last_status_code"] == 200 and delivered["last_error"] is None
    assert delivered["delivered_at"] and delivered["next_attempt_at"] is None and delivered["replays"] == 0
    failed = by_type["test.ping"]
    assert failed["id"] == history["failed"]
    assert failed["status"] == "failed" and failed["last_status_code"] == 503 and failed["delivered_at"] is None
    pending = by_type["rollout.state_changed"]
    assert pending["status"] == "pending" and pending["attempt_count"] == 0 and pending["last_status_code"] is None
    assert delivered["idempotency_key"].startswith(f"{delivered['sequence']}-")


def test_deliveries_query_errors(platform: Platform, history: dict[str, Any]) -> None:
    path = f"/v1/webhooks/{history['webhook']['id']}/deliveries"
    for query, field in [
        ({"status": "lost"}, "status"),
        ({"event_type": "nope"}, "event_type"),
        ({"event_type": "rollout*"}, "event_type"),
        ({"event_type": "x" * 129}, "event_type"),
        ({"limit": "0"}, "limit"),
        ({"limit": "500"}, "limit"),
        ({"cursor": "!!"}, "cursor"),
    ]:
        assert_error(platform.api_as(TENANT, [READ], "GET", path, query=query), 400, field=field)


def test_deliveries_pagination(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    write_events(platform, [rollout_created(f"r{i}") for i in range(5)])
    platform.pump()
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "2", "status": "delivered"} | ({"cursor": cursor} if cursor else {})
        page = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}/deliveries", query=query).json
        seen += [d["sequence"] for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    # A cursor belongs to its listing: not to another endpoint's history nor to the endpoint list.
    other = receiver_webhook(platform, receiver, events=["device.*"])
    first = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}/deliveries", query={"limit": "2"})
    cursor = first.json["next_cursor"]
    response = platform.api_as(
        TENANT, [READ], "GET", f"/v1/webhooks/{other['id']}/deliveries", query={"cursor": cursor}
    )
    assert_error(response, 400, "invalid_cursor", "cursor")
    assert_error(
        platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query={"cursor": cursor}), 400, "invalid_cursor"
    )


def test_deliveries_of_unknown_endpoint_is_404(platform: Platform) -> None:
    assert_error(
        platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{random_webhook_id()}/deliveries"), 404, "not_found"
    )


def test_get_delivery_has_attempts_and_envelope(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    (written,) = write_events(platform, [rollout_created("r7")])
    platform.pump()
    (listed,) = deliveries(platform, created["id"])
    response = platform.api_as(TENANT, [READ], "GET", f"/v1/deliveries/{listed['id']}")
    assert response.status == 200, response.json
    detail = response.json
    assert set(detail) == DELIVERY_FIELDS | {"attempts", "envelope"}
    assert {k: detail[k] for k in DELIVERY_FIELDS} == listed
    (attempt,) = detail["attempts"]
    assert set(attempt) == ATTEMPT_FIELDS
    assert attempt["attempt"] == 1 and attempt["outcome"] == "delivered" and attempt["status_code"] == 200
    assert attempt["error"] is None and isinstance(attempt["duration_ms"], int)
    envelope = detail["envelope"]
    assert set(envelope) == ENVELOPE_FIELDS
    assert envelope["type"] == "rollout.created"
    assert envelope["sequence"] == written["sequence"] == detail["sequence"]
    assert envelope["idempotency_key"] == written["idempotency_key"] == detail["idempotency_key"]
    assert envelope["data"] == {"rollout_id": "r7"}
    assert json.loads(receiver.requests[0].body) == envelope  # the history shows what was sent


@pytest.mark.parametrize(
    "delivery_id", ["dlv_" + "5" * 24 + "_7", "dlv_nope", "nope", "dlv_" + "a" * 24 + "_0", "d" * 3000]
)
def test_get_unknown_delivery_is_404(platform: Platform, delivery_id: str) -> None:
    assert_error(platform.api_as(TENANT, [READ], "GET", f"/v1/deliveries/{delivery_id}"), 404, "not_found")


# -- replays ---------------------------------------------------------------------------------------
def test_replay_a_failed_delivery(platform: Platform, receiver: Receiver) -> None:
    receiver.behaviours = [Behaviour(status=500)]
    created = receiver_webhook(platform, receiver, events=[QUIET])
    failed = send_test(platform, created["id"])
    receiver.behaviours = []
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/deliveries/{failed['delivery_id']}/replay")
    assert response.status == 202, response.json
    replayed = response.json
    assert set(replayed) == DELIVERY_FIELDS | {"attempts", "envelope"}
    assert replayed["status"] == "pending" and replayed["replays"] == 1
    platform.pump()
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.body == second.body  # the same bytes
    assert first.headers["X-Meshanics-Delivery"] == second.headers["X-Meshanics-Delivery"]
    verify(second.body, second.headers["X-Meshanics-Signature"], created["secret"])
    detail = platform.api_as(TENANT, [READ], "GET", f"/v1/deliveries/{failed['delivery_id']}").json
    assert detail["status"] == "delivered"
    assert [a["outcome"] for a in detail["attempts"]] == ["failed", "delivered"]
    assert [a["attempt"] for a in detail["attempts"]] == [1, 2]
    # Delivered now: a replay sends the same bytes once more, as attempt 3 of the same delivery.
    again = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/deliveries/{failed['delivery_id']}/replay")
    assert again.status == 202 and again.json["replays"] == 2
    platform.pump()
    third = receiver.requests[2]
    assert third.body == first.body
    assert third.headers["X-Meshanics-Delivery"] == first.headers["X-Meshanics-Delivery"]
    detail = platform.api_as(TENANT, [READ], "GET", f"/v1/deliveries/{failed['delivery_id']}").json
    assert [(a["attempt"], a["outcome"]) for a in detail["attempts"]] == [
        (1, "failed"),
        (2, "delivered"),
        (3, "delivered"),
    ]
    assert detail["status"] == "delivered" and detail["replays"] == 2


def test_replay_of_a_pending_delivery_is_409(platform: Platform, history: dict[str, Any]) -> None:
    pending = [d for d in deliveries(platform, history["webhook"]["id"]) if d["status"] == "pending"]
    assert pending
    for item in pending:
        response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/deliveries/{item['id']}/replay")
        error = assert_error(response, 409, "conflict")
        assert "pending" in error["message"]


def test_replay_of_a_delivered_delivery_sends_it_again(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    (delivered,) = deliveries(platform, created["id"])
    assert delivered["status"] == "delivered"
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/deliveries/{delivered['id']}/replay")
    assert response.status == 202 and response.json["status"] == "pending"
    platform.pump()
    first, second = receiver.requests
    assert first.body == second.body
    assert json.loads(second.body)["idempotency_key"] == delivered["idempotency_key"]
    assert json.loads(second.body)["sequence"] == delivered["sequence"]
    detail = platform.api_as(TENANT, [READ], "GET", f"/v1/deliveries/{delivered['id']}").json
    assert [a["attempt"] for a in detail["attempts"]] == [1, 2] and detail["status"] == "delivered"


def test_replay_unknown_delivery_is_404(platform: Platform) -> None:
    assert_error(
        platform.api_as(TENANT, [ADMIN], "POST", f"/v1/deliveries/{random_delivery_id()}/replay"), 404, "not_found"
    )


def test_replay_an_endpoints_failed_deliveries(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=[QUIET])
    send_test(platform, created["id"])  # delivered
    receiver.behaviours = [Behaviour(status=500)]
    failed = {send_test(platform, created["id"])["delivery_id"] for _ in range(3)}
    receiver.behaviours = []
    path = f"/v1/webhooks/{created['id']}/replay"

    future = platform.api_as(TENANT, [ADMIN], "POST", path, body={"since": "2999-01-01T00:00:00Z"})
    assert future.status == 202 and future.json == {"items": [], "next_cursor": None}
    one = platform.api_as(TENANT, [ADMIN], "POST", path, body={"limit": 1, "since": "2000-01-01T00:00:00+02:00"})
    assert one.status == 202 and len(one.json["items"]) == 1
    response = platform.api_as(TENANT, [ADMIN], "POST", path)
    assert response.status == 202, response.json
    assert set(response.json) == {"items", "next_cursor"} and response.json["next_cursor"] is None
    assert {d["id"] for d in response.json["items"]} | {one.json["items"][0]["id"]} == failed
    for item in response.json["items"]:
        assert set(item) == DELIVERY_FIELDS and item["status"] == "pending"
    platform.pump()
    assert {d["status"] for d in deliveries(platform, created["id"])} == {"delivered"}
    assert len(receiver.requests) == 1 + 3 + 3
    nothing = platform.api_as(TENANT, [ADMIN], "POST", path, body={})
    assert nothing.status == 202 and nothing.json["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no time zone
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # not expressible in UTC
        ({"status": "failed"}, "status"),
    ],
)
def test_replay_endpoint_validation_errors(platform: Platform, body: dict[str, Any], field: str) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/replay", body=body)
    assert_error(response, 400, "invalid_request", field)


def test_replay_unknown_endpoint_is_404(platform: Platform) -> None:
    assert_error(
        platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{random_webhook_id()}/replay"), 404, "not_found"
    )


# -- GET /v1/event-types -------------------------------------------------------------------------
def test_event_types_catalog(platform: Platform) -> None:
    response = platform.api_as(TENANT, [READ], "GET", "/v1/event-types")
    assert response.status == 200
    catalog = response.json
    assert set(catalog) == {"items", "families", "next_cursor"}
    assert catalog["next_cursor"] is None
    types = {t["type"]: t for t in catalog["items"]}
    for item in catalog["items"]:
        assert set(item) == {"type", "family", "description", "data", "platform_only", "operational"}
        assert item["platform_only"] == (item["family"] in {"webhooks", "registries", "test"})
        assert item["operational"] == (
            item["type"] in {"webhook.disabled", "webhook.enabled", "webhook.delivery_exhausted"}
        )
        assert item["description"]
        for field in item["data"]:
            assert set(field) == {"name", "type", "required", "max_length", "description"}
            assert field["type"] in ("string", "integer", "boolean", "string_list", "timestamp")
    for name in ("rollout.created", "device.enrolled", "webhook.created", "webhook.secret_rotated", "test.ping"):
        assert name in types
    rollout_id = next(f for f in types["rollout.created"]["data"] if f["name"] == "rollout_id")
    assert rollout_id["required"] is True and rollout_id["type"] == "string"
    families = {f["family"]: f for f in catalog["families"]}
    assert families["rollouts"]["filter"] == "rollout.*"
    for family in catalog["families"]:
        assert set(family) == {"family", "filter", "types"}
        for name in family["types"]:
            assert types[name]["family"] == family["family"]
    assert sum(len(f["types"]) for f in catalog["families"]) == len(types)
    # No secret-bearing field in the webhook management events.
    for name, info in types.items():
        if name.startswith("webhook."):
            assert all("secret" not in f["name"] or f["name"] == "previous_secret_expires_at" for f in info["data"])


# -- POST /v1/events ------------------------------------------------------------------------------
def _audit_items(tenant: str | None = None) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": os.environ["AUDIT_TABLE"]}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [i for i in items if tenant is None or i["tenant_id"]["S"] == tenant]


def test_write_one_event(platform: Platform) -> None:
    body = rollout_created("r1") | {"occurred_at": "2026-06-16T11:30:00+02:00"}
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=body)
    assert response.status == 201, response.json
    assert set(response.json) == {"items", "next_cursor"} and response.json["next_cursor"] is None
    (written,) = response.json["items"]
    assert set(written) == {"sequence", "idempotency_key", "type", "occurred_at"}
    assert written["type"] == "rollout.created"
    assert written["occurred_at"] == "2026-06-16T09:30:00Z"
    assert written["idempotency_key"].startswith(f"{written['sequence']}-")
    (item,) = _audit_items(TENANT)
    assert int(item["sequence"]["N"]) == written["sequence"]
    assert item["actor"]["S"] == "apikey:0123456789abcdef"  # defaults to the calling key
    assert item["subject"]["S"] == "rollout/r1"


def test_write_a_batch_of_100(platform: Platform) -> None:
    events = [rollout_created(f"r{i}") for i in range(99)] + [device_enrolled("d1") | {"actor": "user:ops"}]
    written = write_events(platform, events)
    assert len(written) == 100
    sequences = [w["sequence"] for w in written]
    assert sequences == list(range(sequences[0], sequences[0] + 100))
    assert [w["type"] for w in written] == [e["type"] for e in events]
    actors = {i["actor"]["S"] for i in _audit_items(TENANT)}
    assert actors == {"apikey:0123456789abcdef", "user:ops"}
    more = write_events(platform, [rollout_created("next")])
    assert more[0]["sequence"] == sequences[-1] + 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"events": [rollout_created(f"r{i}") for i in range(101)]}, 400, "events"),
        ({"events": []}, 400, "events"),
        ({"type": "rollout.created"}, 400, "subject"),
        ({"subject": "s"}, 400, "type"),
        ({"type": "nope.nothing", "subject": "s"}, 400, "type"),
        (rollout_created() | {"data": {"rollout_id": "r1", "zzz": 1}}, 400, "data.zzz"),
        (rollout_created() | {"data": {}}, 400, "data.rollout_id"),
        (rollout_created() | {"data": {"rollout_id": 5}}, 400, "data.rollout_id"),
        (rollout_created() | {"data": {"rollout_id": "r", "device_count": "many"}}, 400, "data.device_count"),
        (rollout_created() | {"data": {"rollout_id": "x" * 257}}, 400, "data.rollout_id"),
        (rollout_created() | {"data": []}, 400, "data"),
        (rollout_created() | {"subject": ""}, 400, "subject"),
        (rollout_created() | {"actor": ""}, 400, "actor"),
        (rollout_created() | {"occurred_at": "2026-06-16T09:30:00"}, 400, "occurred_at"),  # no time zone
        (rollout_created() | {"occurred_at": "0001-01-01T00:00:00+05:00"}, 400, "occurred_at"),
        (rollout_created() | {"occurred_at": "9999-12-31T23:00:00-05:00"}, 400, "occurred_at"),
        (rollout_created() | {"occurred_at": "not a time"}, 400, "occurred_at"),
        (rollout_created() | {"tenant": OTHER}, 400, "tenant"),
        ({"events": [rollout_created(), {"type": "rollout.created"}]}, 400, "events.1.subject"),
        ({"events": [rollout_created()], "tenant": OTHER}, 400, "tenant"),
        (
            {
                "type": "artifact.published",
                "subject": "artifact/a1",
                "data": {"artifact_id": "a1", "digest": "sha256:0", "platforms": ["p" * 256] * 32},
            },
            422,
            "data",
        ),
    ],
)
def test_write_events_validation_errors(platform: Platform, body: Any, status: int, field: str) -> None:
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=body)
    assert_error(response, status, field=field)
    assert _audit_items() == []  # nothing written, not even part of a batch


def test_a_batch_with_one_invalid_event_writes_nothing(platform: Platform) -> None:
    reserved = services.tenant_counters().reserved(TENANT)
    body = {"events": [rollout_created("r1"), rollout_created("r2") | {"data": {"rollout_id": "r2", "bad": True}}]}
    error = assert_error(platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=body), 400)
    assert "bad" in error["message"]
    assert _audit_items() == []
    assert services.tenant_counters().reserved(TENANT) == reserved  # no sequence was used up


def test_events_are_delivered_to_matching_endpoints(platform: Platform, receiver: Receiver) -> None:
    rollouts = receiver_webhook(platform, receiver, url=receiver.url + "/rollouts", events=["rollout.*"])
    devices = receiver_webhook(platform, receiver, url=receiver.url + "/devices", events=["device.enrolled"])
    write_events(platform, [rollout_created("r1"), device_enrolled("d1"), rollout_created("r2")])
    platform.pump()
    paths = sorted((r.path, json.loads(r.body)["type"]) for r in receiver.requests)
    assert paths == [
        ("/hook/devices", "device.enrolled"),
        ("/hook/rollouts", "rollout.created"),
        ("/hook/rollouts", "rollout.created"),
    ]
    for request in receiver.requests:
        secret = rollouts["secret"] if request.path.endswith("rollouts") else devices["secret"]
        verify(request.body, request.headers["X-Meshanics-Signature"], secret)


# -- webhook management is audited, and those events are deliverable --------------------------------
def test_management_writes_deliverable_audit_events_without_secrets(platform: Platform, receiver: Receiver) -> None:
    watcher = receiver_webhook(platform, receiver, url=receiver.url + "/watch", events=["webhook.*"])
    target = receiver_webhook(platform, receiver, url=receiver.url + "/target", events=["device.enrolled"])
    path = f"/v1/webhooks/{target['id']}"
    assert (
        platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"description": "renamed", "enabled": False}).status == 200
    )
    rotated = platform.api_as(TENANT, [ADMIN], "POST", f"{path}/rotate-secret", body={"overlap_seconds": 60}).json
    assert platform.api_as(TENANT, [ADMIN], "DELETE", path).status == 204
    platform.pump()

    about_target = []
    for request in receiver.requests:
        assert request.path == "/hook/watch"
        verify(request.body, request.headers["X-Meshanics-Signature"], watcher["secret"])
        text = request.body.decode()
        for secret in (watcher["secret"], target["secret"], rotated["secret"]):
            assert secret not in text and secret.removeprefix("whsec_") not in text
        assert "whsec_" not in text
        envelope = json.loads(request.body)
        assert envelope["type"].startswith("webhook.")
        if envelope["data"]["webhook_id"] == target["id"]:
            about_target.append(envelope)
    about_target.sort(key=lambda e: e["sequence"])
    assert [e["type"] for e in about_target] == [
        "webhook.created",
        "webhook.updated",
        "webhook.disabled",
        "webhook.secret_rotated",
        "webhook.deleted",
    ]
    created, updated, disabled, rotated_event, deleted = about_target
    assert disabled["data"] == {"webhook_id": target["id"], "reason": "api"}
    assert created["data"] == {"webhook_id": target["id"], "url_host": "127.0.0.1", "events": ["device.enrolled"]}
    assert updated["data"] == {"webhook_id": target["id"], "changed": ["description", "enabled"], "enabled": False}
    assert rotated_event["data"]["webhook_id"] == target["id"]
    assert abs(parse_iso(rotated_event["data"]["previous_secret_expires_at"]) - (time.time() + 60)) < 30
    assert deleted["data"] == {"webhook_id": target["id"]}
    for envelope in about_target:
        assert envelope["subject"] == f"webhook/{target['id']}"
        assert envelope["actor"] == "apikey:0123456789abcdef"
    audit_types = sorted(i["type"]["S"] for i in _audit_items(TENANT))
    assert audit_types == sorted(
        ["webhook.created"] * 2 + ["webhook.updated", "webhook.disabled", "webhook.secret_rotated", "webhook.deleted"]
    )


def test_failed_management_writes_no_audit_event(platform: Platform) -> None:
    created = create_webhook(platform, url=PUBLIC_URL)
    before = len(_audit_items())
    platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{created['id']}", body={"url": "https://10.0.0.1/"})
    platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": "http://hooks.example.com/"})
    platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{created['id']}", body={})
    assert len(_audit_items()) == before


# -- routing, OpenAPI and docs ---------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nothing"), ("PUT", "/v1/webhooks"), ("GET", "/v2x")])
def test_no_route_is_a_404_in_the_error_shape(platform: Platform, method: str, path: str) -> None:
    assert_error(platform.api_as(TENANT, [READ], method, path), 404, "not_found")


def _template_routes(code_uri: str | None = "functions/api/") -> set[tuple[str, str]]:
    """(method, path) of the API events in template.yaml: of one function, or (None) of every one."""
    from meshanics_local.template import load

    template = load(ROOT / "template.yaml")
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function" and code_uri in (None, resource["Properties"]["CodeUri"])
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    }


def _any_id(path: str) -> str:
    """A path with its parameters named alike (template.yaml says {id}, the document {webhook_id})."""
    return re.sub(r"\{[^}/]+\}", "{id}", path)


# The document itself and its page: routed by template.yaml, not operations of the API.
DOCUMENT_ROUTES = {("GET", "/v1/openapi.json"), ("GET", "/v1/docs")}
CONSOLE_ROUTES = {("GET", "/console"), ("GET", "/console/assets/{version}/{name}")}


def test_openapi_is_public_and_lists_every_route(platform: Platform) -> None:
    response = platform.api("GET", "/v1/openapi.json", context={})  # no authorizer on this route
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    spec = response.json
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "Meshanics Integrations API"
    operations = {(method.upper(), _any_id(path)) for path, item in spec["paths"].items() for method in item}
    expected = {(r.method, _any_id(r.template)) for r in DOCUMENTED}
    assert operations == expected
    # What API Gateway routes is what the code documents (and the console's page and assets).
    assert _template_routes() == expected | DOCUMENT_ROUTES | CONSOLE_ROUTES
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "API key: Authorization: Bearer <key>",
    }
    assert spec["security"] == [{"apiKey": []}]
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    success = {r.label: "200" for r in DOCUMENTED}
    success |= {"POST /v1/webhooks": "201", "POST /v1/events": "201", "POST /v1/registries": "201"}
    success["DELETE /v1/webhooks/{webhook_id}"] = "204"
    success["DELETE /v1/registries/{registry_id}"] = "204"
    success["POST /v1/webhooks/{webhook_id}/replay"] = "202"
    success["POST /v1/deliveries/{delivery_id}/replay"] = "202"
    success["POST /v1/webhooks/{webhook_id}/recover"] = "202"
    for route in DOCUMENTED:
        operation = spec["paths"][route.template][route.method.lower()]
        responses = operation["responses"]
        assert success[route.label] in responses, route.label
        for status, documented in responses.items():
            if status.startswith("4"):
                assert documented["content"]["application/json"]["schema"] == error_ref, (route.label, status)
        assert {"401", "403"} <= set(responses), route.label
        if route.takes_id:
            assert "404" in responses, route.label
        if route.body is not None:
            assert {"400", "413", "415"} <= set(responses), route.label
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["paths"]["/v1/webhooks"]["post"]["responses"]["422"]
    assert "422" in spec["paths"]["/v1/events"]["post"]["responses"]
    assert "409" in spec["paths"]["/v1/deliveries/{delivery_id}/replay"]["post"]["responses"]
    assert (
        "content" not in spec["paths"]["/v1/webhooks/{webhook_id}"]["delete"]["responses"]["204"]
        or not (spec["paths"]["/v1/webhooks/{webhook_id}"]["delete"]["responses"]["204"]["content"])
    )
    error = spec["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "field"} and set(detail["required"]) == {"code", "message"}
    create = spec["components"]["schemas"]["WebhookCreate"]
    assert set(create["properties"]) == {"url", "events", "description", "allow_private_network", "enabled", "headers"}
    assert create["additionalProperties"] is False
    with_secret = spec["components"]["schemas"]["WebhookWithSecret"]
    assert "secret" in with_secret["properties"]
    assert "secret" not in spec["components"]["schemas"]["Webhook"]["properties"]


def test_openapi_is_the_same_with_or_without_a_key(platform: Platform) -> None:
    anonymous = platform.api("GET", "/v1/openapi.json", context={}).json
    key = platform.key(TENANT, [READ])
    assert platform.api("GET", "/v1/openapi.json", key=key).json == anonymous


def test_every_v1_route_api_gateway_serves_is_in_the_document(platform: Platform) -> None:
    """Whichever function template.yaml routes a /v1 path to, the one document states it (so a route
    added later, anywhere, cannot be left out of it)."""
    spec = platform.api("GET", "/v1/openapi.json", context={}).json
    documented = {(method.upper(), _any_id(path)) for path, item in spec["paths"].items() for method in item}
    routed = {(method, _any_id(path)) for method, path in _template_routes(None) if path.startswith("/v1/")}
    assert ("POST", "/v1/registries") in routed and ("POST", "/v1/events") in routed
    missing = routed - DOCUMENT_ROUTES - documented
    assert not missing, f"routed by template.yaml but not in /v1/openapi.json: {sorted(missing)}"
    # And the document's routes are routed to the function that serves the document.
    assert documented <= {(m, _any_id(p)) for m, p in _template_routes()}


def test_interactive_docs_are_public(platform: Platform) -> None:
    response = platform.api("GET", "/v1/docs", context={})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.body.decode()
    assert "swagger" in page.lower()
    assert "/v1/webhooks/{webhook_id}/rotate-secret" in page


def test_the_docs_page_loads_the_document(platform: Platform) -> None:
    """The page's own script, run in Node with Swagger UI stubbed, hands Swagger UI the document
    /v1/openapi.json serves: every operation, registry connections included."""
    node = shutil.which("node")
    assert node, "Node.js is needed to run the docs page's script"
    page = platform.api("GET", "/v1/docs", context={}).body.decode()
    script = re.findall(r"<script>(.*?)</script>", page, flags=re.S)[-1]  # the page's; the first is the bundle
    program = (
        "const window = {location: {href: 'http://127.0.0.1:3000/v1/docs'}};\n"
        "let given = null;\n"
        "function SwaggerUIBundle(options) { given = options; return {specActions: {updateUrl() {}}}; }\n"
        "SwaggerUIBundle.presets = {apis: {}}; SwaggerUIBundle.SwaggerUIStandalonePreset = {};\n"
        "SwaggerUIBundle.plugins = {DownloadUrl: {}};\n"
        f"{script}\n"
        "process.stdout.write(JSON.stringify({dom: given.dom_id, spec: given.spec}));\n"
    )
    result = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(result.stdout)
    assert loaded["dom"] == "#swagger-ui" and '<div id="swagger-ui">' in page
    assert loaded["spec"] == platform.api("GET", "/v1/openapi.json", context={}).json
    assert "/v1/registries/{registry_id}/approve" in loaded["spec"]["paths"]


def test_template_lists_the_routes_with_their_authorizer() -> None:
    text = (ROOT / "template.yaml").read_text()
    assert "DefaultAuthorizer: ApiKeyAuthorizer" in text
    assert text.count("Auth: {Authorizer: NONE}") >= 4  # the document, its docs page, the console and its assets


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/webhooks", [{"url": PUBLIC_URL}]),
        ("PATCH", "/v1/webhooks/{id}", [{"enabled": False}]),
        ("POST", "/v1/webhooks/{id}/rotate-secret", [{}]),
        ("POST", "/v1/webhooks/{id}/test", [{"message": "hi"}, 1]),
        ("POST", "/v1/webhooks/{id}/replay", [{"limit": 1}]),
        ("POST", "/v1/events", [rollout_created()]),
    ],
)
def test_an_array_is_not_taken_for_the_object_it_contains(
    platform: Platform, receiver: Receiver, method: str, path: str, body: list[Any]
) -> None:
    created = receiver_webhook(platform, receiver, events=[QUIET])
    response = platform.api_as(TENANT, [ADMIN, EVENTS], method, path.replace("{id}", created["id"]), body=body)
    assert_error(response, 400, "invalid_request")
    assert without_health(platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}").json) == {
        k: v for k, v in created.items() if k != "secret"
    }
    assert receiver.requests == []


@pytest.mark.parametrize("reserved", ["webhook.created", "registry.approved", "test.ping"])
def test_producers_cannot_write_platform_events(platform: Platform, reserved: str) -> None:
    single = {"type": reserved, "subject": "s", "data": {}}
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=single)
    assert_error(response, 400, "reserved_event_type", "type")
    batch = {"events": [{"type": "rollout.created", "subject": "s", "data": {"rollout_id": "r"}}, single]}
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=batch)
    assert_error(response, 400, "reserved_event_type", "events.1.type")


def test_batch_errors_name_the_event(platform: Platform) -> None:
    batch = {
        "events": [
            {"type": "rollout.created", "subject": "s", "data": {"rollout_id": "r"}},
            {"type": "rollout.created", "subject": "s", "data": {"rollout_id": "r", "payload": "x"}},
        ]
    }
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=batch)
    assert_error(response, 400, "invalid_request", "events.1.data.payload")

"""Access: real API keys through the real authorizer, a scope matrix and a cross-tenant matrix over
every route, and no way for a request to choose its tenant."""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import (
    ADMIN,
    EVENTS,
    ID_ROUTES,
    OTHER,
    PUBLIC_URL,
    READ,
    RECENTLY,
    ROUTES,
    SCOPES,
    TENANT,
    Route,
    assert_error,
    random_delivery_id,
    random_replay_id,
    random_webhook_id,
)
from tests.support.harness import ApiResponse, Platform
from tests.support.lambda_events import Context

QUIET = "vulnerability.resolved"
SUCCESS = {
    "POST /v1/webhooks": 201,
    "DELETE /v1/webhooks/{webhook_id}": 204,
    "POST /v1/webhooks/{webhook_id}/replay": 202,
    "POST /v1/deliveries/{delivery_id}/replay": 202,
    "POST /v1/webhooks/{webhook_id}/recover": 202,
    "POST /v1/events": 201,
}


def call(platform: Platform, authorization: str | None, route: Route, **ids: str) -> ApiResponse:
    """What API Gateway does: the authorizer with the header as sent, then the function (or a 401)."""
    context = platform.authorize(authorization)
    if context is None:
        return ApiResponse(401, {}, b'{"error":{"code":"unauthorized","message":"a valid API key is required"}}')
    return platform.api(route.method, route.path(**ids), body=route.body, context=context)


def audit_count() -> int:
    return int(boto3.client("dynamodb").scan(TableName=os.environ["AUDIT_TABLE"], Select="COUNT")["Count"])


def make_resources(platform: Platform, receiver: Receiver, key: str) -> dict[str, str]:
    """A webhook (on the receiver) and one failed delivery of it, made with `key`."""
    created = platform.api(
        "POST",
        "/v1/webhooks",
        key=key,
        body={"url": receiver.url, "allow_private_network": True, "events": [QUIET]},
    )
    assert created.status == 201, created.json
    webhook_id = created.json["id"]
    receiver.behaviours = [Behaviour(status=500)]
    tested = platform.api("POST", f"/v1/webhooks/{webhook_id}/test", key=key)
    receiver.behaviours = []
    assert tested.status == 200 and tested.json["status"] == "failed", tested.json
    recovery = platform.api("POST", f"/v1/webhooks/{webhook_id}/recover", key=key, body={"since": RECENTLY})
    assert recovery.status == 202, recovery.json
    return {
        "webhook_id": webhook_id,
        "delivery_id": tested.json["delivery_id"],
        "replay_id": recovery.json["id"],
        "secret": created.json["secret"],
    }


# -- the scope matrix -----------------------------------------------------------------------------
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.label)
def test_scope_matrix(platform: Platform, receiver: Receiver, route: Route) -> None:
    admin = platform.key(TENANT, [ADMIN])
    keys = {scope: platform.key(TENANT, [scope]) for scope in SCOPES}
    for scope, key in keys.items():
        ids = make_resources(platform, receiver, admin)
        ids.pop("secret")
        before = audit_count()
        requests_before = len(receiver.requests)
        response = call(platform, f"Bearer {key}", route, **ids)
        if route.allows(scope):
            expected = SUCCESS.get(route.label, 200)
            assert response.status == expected, (scope, response.status, response.json)
        else:
            error = assert_error(response, 403, "missing_scope")
            assert route.scope in error["message"], (scope, error)
            # Refused before anything happened.
            assert audit_count() == before, scope
            assert len(receiver.requests) == requests_before, scope
            webhook = platform.api("GET", f"/v1/webhooks/{ids['webhook_id']}", key=admin)
            assert webhook.status == 200, scope


def test_admin_implies_read_but_not_events(platform: Platform) -> None:
    admin = platform.key(TENANT, [ADMIN])
    assert platform.api("GET", "/v1/webhooks", key=admin).status == 200
    assert platform.api("GET", "/v1/event-types", key=admin).status == 200
    route = next(r for r in ROUTES if r.label == "POST /v1/events")
    assert_error(call(platform, f"Bearer {admin}", route), 403, "missing_scope")
    reader = platform.key(TENANT, [READ])
    create = next(r for r in ROUTES if r.label == "POST /v1/webhooks")
    assert_error(call(platform, f"Bearer {reader}", create), 403, "missing_scope")


def test_a_key_with_several_scopes_has_each(platform: Platform) -> None:
    key = platform.key(TENANT, [READ, EVENTS])
    for route in ROUTES:
        if route.takes_id:
            continue
        response = call(platform, f"Bearer {key}", route)
        assert (response.status == 403) == (route.scope == ADMIN), (route.label, response.status)


# -- authentication -------------------------------------------------------------------------------
def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


LIST = next(r for r in ROUTES if r.label == "GET /v1/webhooks")


def test_valid_key_forms(platform: Platform) -> None:
    key = platform.key(TENANT, [READ])
    for header in (
        f"Bearer {key}",
        f"bearer {key}",
        f"BEARER   {key}  ",
        _basic("anyone", key),
        _basic("", key),
        _basic("AWS", key),
    ):
        response = call(platform, header, LIST)
        assert response.status == 200, (header, response.json)


def test_missing_or_bad_keys_are_401(platform: Platform) -> None:
    key = platform.key(TENANT, [READ, ADMIN, EVENTS])
    key_id = key.split("_")[1]
    wrong_secret = f"msk_{key_id}_{'A' * 43}"
    unknown = f"msk_{'0' * 16}_{'B' * 43}"
    for header in (
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer nope",
        f"Bearer {wrong_secret}",
        f"Bearer {unknown}",
        f"Bearer {key}x",
        f"Bearer {key[:-1]}",
        f"Token {key}",
        key,
        _basic("user", "nope"),
        "Basic " + base64.b64encode(key.encode()).decode(),  # no user:password pair
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        _basic(key, ""),  # the key as user name, no password
    ):
        for route in ROUTES:
            response = call(platform, header, route, webhook_id=random_webhook_id(), delivery_id=random_delivery_id())
            assert response.status == 401, (header, route.label, response.status)
    assert audit_count() == 0
    assert call(platform, f"Bearer {key}", LIST).status == 200


def test_a_revoked_key_is_401_at_once(platform: Platform) -> None:
    key = platform.key(TENANT, [READ])
    other = platform.key(TENANT, [READ])
    assert call(platform, f"Bearer {key}", LIST).status == 200
    key_id = key.split("_")[1]
    revoked = services.api_keys().revoke(TENANT, key_id)
    assert revoked.revoked_at
    assert call(platform, f"Bearer {key}", LIST).status == 401
    assert call(platform, _basic("user", key), LIST).status == 401
    assert call(platform, f"Bearer {other}", LIST).status == 200


def test_keys_are_stored_only_as_a_hash(platform: Platform) -> None:
    key = platform.key(TENANT, [READ])
    secret_part = key.split("_", 2)[2]
    items = boto3.client("dynamodb").scan(TableName=os.environ["INTEGRATIONS_TABLE"])["Items"]
    text = json.dumps(items, default=str)
    assert key not in text and secret_part not in text
    assert len(secret_part) >= 43  # 256 random bits, URL-safe base64


def test_authorizer_answer(platform: Platform) -> None:
    key = platform.key(OTHER, [READ, EVENTS])
    event = {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef/prod/GET/v1/webhooks/ep_1",
        "headers": {"authorization": f"Bearer {key}"},
    }
    policy = platform.handler("authorizer").lambda_handler(event, Context("authorizer"))
    key_id = key.split("_")[1]
    assert policy["principalId"] == f"{OTHER}/{key_id}"
    assert policy["context"] == {"tenant_id": OTHER, "scopes": f"{READ} {EVENTS}", "key_id": key_id}
    (statement,) = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abcdef/prod/*/*"
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        platform.handler("authorizer").lambda_handler(
            {**event, "headers": {"Authorization": "Bearer nope"}}, Context("authorizer")
        )


def test_without_authorizer_context_the_function_refuses(platform: Platform) -> None:
    """Defence in depth: were a route deployed without the authorizer, the function answers 401."""
    for route in ROUTES:
        response = platform.api(
            route.method,
            route.path(random_webhook_id(), random_delivery_id(), replay_id=random_replay_id()),
            body=route.body,
            context={},
        )
        assert_error(response, 401, "unauthorized")


# -- another tenant's resources -------------------------------------------------------------------
def _without(text: bytes, *ids: str) -> str:
    out = text.decode()
    for value in ids:
        out = out.replace(value, "<id>")
    return out


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: r.label)
def test_cross_tenant_matrix(platform: Platform, receiver: Receiver, route: Route) -> None:
    owner = platform.key(TENANT, [ADMIN, EVENTS])
    mine = make_resources(platform, receiver, owner)
    intruder = platform.key(OTHER, [ADMIN, EVENTS])
    before_webhook = platform.api("GET", f"/v1/webhooks/{mine['webhook_id']}", key=owner).json
    before_delivery = platform.api("GET", f"/v1/deliveries/{mine['delivery_id']}", key=owner).json
    before_audit = audit_count()
    before_requests = len(receiver.requests)

    owned = {k: mine[k] for k in ("webhook_id", "delivery_id", "replay_id")}
    theirs = call(platform, f"Bearer {intruder}", route, **owned)
    assert_error(theirs, 404, "not_found")
    missing_ids = {
        "webhook_id": random_webhook_id(),
        "delivery_id": random_delivery_id(),
        "replay_id": random_replay_id(),
    }
    missing = call(platform, f"Bearer {intruder}", route, **missing_ids)
    assert_error(missing, 404, "not_found")
    # Indistinguishable from an id that does not exist: same status, same body but for the id.
    assert _without(theirs.body, *owned.values()) == _without(missing.body, *missing_ids.values())
    assert theirs.headers == missing.headers
    # And the owner's resources are untouched.
    assert platform.api("GET", f"/v1/webhooks/{mine['webhook_id']}", key=owner).json == before_webhook
    assert platform.api("GET", f"/v1/deliveries/{mine['delivery_id']}", key=owner).json == before_delivery
    assert audit_count() == before_audit
    assert len(receiver.requests) == before_requests


def test_cross_tenant_with_a_read_only_key(platform: Platform, receiver: Receiver) -> None:
    owner = platform.key(TENANT, [ADMIN])
    mine = make_resources(platform, receiver, owner)
    reader = platform.key(OTHER, [READ])
    for route in ID_ROUTES:
        owned = {k: mine[k] for k in ("webhook_id", "delivery_id", "replay_id")}
        theirs = call(platform, f"Bearer {reader}", route, **owned)
        missing = call(
            platform,
            f"Bearer {reader}",
            route,
            webhook_id=random_webhook_id(),
            delivery_id=random_delivery_id(),
            replay_id=random_replay_id(),
        )
        # Reads: 404 either way; writes: 403 either way (the scope is checked first, for any id).
        expected = 404 if route.scope == READ else 403
        assert theirs.status == missing.status == expected, route.label
        assert theirs.json["error"]["code"] == missing.json["error"]["code"]


def test_lists_and_events_stay_within_the_tenant(platform: Platform, receiver: Receiver) -> None:
    owner = platform.key(TENANT, [ADMIN, EVENTS])
    mine = make_resources(platform, receiver, owner)
    intruder = platform.key(OTHER, [ADMIN, EVENTS])
    assert platform.api("GET", "/v1/webhooks", key=intruder).json == {"items": [], "next_cursor": None}
    listed = platform.api("GET", "/v1/webhooks", key=owner).json["items"]
    assert [w["id"] for w in listed] == [mine["webhook_id"]]
    # The other tenant's events have their own sequence and reach only its endpoints.
    patched = platform.api("PATCH", f"/v1/webhooks/{mine['webhook_id']}", key=owner, body={"events": ["rollout.*"]})
    assert patched.status == 200
    before = len(receiver.requests)
    written = platform.api(
        "POST",
        "/v1/events",
        key=intruder,
        body={"type": "rollout.created", "subject": "rollout/r1", "data": {"rollout_id": "r1"}},
    )
    assert written.status == 201
    assert written.json["items"][0]["sequence"] == 1
    platform.pump()
    assert len(receiver.requests) == before


# -- no request field selects a tenant -----------------------------------------------------------
def test_query_and_headers_cannot_choose_the_tenant(platform: Platform) -> None:
    owner = platform.key(TENANT, [ADMIN])
    platform.api("POST", "/v1/webhooks", key=platform.key(OTHER, [ADMIN]), body={"url": PUBLIC_URL})
    for query in ({"tenant": OTHER}, {"tenant_id": OTHER}, {"tenantId": OTHER}):
        response = platform.api("GET", "/v1/webhooks", key=owner, query=query)
        assert response.status == 200 and response.json["items"] == [], query
    created = platform.api(
        "POST",
        "/v1/webhooks",
        key=owner,
        body={"url": PUBLIC_URL},
        query={"tenant": OTHER},
        headers={"X-Tenant-Id": OTHER, "X-Meshanics-Tenant": OTHER},
    )
    assert created.status == 201
    assert [w["id"] for w in platform.api("GET", "/v1/webhooks", key=owner).json["items"]] == [created.json["id"]]
    assert len(platform.api("GET", "/v1/webhooks", key=platform.key(OTHER, [READ])).json["items"]) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/webhooks", {"url": PUBLIC_URL, "tenant": OTHER}, "tenant"),
        ("POST", "/v1/webhooks", {"url": PUBLIC_URL, "tenant_id": OTHER}, "tenant_id"),
        ("PATCH", "/v1/webhooks/{id}", {"tenant": OTHER}, "tenant"),
        ("PATCH", "/v1/webhooks/{id}", {"tenant_id": OTHER, "description": "x"}, "tenant_id"),
        ("POST", "/v1/webhooks/{id}/rotate-secret", {"tenant": OTHER}, "tenant"),
        ("POST", "/v1/webhooks/{id}/test", {"tenant": OTHER}, "tenant"),
        ("POST", "/v1/webhooks/{id}/replay", {"tenant": OTHER}, "tenant"),
        (
            "POST",
            "/v1/events",
            {"type": "rollout.created", "subject": "s", "data": {"rollout_id": "r"}, "tenant": OTHER},
            "tenant",
        ),
        (
            "POST",
            "/v1/events",
            {"events": [{"type": "rollout.created", "subject": "s", "data": {"rollout_id": "r"}, "tenant_id": OTHER}]},
            "events.0.tenant_id",
        ),
    ],
)
def test_body_fields_cannot_choose_the_tenant(
    platform: Platform, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    key = platform.key(TENANT, [ADMIN, EVENTS])
    webhook = platform.api("POST", "/v1/webhooks", key=key, body={"url": PUBLIC_URL}).json
    before = audit_count()
    response = platform.api(method, path.replace("{id}", webhook["id"]), key=key, body=body)
    error = assert_error(response, 400, "invalid_request", field)
    assert error["message"] == f"{field}: unknown field"
    assert audit_count() == before


def test_the_documented_api_has_no_tenant_parameter(platform: Platform) -> None:
    """No input names a tenant (GET /v1/whoami may say which tenant the key belongs to)."""
    spec = platform.api("GET", "/v1/openapi.json", context={}).json
    schemas = spec["components"]["schemas"]
    names: list[str] = []
    inputs: list[Any] = []
    for item in spec["paths"].values():
        for operation in item.values():
            names += [p["name"] for p in operation.get("parameters", [])]
            inputs += [c["schema"] for c in operation.get("requestBody", {}).get("content", {}).values()]
    seen: set[str] = set()
    while inputs:  # every schema a request body can hold, and their properties
        schema = inputs.pop()
        text = json.dumps(schema)
        for ref in re.findall(r'"#/components/schemas/([^"]+)"', text):
            if ref not in seen:
                seen.add(ref)
                names += list(schemas[ref].get("properties", {}))
                inputs.append(schemas[ref])
    assert len(seen) >= 5 and names
    assert not [n for n in names if re.search("tenant", n, re.IGNORECASE)]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/webhooks", {"nonsense": True}),
        ("POST", "/v1/events", {"type": 5}),
        ("PATCH", "/v1/webhooks/ep_" + "1" * 24, {"url": 12}),
    ],
)
def test_a_missing_scope_is_refused_before_the_body_is_validated(
    platform: Platform, method: str, path: str, body: dict[str, object]
) -> None:
    key = platform.key(TENANT, [READ])
    response = platform.api(method, path, key=key, body=body)
    assert response.status == 403 and response.json["error"]["code"] == "missing_scope"

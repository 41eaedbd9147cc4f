"""Hostile input answers a 4xx in the one error shape, never a 500: cursors and JSON bodies that
`json.loads` cannot take in (nesting past the recursion limit, integers past Python's 4,300-digit
limit) or that nothing can write back (lone UTF-16 surrogates), on every route that reads them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.api.support import ADMIN, EVENTS, READ, TENANT, assert_error, create_webhook, rollout_created
from tests.support.harness import ApiResponse, Platform

OPERATOR = "registries:operator"
HUGE = "9" * 5000  # past Python's int-from-text limit (4,300 digits): json.loads raises ValueError
LONE = '"\\ud800"'  # JSON text of a lone UTF-16 surrogate: parses, then no UTF-8 encoder can write it

# Every JSON-body route of both API functions, with a valid body (ids are filled in per test).
JSON_ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", "/v1/webhooks", ADMIN, {"url": "https://hooks.example.com/new"}),
    ("PATCH", "/v1/webhooks/{webhook_id}", ADMIN, {"description": "changed"}),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret", ADMIN, {"overlap_seconds": 60}),
    ("POST", "/v1/webhooks/{webhook_id}/test", ADMIN, {"message": "hello"}),
    ("POST", "/v1/webhooks/{webhook_id}/replay", ADMIN, {"limit": 10}),
    ("POST", "/v1/events", EVENTS, rollout_created()),
    (
        "POST",
        "/v1/registries",
        OPERATOR,
        {
            "name": "corp",
            "upstream_url": "https://registry.example.com",
            "credentials": {"type": "token", "token": "t0ken"},
        },
    ),
    ("PUT", "/v1/registries/{registry_id}/credentials", OPERATOR, {"credentials": {"type": "token", "token": "t"}}),
]
ROUTE_IDS = [f"{method} {template}" for method, template, _, _ in JSON_ROUTES]


def _raw(body: dict[str, Any], field: str, value_json: str) -> bytes:
    """`body` as JSON text with `field` (a top-level name) set to the given raw JSON text."""
    text = json.dumps({k: v for k, v in body.items() if k != field} | {field: "__SLOT__"})
    return text.replace('"__SLOT__"', value_json).encode()


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _call(platform: Platform, method: str, template: str, scope: str, **kwargs: Any) -> ApiResponse:
    path = template.replace("{webhook_id}", "ep_000000000000000000000000").replace("{registry_id}", "reg_0000")
    return platform.api_as(TENANT, [scope], method, path, **kwargs)


def _not_a_500(response: ApiResponse) -> None:
    assert response.status < 500, f"{response.status}: {response.body[:300]!r}"


# -- (a) cursors ------------------------------------------------------------------------------------
def _hostile_cursors(partition: str, sort_prefix: str) -> list[str]:
    """Cursors within the 2048-character cap: unclosed and closed nesting, a huge int, a surrogate."""
    cursors = [
        _cursor('{"pk":' + "[" * 1530),  # json.loads: RecursionError
        _cursor("[" * 1536),
        _cursor('{"pk":' + "[" * 760 + "]" * 760 + "}"),
        _cursor('{"pk":{"a":' * 100 + "1" + "}" * 200),
        _cursor('{"pk":' + "9" * 1500 + "}"),
        _cursor(f'{{"pk":"{partition}","sk":"{sort_prefix}' + '\\ud800"}'),  # parses; boto3 cannot encode it
        _cursor(f'{{"pk":"{partition}\\udfff","sk":"{sort_prefix}x"}}'),
    ]
    assert all(len(c) <= 2048 for c in cursors)  # within the Cursor query parameter's cap
    return cursors


def _assert_cursor_refused(response: ApiResponse) -> None:
    assert_error(response, 400, "invalid_cursor", "cursor")


def test_hostile_cursors_on_the_webhook_list(platform: Platform) -> None:
    for cursor in _hostile_cursors(f"T#{TENANT}", "EP#"):
        response = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks", query={"cursor": cursor})
        _assert_cursor_refused(response)


def test_hostile_cursors_on_the_delivery_history(platform: Platform) -> None:
    webhook = create_webhook(platform, url="https://hooks.example.com/h")
    path = f"/v1/webhooks/{webhook['id']}/deliveries"
    for cursor in _hostile_cursors(f"T#{TENANT}#EP#{webhook['id']}", "D#"):
        _assert_cursor_refused(platform.api_as(TENANT, [READ], "GET", path, query={"cursor": cursor}))


def test_hostile_cursors_on_the_registry_list(platform: Platform) -> None:
    for cursor in _hostile_cursors(f"T#{TENANT}", "REG#"):
        response = platform.api_as(TENANT, [READ], "GET", "/v1/registries", query={"cursor": cursor})
        _assert_cursor_refused(response)


# -- (b) integers past the int-from-text limit ------------------------------------------------------
@pytest.mark.parametrize(("method", "template", "scope", "body"), JSON_ROUTES, ids=ROUTE_IDS)
def test_a_5000_digit_integer_is_a_400_naming_its_field(
    platform: Platform, method: str, template: str, scope: str, body: dict[str, Any]
) -> None:
    field = next(iter(body))
    for number in (HUGE, "-" + HUGE):
        response = _call(platform, method, template, scope, raw_body=_raw(body, field, number))
        error = assert_error(response, 400, "invalid_request", field)
        assert "digits" in error["message"]


def test_a_huge_integer_deep_inside_a_batch_names_its_path(platform: Platform) -> None:
    raw = b'{"events": [' + json.dumps(rollout_created()).encode()
    raw += b', {"type": "rollout.created", "subject": "s", "data": {"rollout_id": ' + HUGE.encode() + b"}}]}"
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", raw_body=raw)
    assert_error(response, 400, "invalid_request", "events.1.data.rollout_id")


def test_large_integers_within_the_limit_are_still_validated_as_usual(platform: Platform) -> None:
    raw = b'{"overlap_seconds": ' + b"9" * 4000 + b"}"
    webhook = create_webhook(platform, url="https://hooks.example.com/h")
    response = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook['id']}/rotate-secret", raw_body=raw)
    assert_error(response, 400, "invalid_request", "overlap_seconds")


# -- (c) lone surrogates ----------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "template", "scope", "body"), JSON_ROUTES, ids=ROUTE_IDS)
def test_a_lone_surrogate_is_a_400_naming_its_field(
    platform: Platform, method: str, template: str, scope: str, body: dict[str, Any]
) -> None:
    field = next(iter(body))
    for text in (LONE, '"ok \\udfff"', '"\\udc00\\ud800"', '["\\ud800"]', '{"type": "\\ud83d"}'):
        response = _call(platform, method, template, scope, raw_body=_raw(body, field, text))
        error = assert_error(response, 400, "invalid_request")
        assert error["field"] is not None and error["field"].startswith(field), error
        assert "surrogate" in error["message"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (rollout_created() | {"data": {"rollout_id": "r\ud800"}}, "data.rollout_id"),
        (rollout_created() | {"data": {"rollout_id": "r1", "\udfff": "x"}}, "data"),
        (rollout_created() | {"subject": "rollout/\ud800"}, "subject"),
        (rollout_created() | {"actor": "\ud800"}, "actor"),
        (rollout_created() | {"type": "rollout.\ud800"}, "type"),
    ],
)
def test_lone_surrogates_in_events(platform: Platform, event: dict[str, Any], field: str) -> None:
    # json.dumps writes a lone surrogate as its \\u escape, as a hostile client would.
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=event)
    assert_error(response, 400, "invalid_request", field)
    batch = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body={"events": [rollout_created(), event]})
    assert_error(batch, 400, "invalid_request", f"events.1.{field}")
    assert platform.stream.records() == []  # nothing was written


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://hooks.example.com/\ud800"},
        {"url": "https://hooks.example.com/", "description": "\ud800"},
        {"url": "https://hooks.example.com/", "events": ["rollout.*", "\udc00"]},
    ],
)
def test_lone_surrogates_in_webhook_fields(platform: Platform, body: dict[str, Any]) -> None:
    assert_error(platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=body), 400, "invalid_request")
    assert platform.api_as(TENANT, [READ], "GET", "/v1/webhooks").json["items"] == []


def test_surrogate_pairs_are_ordinary_text(platform: Platform) -> None:
    raw = b'{"url": "https://hooks.example.com/", "description": "rocket \\ud83d\\ude80"}'
    response = platform.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", raw_body=raw)
    assert response.status == 201, response.json
    assert response.json["description"] == "rocket \U0001f680"


# -- nesting --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "template", "scope", "body"), JSON_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("depth", [100, 900, 1500, 20_000])
def test_deep_nesting_is_invalid_json_on_every_route(
    platform: Platform, method: str, template: str, scope: str, body: dict[str, Any], depth: int
) -> None:
    field = next(iter(body))
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        response = _call(platform, method, template, scope, raw_body=_raw(body, field, nested))
        assert_error(response, 400, "invalid_json")


def test_ordinary_bodies_still_pass_the_door(platform: Platform) -> None:
    webhook = create_webhook(platform, url="https://hooks.example.com/h", description="naïve ✓ 😀")
    assert webhook["description"] == "naïve ✓ 😀"
    response = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=rollout_created())
    assert response.status == 201, response.json
    for route in JSON_ROUTES:
        _not_a_500(_call(platform, route[0], route[1], route[2], body=route[3]))

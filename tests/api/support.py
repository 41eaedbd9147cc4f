"""Shared vocabulary of the tenant API tests: tenants, scopes, routes and small request helpers."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from meshanics_local.receiver import Receiver
from tests.support.harness import ApiResponse, Platform

TENANT = "acme"
OTHER = "globex"

READ = "integrations:read"
ADMIN = "integrations:admin"
EVENTS = "events:write"
OPERATOR = "registries:operator"
SCOPES = (READ, ADMIN, EVENTS, OPERATOR, "artifacts:pull")
ANY_SCOPE = "any scope"  # a route every key may call (GET /v1/whoami)

# Hosts the tests' resolver answers (see conftest.fake_dns); nothing leaves the machine.
PUBLIC_IP = "93.184.215.14"
PUBLIC_URL = "https://hooks.example.com/meshanics"
DNS: dict[str, list[str]] = {
    "hooks.example.com": [PUBLIC_IP],
    "internal.example.com": ["10.20.30.40"],
    "loopback.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "mixed.example.com": [PUBLIC_IP, "192.168.1.10"],
}


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as in template.yaml and the OpenAPI document, e.g. /v1/webhooks/{webhook_id}
    scope: str
    body: Any = None
    also: tuple[str, ...] = ()  # other scopes that open the route

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"

    def path(self, webhook_id: str = "", delivery_id: str = "", *, registry_id: str = "", replay_id: str = "") -> str:
        return (
            self.template.replace("{webhook_id}", webhook_id)
            .replace("{delivery_id}", delivery_id)
            .replace("{registry_id}", registry_id)
            .replace("{replay_id}", replay_id)
        )

    @property
    def takes_id(self) -> bool:
        return "{" in self.template

    def allows(self, scope: str) -> bool:
        return self.scope == ANY_SCOPE or scope in (self.scope, *self.also) or (self.scope == READ and scope == ADMIN)


RECENTLY = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))  # a recovery window's start
ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/webhooks", ADMIN, {"url": "https://hooks.example.com/new"}),
    Route("GET", "/v1/webhooks", READ),
    Route("GET", "/v1/webhooks/{webhook_id}", READ),
    Route("PATCH", "/v1/webhooks/{webhook_id}", ADMIN, {"description": "changed"}),
    Route("DELETE", "/v1/webhooks/{webhook_id}", ADMIN),
    Route("POST", "/v1/webhooks/{webhook_id}/rotate-secret", ADMIN, {"overlap_seconds": 60}),
    Route("POST", "/v1/webhooks/{webhook_id}/test", ADMIN, {"message": "hello"}),
    Route("GET", "/v1/webhooks/{webhook_id}/deliveries", READ),
    Route("GET", "/v1/webhooks/{webhook_id}/stats", READ),
    Route("POST", "/v1/webhooks/{webhook_id}/replay", ADMIN, {"limit": 10}),
    Route("POST", "/v1/webhooks/{webhook_id}/recover", ADMIN, {"since": RECENTLY}),
    Route("GET", "/v1/replays", READ),
    Route("GET", "/v1/replays/{replay_id}", READ),
    Route("DELETE", "/v1/replays/{replay_id}", ADMIN),
    Route("GET", "/v1/deliveries/{delivery_id}", READ),
    Route("POST", "/v1/deliveries/{delivery_id}/replay", ADMIN),
    Route("GET", "/v1/event-types", READ),
    Route("GET", "/v1/whoami", ANY_SCOPE),
    Route(
        "POST",
        "/v1/events",
        EVENTS,
        {"type": "rollout.created", "subject": "rollout/r1", "data": {"rollout_id": "r1"}},
    ),
)
ID_ROUTES = tuple(r for r in ROUTES if r.takes_id)
UPSTREAM = {"type": "basic", "username": "robot", "password": "s3cret-password-value"}
# Registry connections: served by the same function, in the same document (their own tests are in
# tests/registry).
REGISTRY_ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/registries",
        OPERATOR,
        {"name": "corp", "upstream_url": "https://hooks.example.com", "credentials": UPSTREAM},
    ),
    Route("GET", "/v1/registries", READ, also=(OPERATOR,)),
    Route("GET", "/v1/registries/{registry_id}", READ, also=(OPERATOR,)),
    Route("DELETE", "/v1/registries/{registry_id}", OPERATOR),
    Route("POST", "/v1/registries/{registry_id}/approve", OPERATOR),
    Route("PUT", "/v1/registries/{registry_id}/credentials", OPERATOR, {"credentials": UPSTREAM}),
)
# Every route the OpenAPI document states.
DOCUMENTED = ROUTES + REGISTRY_ROUTES


def random_webhook_id() -> str:
    return f"ep_{secrets.token_hex(12)}"


def random_delivery_id() -> str:
    return f"dlv_{secrets.token_hex(12)}_7"


def random_replay_id() -> str:
    return f"rpl_{secrets.token_hex(12)}"


def assert_error(response: ApiResponse, status: int, code: str | None = None, field: Any = ...) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message", "field"?}} with the expected status.

    `code` and `field` are checked when given (`field=None`: the error names no field)."""
    assert response.status == status, f"expected {status}, got {response.status}: {response.body[:500]!r}"
    body = response.json
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    if field is not ...:
        assert error.get("field") == field, error
    return error  # type: ignore[no-any-return]


def create_webhook(platform: Platform, tenant: str = TENANT, **body: Any) -> dict[str, Any]:
    response = platform.api_as(tenant, [ADMIN], "POST", "/v1/webhooks", body=body)
    assert response.status == 201, response.json
    return response.json  # type: ignore[no-any-return]


def receiver_webhook(platform: Platform, receiver: Receiver, tenant: str = TENANT, **body: Any) -> dict[str, Any]:
    """An endpoint on the loopback receiver (which needs the private-network opt-in)."""
    body.setdefault("url", receiver.url)
    return create_webhook(platform, tenant, allow_private_network=True, **body)


def write_events(platform: Platform, events: list[dict[str, Any]], tenant: str = TENANT) -> list[dict[str, Any]]:
    body: Any = events[0] if len(events) == 1 else {"events": events}
    response = platform.api_as(tenant, [EVENTS], "POST", "/v1/events", body=body)
    assert response.status == 201, response.json
    return response.json["items"]  # type: ignore[no-any-return]


def rollout_created(rollout_id: str = "r1") -> dict[str, Any]:
    return {"type": "rollout.created", "subject": f"rollout/{rollout_id}", "data": {"rollout_id": rollout_id}}


def device_enrolled(device_id: str = "d1") -> dict[str, Any]:
    return {"type": "device.enrolled", "subject": f"device/{device_id}", "data": {"device_id": device_id}}


def send_test(platform: Platform, webhook_id: str, tenant: str = TENANT) -> dict[str, Any]:
    response = platform.api_as(tenant, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/test")
    assert response.status == 200, response.json
    return response.json  # type: ignore[no-any-return]


def deliveries(platform: Platform, webhook_id: str, tenant: str = TENANT, **query: str) -> list[dict[str, Any]]:
    response = platform.api_as(tenant, [READ], "GET", f"/v1/webhooks/{webhook_id}/deliveries", query=query or None)
    assert response.status == 200, response.json
    return response.json["items"]  # type: ignore[no-any-return]

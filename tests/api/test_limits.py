"""Every limit from one source (meshanics.config.Limits): the deployment's limits are what the OpenAPI
document states and what requests meet, at the limit and one past it, on every /v1 route; the
fixed limits agree with the template and with the checks the core keeps for itself."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from meshanics.config import CONFIGURABLE, Limits, Settings
from meshanics_local.receiver import Receiver
from tests.api.support import (
    ADMIN,
    EVENTS,
    PUBLIC_URL,
    READ,
    TENANT,
    assert_error,
    create_webhook,
    receiver_webhook,
    rollout_created,
)
from tests.support.harness import Platform

# A deployment with other limits than the defaults (template parameters), the rotation overlap's
# default left as it is.
DEPLOYED = {"MAX_DESCRIPTION_LENGTH": "100", "MAX_FILTERS_PER_ENDPOINT": "3"}
LIMITS = Settings(env=DEPLOYED).limits
OPERATOR = "registries:operator"
FILTERS = ["rollout.created", "rollout.failed", "device.*", "artifact.*"]


@pytest.fixture
def deployed(configured: Any) -> Platform:
    """The functions started afresh (a cold start) in the environment of that deployment."""
    return configured(**DEPLOYED)  # type: ignore[no-any-return]


def _schema(spec: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    """A model property's constraints, looking inside `anyOf: [..., null]` for optional fields."""
    prop: dict[str, Any] = spec["components"]["schemas"][model]["properties"][field]
    for option in prop.get("anyOf", []):
        if option.get("type") != "null":
            return {**prop, **option}
    return prop


def _parameter(spec: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    operation = spec["paths"][path]["get"]
    param = next(p for p in operation["parameters"] if p["name"] == name)
    return _schema({"components": {"schemas": {"P": {"properties": {"p": param["schema"]}}}}}, "P", "p")


def test_the_settings_are_the_deployment() -> None:
    assert (LIMITS.max_description, LIMITS.max_filters) == (100, 3)
    assert LIMITS.max_rotation_overlap == Limits().max_rotation_overlap == 7 * 86_400
    assert Settings(env=DEPLOYED).rotation_overlap_seconds == 86_400


# -- the document states them ---------------------------------------------------------------------
def test_the_api_document_states_the_deployed_limits(deployed: Platform) -> None:
    spec = deployed.api("GET", "/v1/openapi.json", context={}).json
    for model in ("WebhookCreate", "WebhookUpdate"):
        assert _schema(spec, model, "description")["maxLength"] == 100, model
        assert _schema(spec, model, "events")["maxItems"] == 3, model
        assert _schema(spec, model, "url")["maxLength"] == LIMITS.max_url_length == 2048, model
    overlap = _schema(spec, "RotateSecret", "overlap_seconds")
    assert (overlap["minimum"], overlap["maximum"]) == (0, LIMITS.max_rotation_overlap)
    assert "default 86400" in overlap["description"]
    assert _schema(spec, "TestDelivery", "message")["maxLength"] == LIMITS.max_test_message
    assert _schema(spec, "ReplayFailed", "limit")["maximum"] == LIMITS.max_replay_batch
    assert _schema(spec, "EventBatch", "events")["maxItems"] == LIMITS.max_events_per_request == 100
    assert _schema(spec, "EventIn", "type")["maxLength"] == LIMITS.max_event_type_length
    assert _schema(spec, "EventIn", "subject")["maxLength"] == LIMITS.max_subject_length
    assert _schema(spec, "EventIn", "actor")["maxLength"] == LIMITS.max_actor_length
    for path in ("/v1/webhooks", "/v1/webhooks/{webhook_id}/deliveries"):
        assert _parameter(spec, path, "limit")["maximum"] == LIMITS.max_page_size, path
        assert _parameter(spec, path, "cursor")["maxLength"] == LIMITS.max_cursor_length, path
    assert _parameter(spec, "/v1/webhooks/{webhook_id}/deliveries", "event_type")["maxLength"] == 128
    create = spec["paths"]["/v1/webhooks"]["post"]
    assert f"At most {LIMITS.max_endpoints} endpoints per tenant" in create["description"]
    assert f"{LIMITS.max_request_bytes} bytes" in create["responses"]["413"]["description"]
    assert "Write 1-100 metadata events" in spec["paths"]["/v1/events"]["post"]["summary"]


def test_the_registry_routes_state_the_deployed_limits(deployed: Platform) -> None:
    spec = deployed.api("GET", "/v1/openapi.json", context={}).json  # the one document
    name = _schema(spec, "RegistryCreate", "name")
    assert name["maxLength"] == LIMITS.max_registry_name == 63
    assert name["pattern"] == "^[a-z0-9][a-z0-9-]{0,62}$"
    assert _schema(spec, "RegistryCreate", "upstream_url")["maxLength"] == LIMITS.max_url_length
    assert _schema(spec, "BasicCredentials", "username")["maxLength"] == LIMITS.max_username_length
    assert _schema(spec, "BasicCredentials", "password")["maxLength"] == LIMITS.max_password_length
    assert _schema(spec, "TokenCredentials", "token")["maxLength"] == LIMITS.max_token_length
    connect = spec["paths"]["/v1/registries"]["post"]
    assert f"At most {LIMITS.max_registries} registry connections per tenant" in connect["description"]


# -- requests meet them: at the limit they pass, past it they are refused -------------------------
def test_description_length(deployed: Platform) -> None:
    url = {"url": PUBLIC_URL}
    over = deployed.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body=url | {"description": "x" * 101})
    error = assert_error(over, 400, "invalid_request", "description")
    assert "100" in error["message"]
    created = create_webhook(deployed, **url, description="x" * 100)
    path = f"/v1/webhooks/{created['id']}"
    patch = deployed.api_as(TENANT, [ADMIN], "PATCH", path, body={"description": "y" * 101})
    assert_error(patch, 400, "invalid_request", "description")
    patched = deployed.api_as(TENANT, [ADMIN], "PATCH", path, body={"description": "y" * 100})
    assert patched.status == 200 and patched.json["description"] == "y" * 100


def test_filters_per_endpoint(deployed: Platform) -> None:
    over = deployed.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": PUBLIC_URL, "events": FILTERS})
    error = assert_error(over, 400, "invalid_request", "events")
    assert "at most 3" in error["message"]
    created = create_webhook(deployed, url=PUBLIC_URL, events=FILTERS[:3])
    assert set(created["events"]) == set(FILTERS[:3])
    patch = deployed.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{created['id']}", body={"events": FILTERS})
    assert_error(patch, 400, "invalid_request", "events")


def test_url_length(deployed: Platform) -> None:
    at_limit = PUBLIC_URL + "/" + "a" * (LIMITS.max_url_length - len(PUBLIC_URL) - 1)
    assert len(at_limit) == 2048
    over = deployed.api_as(TENANT, [ADMIN], "POST", "/v1/webhooks", body={"url": at_limit + "a"})
    assert_error(over, 400, "invalid_request", "url")
    assert create_webhook(deployed, url=at_limit)["url"] == at_limit


def test_rotation_overlap(deployed: Platform) -> None:
    webhook = create_webhook(deployed, url=PUBLIC_URL)
    path = f"/v1/webhooks/{webhook['id']}/rotate-secret"
    over = deployed.api_as(TENANT, [ADMIN], "POST", path, body={"overlap_seconds": 7 * 86_400 + 1})
    error = assert_error(over, 400, "invalid_request", "overlap_seconds")
    assert "604800" in error["message"]
    assert deployed.api_as(TENANT, [ADMIN], "POST", path, body={"overlap_seconds": 7 * 86_400}).status == 200
    # Without a choice, the deployment's default overlap (unchanged: 24 h).
    rotated = deployed.api_as(TENANT, [ADMIN], "POST", path)
    assert rotated.status == 200
    until = datetime.fromisoformat(rotated.json["secret_rotation_overlap_until"].replace("Z", "+00:00"))
    assert abs(until.timestamp() - (time.time() + 86_400)) < 120


def test_events_per_request(deployed: Platform) -> None:
    events = [rollout_created(f"r{i}") for i in range(LIMITS.max_events_per_request + 1)]
    over = deployed.api_as(TENANT, [EVENTS], "POST", "/v1/events", body={"events": events})
    error = assert_error(over, 400, "invalid_request", "events")
    assert "100" in error["message"]
    written = deployed.api_as(TENANT, [EVENTS], "POST", "/v1/events", body={"events": events[:-1]})
    assert written.status == 201 and len(written.json["items"]) == 100


def test_test_message_length(deployed: Platform, receiver: Receiver) -> None:
    webhook = receiver_webhook(deployed, receiver)
    path = f"/v1/webhooks/{webhook['id']}/test"
    over = deployed.api_as(TENANT, [ADMIN], "POST", path, body={"message": "m" * (LIMITS.max_test_message + 1)})
    assert_error(over, 400, "invalid_request", "message")
    sent = deployed.api_as(TENANT, [ADMIN], "POST", path, body={"message": "m" * LIMITS.max_test_message})
    assert sent.status == 200 and sent.json["status"] == "delivered", sent.json


def test_page_size_cursor_and_replay_batch(deployed: Platform) -> None:
    webhook = create_webhook(deployed, url=PUBLIC_URL)
    for path in ("/v1/webhooks", f"/v1/webhooks/{webhook['id']}/deliveries"):
        over = deployed.api_as(TENANT, [READ], "GET", path, query={"limit": "101"})
        assert_error(over, 400, "invalid_request", "limit")
        assert deployed.api_as(TENANT, [READ], "GET", path, query={"limit": "100"}).status == 200
        long_cursor = deployed.api_as(TENANT, [READ], "GET", path, query={"cursor": "c" * 2049})
        assert_error(long_cursor, 400, "invalid_request", "cursor")
        # At the limit the cursor passes validation; the core then finds it is not one of ours.
        assert_error(deployed.api_as(TENANT, [READ], "GET", path, query={"cursor": "c" * 2048}), 400, "invalid_cursor")
    replay = f"/v1/webhooks/{webhook['id']}/replay"
    assert_error(deployed.api_as(TENANT, [ADMIN], "POST", replay, body={"limit": 101}), 400, "invalid_request", "limit")
    assert deployed.api_as(TENANT, [ADMIN], "POST", replay, body={"limit": 100}).status == 202


def test_registry_limits(deployed: Platform) -> None:
    def connect(**fields: Any) -> Any:
        body = {
            "name": "corp",
            "upstream_url": "https://hooks.example.com",
            "credentials": {"type": "basic", "username": "u", "password": "p"},
        } | fields
        return deployed.api_as(TENANT, [OPERATOR], "POST", "/v1/registries", body=body)

    assert_error(connect(name="n" * 64), 400, "invalid_request", "name")
    assert connect(name="n" * 63).status == 201
    long_url = "https://hooks.example.com/" + "p" * (LIMITS.max_url_length - 25)
    assert_error(connect(name="url", upstream_url=long_url), 400, "invalid_request", "upstream_url")
    basic = {"type": "basic", "username": "u" * 257, "password": "p"}
    assert_error(connect(name="user", credentials=basic), 400, "invalid_request")
    token = {"type": "token", "token": "t" * (LIMITS.max_token_length + 1)}
    assert_error(connect(name="token", credentials=token), 400, "invalid_request")
    assert connect(name="token", credentials=token | {"token": "t" * LIMITS.max_token_length}).status == 201


# -- one source: the template and the core agree --------------------------------------------------
def test_configurable_limits_are_template_parameters() -> None:
    from meshanics_local.template import load
    from tests.conftest import ROOT

    tpl = load(ROOT / "template.yaml")
    variables = tpl["Globals"]["Function"]["Environment"]["Variables"]
    parameters = tpl["Parameters"]
    defaults = Limits()
    for field, (variable, low) in CONFIGURABLE.items():
        parameter = parameters[variables[variable]["Ref"]]
        assert int(parameter["Default"]) == getattr(defaults, field), field
        assert int(parameter["MinValue"]) >= low, field
    overlap = parameters[variables["SECRET_ROTATION_OVERLAP_SECONDS"]["Ref"]]
    assert int(overlap["MaxValue"]) == defaults.max_rotation_overlap


def test_fixed_limits_agree_with_the_cores_own_checks() -> None:
    from meshanics import audit
    from meshanics.registry import connections, oci

    defaults = Limits()
    assert defaults.max_subject_length == audit.MAX_SUBJECT
    assert defaults.max_actor_length == audit.MAX_ACTOR
    assert defaults.max_url_length == connections.MAX_URL
    assert oci.REGISTRY_NAME.fullmatch("n" * defaults.max_registry_name)
    assert not oci.REGISTRY_NAME.fullmatch("n" * (defaults.max_registry_name + 1))


def test_a_limit_below_its_floor_fails_the_cold_start() -> None:
    from meshanics.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="MAX_FILTERS_PER_ENDPOINT"):
        _ = Settings(env={"MAX_FILTERS_PER_ENDPOINT": "0"}).limits
    with pytest.raises(ConfigurationError, match="SECRET_ROTATION_OVERLAP_SECONDS"):
        _ = Settings(env={"SECRET_ROTATION_OVERLAP_SECONDS": str(7 * 86_400 + 1)}).rotation_overlap_seconds

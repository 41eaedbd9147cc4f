"""meshanics_api, the door both API functions share: scopes declared on the routes (checked before
validation and again by `caller()`, stated in the OpenAPI document), the one error shape for every
failure, the request guards ahead of Powertools, and the functions' logging. On a small resolver
of its own, so each rule is seen in isolation; the API and registry tests cover the real routes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field

from meshanics.errors import Conflict
from meshanics_api import ApiResolver, ApiRouter, Caller, api_logger, permits
from meshanics_api.guards import body_size, json_body_refusal
from meshanics_api.openapi import SCOPES_EXTENSION
from tests.api.support import ADMIN, READ
from tests.support.harness import ApiResponse
from tests.support.lambda_events import Context, api_event, authorizer_context

ROOT = Path(__file__).resolve().parents[2]
WRITE = "things:write"
SPECIAL = "things:special"


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=8)


def build() -> ApiResolver:
    app = ApiResolver(max_request_bytes=1024, error_notes={404: "No such thing"})

    @app.post("/v1/things", scopes=(WRITE,), status_code=201, responses=app.documented(201, 400, 413, 415))
    def create(body: Annotated[Thing, Body()]) -> dict[str, Any]:
        who = app.caller()
        return {"name": body.name, "tenant": who.tenant_id, "actor": who.actor}

    @app.get("/v1/things/<thing_id>", scopes=(READ,), responses=app.documented(200, 404))
    def get_thing(thing_id: str) -> dict[str, Any]:
        app.caller()
        return {"route": "/v1/things/<thing_id>"}

    @app.get("/v1/things/special", scopes=(SPECIAL,))
    def special() -> dict[str, Any]:
        app.caller()
        return {"route": "/v1/things/special"}

    @app.get("/v1/things/<thing_id>/parts/<part_id>", scopes=(READ, SPECIAL))
    def part(thing_id: str, part_id: str) -> dict[str, Any]:
        app.caller()
        return {"route": "/v1/things/<thing_id>/parts/<part_id>"}

    @app.get("/v1/undeclared")
    def undeclared() -> dict[str, Any]:
        app.caller()  # no scope declared: refused, whatever the key holds
        return {"route": "/v1/undeclared"}

    @app.get("/v1/own-checks")
    def own_checks() -> dict[str, Any]:
        who = app.authenticated()
        return {"scopes": sorted(who.scopes)}

    @app.get("/v1/conflict", scopes=(READ,))
    def conflict() -> dict[str, Any]:
        app.caller()
        raise Conflict("it changed meanwhile", field="name")

    @app.get("/v1/broken", scopes=(READ,))
    def broken() -> dict[str, Any]:
        app.caller()
        raise RuntimeError("a bug")

    app.include_router(parts_router())
    return app


def parts_router() -> ApiRouter:
    """Routes in another module: declared on a router, included into the resolver."""
    router = ApiRouter(max_request_bytes=1024, error_notes={404: "No such part"})

    @router.post("/v1/parts", scopes=(WRITE,), status_code=201, responses=router.documented(201, 400, 413, 415))
    def create_part(body: Annotated[Thing, Body()]) -> dict[str, Any]:
        who = router.caller()
        return {"part": body.name, "tenant": who.tenant_id}

    @router.get("/v1/parts/<part_id>", scopes=(READ, SPECIAL), responses=router.documented(200, 404))
    def get_part(part_id: str) -> dict[str, Any]:
        router.caller()
        return {"route": "/v1/parts/<part_id>", "part": part_id}

    @router.get("/v1/parts-undeclared")
    def undeclared_part() -> dict[str, Any]:
        router.caller()
        return {"route": "/v1/parts-undeclared"}

    return router


@pytest.fixture(scope="module")
def app() -> ApiResolver:
    return build()


def call(
    app: ApiResolver,
    method: str,
    path: str,
    scopes: list[str] | None = None,
    *,
    body: Any = None,
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> ApiResponse:
    """`scopes=None`: no authorizer context at all (no tenant)."""
    authorizer = authorizer_context("acme", scopes) if scopes is not None else {}
    event = api_event(method, path, body=body, raw_body=raw_body, headers=headers, authorizer=authorizer)
    result = app.resolve(event, Context("door"))
    headers_out = {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}
    return ApiResponse(result["statusCode"], headers_out | (result.get("headers") or {}), result["body"].encode())


def error_of(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    body = response.json
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


# -- scopes ---------------------------------------------------------------------------------------
def test_a_route_opens_to_its_declared_scope(app: ApiResolver) -> None:
    created = call(app, "POST", "/v1/things", [WRITE], body={"name": "x"})
    assert created.status == 201
    assert created.json == {"name": "x", "tenant": "acme", "actor": "apikey:0123456789abcdef"}
    error = error_of(call(app, "POST", "/v1/things", [READ, ADMIN], body={"name": "x"}), 403, "missing_scope")
    assert WRITE in error["message"]


def test_the_scope_is_checked_before_the_body_is_validated(app: ApiResolver) -> None:
    for body in ({"name": 5}, {"other": 1}, {"name": ""}):
        error_of(call(app, "POST", "/v1/things", [READ], body=body), 403, "missing_scope")
        error_of(call(app, "POST", "/v1/things", [WRITE], body=body), 400, "invalid_request")
    error_of(call(app, "POST", "/v1/things", [READ], raw_body=b"{not json"), 403, "missing_scope")
    # Without a tenant (no authorizer in front): 401, before validation too.
    error_of(call(app, "POST", "/v1/things", None, body={"name": 5}), 401, "unauthorized")


def test_implied_and_alternative_scopes(app: ApiResolver) -> None:
    assert call(app, "GET", "/v1/things/t1", [READ]).status == 200
    assert call(app, "GET", "/v1/things/t1", [ADMIN]).status == 200  # admin includes read
    error_of(call(app, "GET", "/v1/things/t1", [WRITE]), 403, "missing_scope")
    for scopes in ([READ], [ADMIN], [SPECIAL]):  # any one of the declared scopes
        assert call(app, "GET", "/v1/things/t1/parts/p1", scopes).status == 200, scopes
    error = error_of(call(app, "GET", "/v1/things/t1/parts/p1", [WRITE]), 403, "missing_scope")
    assert READ in error["message"] and SPECIAL in error["message"]
    assert permits(frozenset({ADMIN}), (READ,)) and not permits(frozenset({READ}), (ADMIN,))
    assert Caller("acme", "k", frozenset({ADMIN})).require(READ).actor == "apikey:k"


def test_the_registry_matches_routes_as_powertools_does(app: ApiResolver) -> None:
    """Static routes before dynamic ones, trailing slashes ignored: the scope checked is the scope of
    the route that runs."""
    everything = [READ, ADMIN, WRITE, SPECIAL]
    paths = ("/v1/things/special", "/v1/things/special/", "/v1/things/t1", "/v1/things/t1/", "/v1/things/a/parts/b")
    for path in paths:
        ran = call(app, "GET", path, everything).json["route"]
        declared = app.scopes.route("GET", path)
        assert declared is not None and declared.rule == ran, path
    # The static route needs its own scope, though the dynamic one would take READ.
    error_of(call(app, "GET", "/v1/things/special", [READ]), 403, "missing_scope")
    assert call(app, "GET", "/v1/things/special", [SPECIAL]).status == 200
    assert app.scopes.required("GET", "/v1/things/<thing_id>") == (READ,)
    assert app.scopes.required("GET", "/v1/undeclared") is None


def test_a_route_without_a_declared_scope_fails_closed(app: ApiResolver) -> None:
    for scopes in ([READ], [READ, ADMIN, WRITE, SPECIAL]):
        error = error_of(call(app, "GET", "/v1/undeclared", scopes), 403, "missing_scope")
        assert "declares no scope" in error["message"]
    error_of(call(app, "GET", "/v1/undeclared", None), 401, "unauthorized")
    # A route that checks its own scopes asks only who the caller is.
    assert call(app, "GET", "/v1/own-checks", [SPECIAL]).json == {"scopes": [SPECIAL]}
    error_of(call(app, "GET", "/v1/own-checks", None), 401, "unauthorized")


def test_empty_scopes_are_refused_at_declaration() -> None:
    app = ApiResolver(max_request_bytes=1024)
    with pytest.raises(ValueError, match="declare at least one"):
        app.get("/v1/nobody", scopes=())
    with pytest.raises(ValueError, match="declare at least one"):
        ApiRouter(max_request_bytes=1024).get("/v1/nobody", scopes=())


def test_a_routers_routes_are_checked_as_the_resolvers_own(app: ApiResolver) -> None:
    created = call(app, "POST", "/v1/parts", [WRITE], body={"name": "p"})
    assert created.status == 201 and created.json == {"part": "p", "tenant": "acme"}
    for body in ({"name": 5}, {"other": 1}):  # the scope first, then the body
        error_of(call(app, "POST", "/v1/parts", [READ], body=body), 403, "missing_scope")
        error_of(call(app, "POST", "/v1/parts", [WRITE], body=body), 400, "invalid_request")
    error_of(call(app, "POST", "/v1/parts", None, body={"name": "p"}), 401, "unauthorized")
    for scopes in ([READ], [ADMIN], [SPECIAL]):
        assert call(app, "GET", "/v1/parts/p1", scopes).json == {"route": "/v1/parts/<part_id>", "part": "p1"}
    error_of(call(app, "GET", "/v1/parts/p1", [WRITE]), 403, "missing_scope")
    assert app.scopes.required("GET", "/v1/parts/<part_id>") == (READ, SPECIAL)
    error = error_of(call(app, "GET", "/v1/parts-undeclared", [READ, WRITE, SPECIAL]), 403, "missing_scope")
    assert "declares no scope" in error["message"]


def test_a_router_is_documented_in_the_resolvers_document(app: ApiResolver) -> None:
    spec = json.loads(app.openapi_document(title="door", version="1"))
    create = spec["paths"]["/v1/parts"]["post"]
    assert create[SCOPES_EXTENSION] == [WRITE]
    assert create["description"].startswith("Requires the `things:write` scope")
    assert {"201", "400", "401", "403", "413", "415"} == set(create["responses"])
    get_part = spec["paths"]["/v1/parts/{part_id}"]["get"]
    assert get_part[SCOPES_EXTENSION] == [READ, SPECIAL]
    assert get_part["responses"]["404"]["description"] == "No such part"  # the router's words
    assert spec["paths"]["/v1/things/{thing_id}"]["get"]["responses"]["404"]["description"] == "No such thing"


def test_a_router_serves_only_once_included_and_without_a_prefix() -> None:
    router = parts_router()
    with pytest.raises(RuntimeError, match="include this router"):
        router.caller()
    with pytest.raises(ValueError, match="without a prefix"):
        ApiResolver(max_request_bytes=1024).include_router(router, prefix="/v2")


# -- the one error shape --------------------------------------------------------------------------
class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_failure_answers_the_one_shape(app: ApiResolver) -> None:
    error = error_of(call(app, "GET", "/v1/conflict", [READ]), 409, "conflict")
    assert error == {"code": "conflict", "message": "it changed meanwhile", "field": "name"}
    error_of(call(app, "GET", "/v1/nothing-here", [READ]), 404, "not_found")
    error_of(call(app, "POST", "/v1/things", [WRITE], raw_body=b"{"), 400, "invalid_json")
    error_of(call(app, "POST", "/v1/things", [WRITE], raw_body=b'{"name": "\xff"}'), 400, "invalid_json")
    missing = error_of(call(app, "POST", "/v1/things", [WRITE], body={}), 400, "invalid_request")
    assert missing == {"code": "invalid_request", "message": "name: field required", "field": "name"}
    unknown = error_of(call(app, "POST", "/v1/things", [WRITE], body={"name": "x", "x": 1}), 400, "invalid_request")
    assert unknown["message"] == "x: unknown field"
    kept = Kept()
    logging.getLogger("meshanics_api").addHandler(kept)
    try:
        error = error_of(call(app, "GET", "/v1/broken", [READ]), 500, "internal_error")
    finally:
        logging.getLogger("meshanics_api").removeHandler(kept)
    assert "a bug" not in json.dumps(error)  # logged, never answered
    assert any(r.name == "meshanics_api" and r.exc_info for r in kept.records)


# -- request guards, ahead of Powertools ----------------------------------------------------------
def test_bodies_are_refused_before_parsing(app: ApiResolver) -> None:
    error = error_of(call(app, "POST", "/v1/things", [WRITE], raw_body=b"{" * 1025), 413, "request_too_large")
    assert "1024" in error["message"]
    assert call(app, "POST", "/v1/things", [WRITE], raw_body=b'{"name":"x"}' + b" " * 1012).status == 201
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    error_of(call(app, "POST", "/v1/things", [WRITE], raw_body=b"name=x", headers=form), 415, "unsupported_media_type")
    error_of(call(app, "POST", "/v1/things", [WRITE], body=[{"name": "x"}]), 400, "invalid_request")
    deep = b'{"name": ' + b"[" * 100 + b"]" * 100 + b"}"
    error_of(call(app, "POST", "/v1/things", [WRITE], raw_body=deep), 400, "invalid_json")
    upper = {"Content-Type": "Application/JSON; Charset=UTF-8"}
    assert call(app, "POST", "/v1/things", [WRITE], body={"name": "x"}, headers=upper).status == 201


def test_guards_on_raw_events() -> None:
    assert body_size({"body": "é"}) == 2
    assert body_size({"body": "aGVsbG8=", "isBase64Encoded": True}) == 5
    assert body_size({"body": "aGVsbG8", "isBase64Encoded": True}) == 5  # padding missing: estimated
    assert json_body_refusal({"body": '{"a": 1}', "headers": {}}) is None
    assert json_body_refusal({"body": "", "headers": {"content-type": "text/plain"}}) is None  # no body, no rule
    refused = json_body_refusal({"body": "[]", "headers": {}})
    assert refused is not None and json.loads(refused["body"])["error"]["code"] == "invalid_request"
    surrogate = json_body_refusal({"body": '{"a": "\\ud800"}', "headers": {}})
    assert surrogate is not None and surrogate["statusCode"] == 400


# -- the OpenAPI document -------------------------------------------------------------------------
def test_the_document_states_each_routes_scopes(app: ApiResolver) -> None:
    spec = json.loads(app.openapi_document(title="door", version="1"))
    create = spec["paths"]["/v1/things"]["post"]
    assert create[SCOPES_EXTENSION] == [WRITE]
    assert create["description"].startswith(f"Requires the `{WRITE}` scope")
    assert {"201", "400", "401", "403", "413", "415"} == set(create["responses"])  # no default 422
    assert "1024 bytes" in create["responses"]["413"]["description"]
    get_thing = spec["paths"]["/v1/things/{thing_id}"]["get"]
    assert get_thing[SCOPES_EXTENSION] == [READ]
    assert f"`{ADMIN}` includes `{READ}`" in get_thing["description"]
    assert get_thing["responses"]["404"]["description"] == "No such thing"
    part = spec["paths"]["/v1/things/{thing_id}/parts/{part_id}"]["get"]
    assert part[SCOPES_EXTENSION] == [READ, SPECIAL] and "one of the scopes" in part["description"]
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for item in spec["paths"].values():
        for operation in item.values():
            for status in ("401", "403"):
                if SCOPES_EXTENSION in operation:
                    assert operation["responses"][status]["content"]["application/json"]["schema"] == error_ref
    assert SCOPES_EXTENSION not in spec["paths"]["/v1/undeclared"]["get"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


ENV = {
    "AUDIT_TABLE": "audit",
    "INTEGRATIONS_TABLE": "integrations",
    "DELIVERY_QUEUE_URL": "http://127.0.0.1:1/q",
    "DELIVERY_DLQ_URL": "http://127.0.0.1:1/dlq",
    "SEALING_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/k",
    "ARTIFACT_CACHE_BUCKET": "bucket",
}


@pytest.fixture
def configured_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Enough configuration for the functions to start (no AWS call is made at import)."""
    from meshanics import services

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    services.reset()
    yield
    services.reset()


@pytest.mark.usefixtures("configured_env")
def test_every_v1_route_declares_its_scopes() -> None:
    """The API function declares every /v1 route's scopes in its decorator, the routes of its
    registry router included (the document says so); the registry function serves only /v2."""
    from tests.conftest import load_handler

    module = load_handler("api")
    spec = module.app.get_openapi_schema().model_dump(mode="json", by_alias=True, exclude_none=True)
    operations = [(path, op) for path, item in spec["paths"].items() for op in item.values()]
    assert operations and any(path.startswith("/v1/registries") for path, _ in operations)
    for path, operation in operations:
        assert path.startswith("/v1/"), path
        assert operation.get(SCOPES_EXTENSION), path
        assert {"401", "403"} <= set(operation["responses"]), path
    registry = load_handler("registry")
    assert registry.app.get_openapi_schema().paths in (None, {})
    assert {route.path for route in registry.app._static_routes + registry.app._dynamic_routes} == {"/v2", "/v2/.+"}


# -- cold start and logging -----------------------------------------------------------------------
@pytest.mark.parametrize("function", ["api", "registry"])
def test_the_functions_import_no_openapi_models(function: str) -> None:
    """The OpenAPI models and the docs page are built on request, never at import (cold start)."""
    path = os.pathsep.join([str(ROOT / "functions" / function), str(ROOT / "layers" / "core")])
    env = {**os.environ, **ENV, "PYTHONPATH": path}
    program = (
        "import sys, app; "
        "print([m for m in sys.modules if m.endswith(('openapi.models', 'swagger_ui.html')) or m == 'aws_xray_sdk'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT / "functions" / function, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_core_and_the_door_log_through_the_functions_logger() -> None:
    logger = api_logger()
    for name in ("meshanics", "meshanics_api"):
        library = logging.getLogger(name)
        assert library.handlers == logger.handlers and not library.propagate, name
    # Loggers made later (a module imported after the set-up) write through them.
    assert logging.getLogger("meshanics.some_later_module").parent is logging.getLogger("meshanics")

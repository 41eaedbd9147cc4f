"""The REST API read from the translated template: routes, matching, authorizers, gateway responses."""

from __future__ import annotations

import json

import pytest

from meshanics_local.apigateway import RestApi, Route, evaluate, render
from tests.local.conftest import Wiring


def test_the_api_is_read_from_the_template(wiring: Wiring) -> None:
    api = wiring.api
    assert api.stage == "dev"
    assert api.binary_media_types == ("*/*",)
    authorizer = api.authorizers["ApiKeyAuthorizer"]
    assert authorizer.function == "AuthorizerFunction"
    assert authorizer.kind == "REQUEST"
    assert authorizer.identity_sources == ("method.request.header.Authorization",)
    assert authorizer.ttl_seconds == 30
    assert {"UNAUTHORIZED", "ACCESS_DENIED", "MISSING_AUTHENTICATION_TOKEN"} <= set(api.gateway_responses)


@pytest.mark.parametrize(
    ("method", "path", "resource", "params"),
    [
        ("GET", "/v1/webhooks", "/v1/webhooks", {}),
        ("POST", "/v1/webhooks/", "/v1/webhooks", {}),
        ("GET", "/v1/webhooks/ep_1", "/v1/webhooks/{id}", {"id": "ep_1"}),
        ("POST", "/v1/webhooks/ep_1/test", "/v1/webhooks/{id}/test", {"id": "ep_1"}),
        ("GET", "/v2", "/v2", {}),
        ("GET", "/v2/", "/v2", {}),
        ("HEAD", "/v2/acme/agent/manifests/v1", "/v2/{proxy+}", {"proxy": "acme/agent/manifests/v1"}),
        ("DELETE", "/v2/x", "/v2/{proxy+}", {"proxy": "x"}),
    ],
)
def test_matching(wiring: Wiring, method: str, path: str, resource: str, params: dict[str, str]) -> None:
    match = wiring.api.match(method, path)
    assert match is not None
    assert match.route.resource_path == resource
    assert match.path_parameters == params


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v1/webhooks"), ("GET", "/"), ("GET", "/nope"), ("GET", "/v1/webhooks/a/b/c"), ("GET", "/v1")],
)
def test_no_route(wiring: Wiring, method: str, path: str) -> None:
    assert wiring.api.match(method, path) is None


def test_static_beats_param_beats_greedy() -> None:
    def route(path: str) -> dict[str, Route]:
        return {"GET": Route(path, "GET", "F")}

    api = RestApi("Api", "id", "dev", {p: route(p) for p in ("/a/b", "/a/{x}", "/a/{x}/c", "/a/{rest+}")})
    assert api.resource_for("/a/b") == ("/a/b", {})
    assert api.resource_for("/a/z") == ("/a/{x}", {"x": "z"})
    assert api.resource_for("/a/b/c") == ("/a/{x}/c", {"x": "b"})  # /a/b has no child c: the param route
    assert api.resource_for("/a/b/d/e") == ("/a/{rest+}", {"rest": "b/d/e"})


def test_security_per_method(wiring: Wiring) -> None:
    docs = wiring.api.match("GET", "/v1/docs")
    spec = wiring.api.match("GET", "/v1/openapi.json")
    hooks = wiring.api.match("GET", "/v1/webhooks")
    pull = wiring.api.match("GET", "/v2/x/manifests/y")
    assert docs and spec and hooks and pull
    assert docs.route.authorizer is None and spec.route.authorizer is None
    assert hooks.route.authorizer == "ApiKeyAuthorizer" == pull.route.authorizer
    assert hooks.route.function == "ApiFunction"
    assert pull.route.function == "RegistryFunction"
    assert pull.route.method == "ANY"


@pytest.mark.parametrize(
    ("content_type", "patterns", "binary"),
    [
        ("application/json", ("*/*",), True),
        (None, ("*/*",), True),
        ("image/png", ("image/*",), True),
        ("application/json; charset=utf-8", ("application/octet-stream",), False),
        (None, ("image/png",), False),
    ],
)
def test_binary_media_types(content_type: str | None, patterns: tuple[str, ...], binary: bool) -> None:
    assert RestApi("Api", "id", "dev", {}, binary_media_types=patterns).is_binary(content_type) is binary


# ------------------------------------------------------------------------------- gateway responses
def test_configured_response_with_quoted_headers(wiring: Wiring) -> None:
    rendered = render("UNAUTHORIZED", wiring.api.gateway_responses)
    assert rendered.status == 401
    assert rendered.header("WWW-Authenticate") == 'Basic realm="meshanics", charset="UTF-8"'
    assert rendered.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert json.loads(rendered.body)["error"]["code"] == "unauthorized"


def test_status_code_override(wiring: Wiring) -> None:
    assert render("MISSING_AUTHENTICATION_TOKEN", wiring.api.gateway_responses).status == 404
    assert render("ACCESS_DENIED", wiring.api.gateway_responses).status == 401


def test_fallback_to_default_4xx_with_the_message_as_a_json_string(wiring: Wiring) -> None:
    rendered = render("REQUEST_TOO_LARGE", wiring.api.gateway_responses, message='too "big"')
    assert rendered.status == 413
    assert json.loads(rendered.body) == {"error": {"code": "bad_request", "message": 'too "big"'}}
    assert rendered.header("x-amzn-ErrorType") == "RequestTooLargeException"


def test_fallback_to_default_5xx(wiring: Wiring) -> None:
    rendered = render("AUTHORIZER_FAILURE", wiring.api.gateway_responses)
    assert rendered.status == 500
    assert json.loads(rendered.body)["error"]["code"] == "unavailable"


def test_api_gateway_defaults_without_configuration() -> None:
    rendered = render("MISSING_AUTHENTICATION_TOKEN", {})
    assert rendered.status == 403
    assert json.loads(rendered.body) == {"message": "Missing Authentication Token"}


def test_default_status_override_and_request_header_sources() -> None:
    configured = {
        "DEFAULT_4XX": {"statusCode": "418", "responseParameters": {}},
        "THROTTLED": {
            "responseParameters": {"gatewayresponse.header.X-Echo": "method.request.header.x-request"},
            "responseTemplates": {
                "application/json": '{"id":"$context.requestId","type":"$context.error.responseType"}'
            },
        },
    }
    assert render("BAD_REQUEST_BODY", configured).status == 418
    rendered = render("THROTTLED", configured, request_headers={"X-Request": "abc"}, context={"requestId": "r-1"})
    assert rendered.status == 429
    assert rendered.header("X-Echo") == "abc"
    assert json.loads(rendered.body) == {"id": "r-1", "type": "THROTTLED"}


# ------------------------------------------------------------------------------- authorizer policies
ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/GET/v1/webhooks"


def policy(effect: str, resource: str | list[str], action: str = "execute-api:Invoke") -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": action, "Resource": resource}]}


@pytest.mark.parametrize(
    ("document", "verdict"),
    [
        (policy("Allow", ARN), "allow"),
        (policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/*/*"), "allow"),
        (policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/GET/*"), "allow"),
        (policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*"), "implicit"),
        (policy("Allow", ARN, action="execute-api:*"), "allow"),
        (policy("Allow", ARN, action="s3:GetObject"), "implicit"),
        (policy("Deny", ARN), "deny"),
        (
            {"Statement": [policy("Allow", "*")["Statement"][0], policy("Deny", ARN)["Statement"][0]]},  # type: ignore[index]
            "deny",
        ),
        ({"Statement": []}, "implicit"),
    ],
)
def test_policy_evaluation(document: dict[str, object], verdict: str) -> None:
    assert evaluate(document, ARN) == verdict

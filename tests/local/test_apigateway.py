"""The API front over HTTP, with scripted functions in place of the workers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from meshanics_local.apigateway import ApiFront, proxy_response
from meshanics_local.workers import Invocation
from tests.local.conftest import Wiring

Script = Callable[[dict[str, Any]], Invocation]


def ok(result: Any) -> Invocation:
    return Invocation("req", result=result)


def fails(message: str, kind: str = "Exception") -> Invocation:
    return Invocation("req", error={"errorMessage": message, "errorType": kind})


def allow(event: dict[str, Any]) -> Invocation:
    arn = event["methodArn"]
    prefix, _, rest = arn.partition("/")
    return ok(
        {
            "principalId": "demo/k1",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow",
                        "Resource": f"{prefix}/{rest.split('/')[0]}/*/*",
                    }
                ],
            },
            "context": {"tenant_id": "demo", "scopes": "integrations:read"},
        }
    )


@dataclass
class Functions:
    scripts: dict[str, Script] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, function: str, event: dict[str, Any], timeout: float) -> Invocation:
        self.calls.append((function, event))
        return self.scripts[function](event)

    def events(self, function: str) -> list[dict[str, Any]]:
        return [e for f, e in self.calls if f == function]


@pytest.fixture
def functions() -> Functions:
    return Functions(
        {
            "AuthorizerFunction": allow,
            "ApiFunction": lambda e: ok({"statusCode": 200, "body": json.dumps({"path": e["path"]})}),
            "RegistryFunction": lambda e: ok(
                {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hi"}
            ),
        }
    )


@pytest.fixture
def front(wiring: Wiring, functions: Functions) -> Iterator[ApiFront]:
    front = ApiFront(
        wiring.api,
        functions,
        port=0,
        region="us-east-1",
        function_timeouts={k: s.timeout for k, s in wiring.functions.items()},
    )
    front.start()
    yield front
    front.stop()


KEY = {"Authorization": "Bearer msk_k"}


def test_no_route_is_the_missing_authentication_token_response(front: ApiFront, functions: Functions) -> None:
    response = requests.get(f"{front.url}/nope", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert requests.put(f"{front.url}/v1/webhooks", timeout=5).status_code == 404
    assert functions.calls == []


def test_missing_identity_source_is_401_without_invoking_the_authorizer(front: ApiFront, functions: Functions) -> None:
    response = requests.get(f"{front.url}/v1/webhooks", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert functions.calls == []


def test_authorizer_unauthorized_other_errors_and_bad_results(front: ApiFront, functions: Functions) -> None:
    functions.scripts["AuthorizerFunction"] = lambda e: fails("Unauthorized")
    assert requests.get(f"{front.url}/v1/webhooks", headers=KEY, timeout=5).status_code == 401
    functions.scripts["AuthorizerFunction"] = lambda e: fails("boom", "KeyError")
    failed = requests.get(f"{front.url}/v1/webhooks", headers=KEY, timeout=5)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "unavailable"
    functions.scripts["AuthorizerFunction"] = lambda e: ok({"principalId": "x"})
    assert requests.get(f"{front.url}/v1/webhooks", headers=KEY, timeout=5).status_code == 500
    functions.scripts["AuthorizerFunction"] = lambda e: ok(
        {"principalId": "x", "policyDocument": {"Statement": []}, "context": {"nested": {"no": 1}}}
    )
    assert requests.get(f"{front.url}/v1/webhooks", headers=KEY, timeout=5).status_code == 500
    assert functions.events("ApiFunction") == []


def test_a_policy_that_does_not_allow_is_access_denied(front: ApiFront, functions: Functions) -> None:
    functions.scripts["AuthorizerFunction"] = lambda e: ok(
        {
            "principalId": "x",
            "policyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:other/*"}]
            },
        }
    )
    response = requests.get(f"{front.url}/v1/webhooks", headers=KEY, timeout=5)
    assert response.status_code == 401  # the template maps ACCESS_DENIED to 401
    assert response.json()["error"]["message"] == "the API key is not valid"
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"


def test_authorized_request_event_and_cache(front: ApiFront, functions: Functions) -> None:
    first = requests.get(f"{front.url}/v1/webhooks?limit=5", headers=KEY, timeout=5)
    second = requests.get(f"{front.url}/v1/webhooks/ep_1", headers=KEY, timeout=5)
    assert first.status_code == second.status_code == 200
    assert second.json() == {"path": "/v1/webhooks/ep_1"}
    assert len(functions.events("AuthorizerFunction")) == 1  # the result is cached per Authorization value
    authorizer_event = functions.events("AuthorizerFunction")[0]
    assert authorizer_event["type"] == "REQUEST"
    assert authorizer_event["methodArn"].endswith(f":{front.api.api_id}/dev/GET/v1/webhooks")
    assert authorizer_event["headers"]["Authorization"] == "Bearer msk_k"
    event = functions.events("ApiFunction")[1]
    assert event["resource"] == "/v1/webhooks/{id}"
    assert event["pathParameters"] == {"id": "ep_1"}
    context = event["requestContext"]
    assert context["authorizer"]["tenant_id"] == "demo"
    assert context["authorizer"]["principalId"] == "demo/k1"
    assert context["stage"] == "dev" and context["apiId"] == front.api.api_id
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    requests.get(f"{front.url}/v1/webhooks", headers={"Authorization": "Bearer other"}, timeout=5)
    assert len(functions.events("AuthorizerFunction")) == 2


def test_routes_without_authorizer_do_not_invoke_it(front: ApiFront, functions: Functions) -> None:
    assert requests.get(f"{front.url}/v1/docs", timeout=5).status_code == 200
    assert functions.events("AuthorizerFunction") == []
    assert "authorizer" not in functions.events("ApiFunction")[0]["requestContext"]


def test_request_bodies_are_base64_with_binary_media_type_any(front: ApiFront, functions: Functions) -> None:
    requests.post(f"{front.url}/v1/webhooks", headers=KEY, json={"url": "https://x"}, timeout=5)
    event = functions.events("ApiFunction")[0]
    assert event["isBase64Encoded"] is True
    assert json.loads(base64.b64decode(event["body"])) == {"url": "https://x"}


def test_function_errors_and_malformed_results_are_502(front: ApiFront, functions: Functions) -> None:
    for script in (
        lambda e: fails("boom"),
        lambda e: ok({"body": "no status"}),
        lambda e: ok({"statusCode": 200, "body": {"not": "a string"}}),
        lambda e: ok("just a string"),
    ):
        functions.scripts["ApiFunction"] = script
        response = requests.get(f"{front.url}/v1/docs", timeout=5)
        assert response.status_code == 502
        assert response.json() == {"message": "Internal server error"}


def test_response_headers_base64_bodies_head_and_redirects(front: ApiFront, functions: Functions) -> None:
    blob = bytes(range(256)) * 4
    functions.scripts["RegistryFunction"] = lambda e: ok(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream", "Docker-Content-Digest": "sha256:x"},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "body": base64.b64encode(blob).decode(),
            "isBase64Encoded": True,
        }
    )
    response = requests.get(f"{front.url}/v2/acme/agent/blobs/sha256:x", headers=KEY, timeout=5)
    assert response.status_code == 200 and response.content == blob
    assert response.headers["Docker-Content-Digest"] == "sha256:x"
    assert response.headers["X-Multi"] == "a, b"

    functions.scripts["RegistryFunction"] = lambda e: ok(
        {"statusCode": 200, "headers": {"Content-Length": "1234", "Docker-Content-Digest": "sha256:y"}, "body": ""}
    )
    head = requests.head(f"{front.url}/v2/acme/agent/manifests/v1", headers=KEY, timeout=5)
    assert head.status_code == 200 and head.headers["Content-Length"] == "1234" and head.content == b""
    assert functions.events("RegistryFunction")[-1]["httpMethod"] == "HEAD"

    functions.scripts["RegistryFunction"] = lambda e: ok(
        {"statusCode": 307, "headers": {"Location": "http://127.0.0.1:1/presigned"}, "body": None}
    )
    redirect = requests.get(f"{front.url}/v2/a/blobs/sha256:z", headers=KEY, timeout=5, allow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["Location"] == "http://127.0.0.1:1/presigned"


def test_headers_api_gateway_remaps(front: ApiFront, functions: Functions) -> None:
    functions.scripts["RegistryFunction"] = lambda e: ok(
        {"statusCode": 401, "headers": {"WWW-Authenticate": "Bearer realm=x"}, "body": "{}"}
    )
    response = requests.get(f"{front.url}/v2/", headers=KEY, timeout=5)
    assert response.status_code == 401
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["x-amzn-Remapped-WWW-Authenticate"] == "Bearer realm=x"


def test_oversized_requests_are_refused(front: ApiFront, functions: Functions) -> None:
    response = requests.post(f"{front.url}/v1/webhooks", headers=KEY, data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    assert response.status_code == 413
    assert functions.calls == []


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"statusCode": "201", "body": "x"}, (201, b"x")),
        ({"statusCode": 204}, (204, b"")),
        ({"statusCode": 200, "body": "!!", "isBase64Encoded": True}, None),
        ({"statusCode": 99}, None),
        ({"statusCode": True}, None),
        ({"statusCode": 200, "headers": {"a": ["list"]}}, None),
    ],
)
def test_proxy_response_validation(result: dict[str, Any], expected: tuple[int, bytes] | None) -> None:
    response = proxy_response(result)
    assert (None if response is None else (response.status, response.body)) == expected

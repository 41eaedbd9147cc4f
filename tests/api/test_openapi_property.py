"""A property-based run of the generated OpenAPI document (schemathesis): for every operation, valid
and invalid requests generated from the document, sent through a loopback "API Gateway" (the real
authorizer, then the API function). No response may be a 5xx, and every one must be documented:
its status code, content type, headers and body schema.

Bounded and reproducible: EXAMPLES per operation and mode (env API_FUZZ_EXAMPLES), derandomized
unless API_FUZZ_RANDOM is set (for longer exploratory runs).
A failure prints the failing checks, the response and a curl command for the request.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import DOCUMENTED, OPERATOR, RECENTLY, SCOPES, TENANT, UPSTREAM, Route, receiver_webhook
from tests.support.harness import Platform

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "20"))
PUBLIC = frozenset({"/v1/openapi.json", "/v1/docs"})  # no authorizer on these routes (template.yaml)
UNAUTHORIZED = b'{"error":{"code":"unauthorized","message":"a valid API key is required"}}'

# Which checks, and why not the others: positive_data_acceptance expects a 2xx for every
# schema-valid request, but the schema cannot express the egress rules, the catalog of event
# types or which ids exist (each a documented 400/404 here).
POSITIVE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE = [*POSITIVE, negative_data_rejection]

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            # Unknown query parameters are ignored, as is usual (and harmless: none selects a tenant,
            # see test_access); unknown body fields are refused, which the document says.
            "allow-extra-parameters": False,
            # The key is sent by each call below; the authorizer is tested in test_access.
            "with-security-parameters": False,
        }
    }
)


class Gateway:
    """API Gateway on a loopback port: the authorizer on the Authorization header as sent (a refusal
    is the gateway's 401), then the API function with the authorizer's context."""

    def __init__(self, platform: Platform) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                status, headers, body = gateway.forward(self)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.platform = platform
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else None
        headers = dict(request.headers.items())
        if split.path in PUBLIC:
            context: dict[str, Any] | None = {}
        else:
            context = self.platform.authorize(request.headers.get("Authorization"))
        if context is None:
            return 401, {"Content-Type": "application/json"}, UNAUTHORIZED
        response = self.platform.api(
            request.command,
            split.path,
            raw_body=raw,
            query=dict(parse_qsl(split.query, keep_blank_values=True)) or None,
            headers=headers,
            context=context,
        )
        return response.status, response.headers, response.body

    def __enter__(self) -> Gateway:
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(platform: Platform) -> Iterator[Gateway]:
    with Gateway(platform) as running:
        yield running


@pytest.fixture
def known(platform: Platform, receiver: Receiver) -> dict[str, list[str]]:
    """Ids that exist, so generated requests reach past the 404 as well as being refused by it."""
    webhooks = [receiver_webhook(platform, receiver, events=["vulnerability.resolved"])["id"] for _ in range(3)]
    deliveries = []
    for behaviour in (Behaviour(status=200), Behaviour(status=500)):
        receiver.behaviours = [behaviour]
        sent = platform.api_as(TENANT, ["integrations:admin"], "POST", f"/v1/webhooks/{webhooks[0]}/test")
        deliveries.append(sent.json["delivery_id"])
    receiver.behaviours = []
    registries = []
    for name in ("known-1", "known-2"):
        body = {"name": name, "upstream_url": "https://hooks.example.com", "credentials": UPSTREAM}
        connected = platform.api_as(TENANT, [OPERATOR], "POST", "/v1/registries", body=body)
        assert connected.status == 201, connected.json
        registries.append(connected.json["id"])
    since = {"since": RECENTLY}
    replays = [
        platform.api_as(TENANT, ["integrations:admin"], "POST", f"/v1/webhooks/{webhooks[0]}/recover", body=since)
    ]
    return {
        "webhook_id": webhooks,
        "delivery_id": deliveries,
        "registry_id": registries,
        "replay_id": [r.json["id"] for r in replays],
    }


def _document(platform: Platform) -> dict[str, Any]:
    response = platform.api("GET", "/v1/openapi.json", context={})
    assert response.status == 200
    return response.json  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi(platform: Platform) -> None:
    spec = _document(platform)
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {route.label for route in DOCUMENTED}
    json.dumps(spec)  # serializable as served


def _strategy(operation: Any, route: Route, mode: GenerationMode, known: dict[str, list[str]]) -> Any:
    strategies = [operation.as_strategy(generation_mode=mode)]
    if mode is GenerationMode.POSITIVE and route.body is not None and not route.takes_id:
        # A body the domain accepts too (a resolvable https URL, a catalog type), to reach the 201.
        strategies.append(operation.as_strategy(generation_mode=mode, body=route.body))
    for name, values in known.items():
        if f"{{{name}}}" in route.template:
            strategies += [operation.as_strategy(generation_mode=mode, path_parameters={name: v}) for v in values]
    return st.one_of(strategies)


# Routes whose only input is a path id (any string is a valid id to look up): there is nothing to
# make invalid, so they run in positive mode only; the test below checks the spec agrees.
WITHOUT_INPUTS = frozenset(
    {
        "GET /v1/webhooks/{webhook_id}",
        "DELETE /v1/webhooks/{webhook_id}",
        "GET /v1/deliveries/{delivery_id}",
        "POST /v1/deliveries/{delivery_id}/replay",
        "GET /v1/event-types",
        "GET /v1/replays/{replay_id}",
        "DELETE /v1/replays/{replay_id}",
        "GET /v1/registries/{registry_id}",
        "DELETE /v1/registries/{registry_id}",
        "POST /v1/registries/{registry_id}/approve",
        "GET /v1/whoami",
    }
)
CASES = [(r, GenerationMode.POSITIVE) for r in DOCUMENTED] + [
    (r, GenerationMode.NEGATIVE) for r in DOCUMENTED if r.label not in WITHOUT_INPUTS
]


def test_routes_left_out_of_negative_mode_have_no_inputs(platform: Platform) -> None:
    schema = schemathesis.openapi.from_dict(_document(platform), config=CONFIG)
    for route in DOCUMENTED:
        operation = schema[route.template][route.method]
        inputs = [p for p in operation.iter_parameters() if p.location != "path"]
        assert (route.label in WITHOUT_INPUTS) == (not inputs and not operation.body), route.label


@pytest.mark.parametrize(("route", "mode"), CASES, ids=lambda v: v.label if isinstance(v, Route) else str(v))
def test_generated_requests_conform(
    platform: Platform, gateway: Gateway, known: dict[str, list[str]], route: Route, mode: GenerationMode
) -> None:
    operation = schemathesis.openapi.from_dict(_document(platform), config=CONFIG)[route.template][route.method]
    key = platform.key(TENANT, list(SCOPES))
    statuses: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("API_FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, route, mode, known))
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=NEGATIVE if mode is GenerationMode.NEGATIVE else POSITIVE)

    run()
    assert statuses, "no request was generated"
    assert set(statuses) != {401}, "every generated request was refused by the authorizer"

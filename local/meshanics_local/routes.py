"""The REST API's routes, authorizers and settings, read from the OpenAPI body SAM generates.

Matching follows API Gateway: per path segment a static resource beats `{param}`, which beats a
greedy `{proxy+}`; a trailing slash is ignored (`/v2/` is `/v2`); the method must be declared on
the matched resource, else `ANY` (`x-amazon-apigateway-any-method`) applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
ANY = "ANY"
_FUNCTION_URI = re.compile(r":lambda:path/[^/]+/functions/(.+?)/invocations$")


@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str
    kind: str  # "REQUEST" or "TOKEN"
    identity_sources: tuple[str, ...]  # e.g. method.request.header.Authorization
    ttl_seconds: int = 300
    validation_expression: str | None = None


@dataclass(frozen=True)
class Route:
    resource_path: str
    method: str
    function: str | None  # logical id of the proxied function (None: an integration not played locally)
    authorizer: str | None = None
    integration: str = "aws_proxy"


@dataclass(frozen=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


@dataclass
class _Node:
    static: dict[str, _Node] = field(default_factory=dict)
    param: tuple[str, _Node] | None = None
    greedy: tuple[str, _Node] | None = None
    resource: str | None = None


@dataclass
class RestApi:
    logical_id: str
    api_id: str
    stage: str
    routes: dict[str, dict[str, Route]]
    authorizers: dict[str, Authorizer] = field(default_factory=dict)
    binary_media_types: tuple[str, ...] = ()
    gateway_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    _root: _Node = field(default_factory=_Node, init=False, repr=False)

    def __post_init__(self) -> None:
        for resource_path in self.routes:
            node = self._root
            for segment in _segments(resource_path):
                if segment.startswith("{") and segment.endswith("+}"):
                    if node.greedy is None:
                        node.greedy = (segment[1:-2], _Node())
                    node = node.greedy[1]
                elif segment.startswith("{") and segment.endswith("}"):
                    if node.param is None:
                        node.param = (segment[1:-1], _Node())
                    node = node.param[1]
                else:
                    node = node.static.setdefault(segment, _Node())
            node.resource = resource_path

    def resource_for(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The resource a request path addresses, with its path parameters."""
        return _walk(self._root, _segments(path), 0, {})

    def match(self, method: str, path: str) -> Match | None:
        """The route for a request, or None (API Gateway answers MISSING_AUTHENTICATION_TOKEN)."""
        found = self.resource_for(path)
        if found is None:
            return None
        resource_path, parameters = found
        methods = self.routes[resource_path]
        route = methods.get(method.upper()) or methods.get(ANY)
        return Match(route, parameters) if route else None

    def is_binary(self, content_type: str | None) -> bool:
        return any(_media_type_matches(pattern, content_type) for pattern in self.binary_media_types)


def _segments(path: str) -> list[str]:
    trimmed = path.strip("/")
    return trimmed.split("/") if trimmed else []


def _walk(node: _Node, segments: list[str], i: int, params: dict[str, str]) -> tuple[str, dict[str, str]] | None:
    if i == len(segments):
        return (node.resource, params) if node.resource else None
    segment = segments[i]
    child = node.static.get(segment)
    if child is not None:
        found = _walk(child, segments, i + 1, params)
        if found:
            return found
    if node.param is not None and segment:
        name, child = node.param
        found = _walk(child, segments, i + 1, params | {name: segment})
        if found:
            return found
    if node.greedy is not None:
        name, child = node.greedy
        if child.resource:
            return child.resource, params | {name: "/".join(segments[i:])}
    return None


def _media_type_matches(pattern: str, content_type: str | None) -> bool:
    if pattern == "*/*":
        return True
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, sub = pattern.lower().partition("/")
    media_kind, _, media_sub = media.partition("/")
    return kind in ("*", media_kind) and sub in ("*", media_sub)


# ------------------------------------------------------------------------------- reading the body
def function_from_uri(uri: str, arn_to_function: Callable[[str], str | None]) -> str | None:
    match = _FUNCTION_URI.search(uri)
    return arn_to_function(match.group(1)) if match else None


def _security_schemes(body: Mapping[str, Any]) -> Mapping[str, Any]:
    schemes = (body.get("components") or {}).get("securitySchemes") or body.get("securityDefinitions") or {}
    return schemes if isinstance(schemes, Mapping) else {}


def read_authorizers(body: Mapping[str, Any], arn_to_function: Callable[[str], str | None]) -> dict[str, Authorizer]:
    authorizers: dict[str, Authorizer] = {}
    for name, scheme in _security_schemes(body).items():
        config = scheme.get("x-amazon-apigateway-authorizer")
        if not config:
            continue
        kind = str(config.get("type", "token")).upper()
        function = function_from_uri(str(config.get("authorizerUri", "")), arn_to_function)
        if kind not in ("REQUEST", "TOKEN") or function is None:
            continue
        sources = config.get("identitySource")
        if sources:
            identity = tuple(s.strip() for s in str(sources).split(",") if s.strip())
        else:
            identity = (f"method.request.header.{scheme.get('name', 'Authorization')}",)
        authorizers[name] = Authorizer(
            name=name,
            function=function,
            kind=kind,
            identity_sources=identity,
            ttl_seconds=int(config.get("authorizerResultTtlInSeconds", 300)),
            validation_expression=config.get("identityValidationExpression"),
        )
    return authorizers


def read_routes(
    body: Mapping[str, Any], authorizers: Mapping[str, Authorizer], arn_to_function: Callable[[str], str | None]
) -> dict[str, dict[str, Route]]:
    default_security = body.get("security")
    routes: dict[str, dict[str, Route]] = {}
    for path, item in (body.get("paths") or {}).items():
        for key, operation in item.items():
            method = ANY if key == "x-amazon-apigateway-any-method" else key.upper()
            if method != ANY and method not in HTTP_METHODS:
                continue
            integration = operation.get("x-amazon-apigateway-integration") or {}
            kind = str(integration.get("type", "")).lower()
            function = function_from_uri(str(integration.get("uri", "")), arn_to_function) if kind else None
            security = operation.get("security", default_security) or []
            authorizer = next((name for entry in security for name in entry if name in authorizers), None)
            routes.setdefault(path, {})[method] = Route(path, method, function, authorizer, kind or "none")
    return routes


def read_rest_api(
    logical_id: str,
    api_id: str,
    stage: str,
    properties: Mapping[str, Any],
    arn_to_function: Callable[[str], str | None],
) -> RestApi:
    """A RestApi from its resolved CloudFormation properties (the Body SAM generated)."""
    body = properties.get("Body") or {}
    authorizers = read_authorizers(body, arn_to_function)
    binary = body.get("x-amazon-apigateway-binary-media-types") or [
        t.replace("~1", "/") for t in properties.get("BinaryMediaTypes", [])
    ]
    return RestApi(
        logical_id=logical_id,
        api_id=api_id,
        stage=stage,
        routes=read_routes(body, authorizers, arn_to_function),
        authorizers=authorizers,
        binary_media_types=tuple(binary),
        gateway_responses=dict(body.get("x-amazon-apigateway-gateway-responses") or {}),
    )

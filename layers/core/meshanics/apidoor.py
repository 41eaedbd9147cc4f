"""What both API functions share at the door: the caller from the authorizer, scopes, one error shape.

Used with Powertools' API Gateway resolver; the domain modules stay unaware of HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from meshanics import untrusted
from meshanics.errors import Forbidden, MeshanicsError, Unauthenticated

log = logging.getLogger("meshanics.api")

# Scopes that imply others: an administrator can read what it manages.
IMPLIED = {"integrations:read": ("integrations:admin",)}


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"apikey:{self.key_id}"

    def require(self, scope: str) -> Caller:
        if scope in self.scopes or any(s in self.scopes for s in IMPLIED.get(scope, ())):
            return self
        raise Forbidden(f"this API key lacks the {scope} scope", code="missing_scope")


def permits(scopes: frozenset[str], accepted: tuple[str, ...]) -> bool:
    """True if the key holds one of the accepted scopes (or a scope that implies one)."""
    return any(a in scopes or any(s in scopes for s in IMPLIED.get(a, ())) for a in accepted)


class RouteScopes:
    """The scope each route needs, declared once per function: `{("POST", "/v1/webhooks"): (ADMIN,)}`
    with `{name}` for a path segment. Checked before the request body is validated (a key without
    the scope learns nothing from validation errors) and again by `caller` inside the route."""

    def __init__(self, table: Mapping[tuple[str, str], tuple[str, ...]]) -> None:
        self._rules = [
            (method, re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "/?$"), accepted)
            for (method, path), accepted in table.items()
        ]

    def accepted(self, method: str, path: str) -> tuple[str, ...] | None:
        """The scopes that open this route (any one), or None if the table has no such route."""
        for rule_method, pattern, accepted in self._rules:
            if rule_method == method and pattern.match(path):
                return accepted
        return None

    def refusal(self, method: str, path: str, scopes: frozenset[str]) -> Forbidden | None:
        accepted = self.accepted(method, path)
        if accepted is None or permits(scopes, accepted):
            return None
        return Forbidden(f"this API key lacks the {' or '.join(accepted)} scope", code="missing_scope")


class _Resolver(Protocol):
    current_event: Any


def _scopes(context: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(context.get("scopes", "")).split())


def caller(app: _Resolver, routes: RouteScopes | None = None) -> Caller:
    """The authenticated caller, holding the scope the current route needs (per `routes`).

    The tenant comes only from the authorizer, never from the request.
    """
    event = app.current_event
    context = event.request_context.authorizer.get_context() or {}
    tenant = context.get("tenant_id")
    if not tenant:
        raise Unauthenticated("a valid API key is required")
    who = Caller(tenant, str(context.get("key_id", "")), _scopes(context))
    if routes is not None:
        if routes.accepted(event.http_method, event.path) is None:
            raise Forbidden("this route declares no scope", code="missing_scope")  # fail closed
        refusal = routes.refusal(event.http_method, event.path, who.scopes)
        if refusal is not None:
            raise refusal
    return who


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": body})


def _field(location: tuple[Any, ...] | list[Any]) -> str | None:
    # Field names are snake_case; a capitalized part is the tag of a union member (a model name).
    parts = [
        str(p)
        for p in location
        if p not in ("body", "query", "path", "header") and not (isinstance(p, str) and p[:1].isupper())
    ]
    return ".".join(parts) or None


def install_error_handlers(
    app: APIGatewayRestResolver,
    *,
    max_request_bytes: int,
    json_bodies_under: str | None = None,
    routes: RouteScopes | None = None,
) -> None:
    """Map every failure to `{"error": {"code", "message", "field"?}}` with the right status.

    Under the path prefix `json_bodies_under`, every request body must be a JSON object (as all of
    the tenant API's are).
    """

    def _domain(error: MeshanicsError) -> Response[Any]:
        return error_response(error.status, error.code, error.message, error.field)

    def _invalid(error: RequestValidationError) -> Response[Any]:
        problems = error.errors()
        first = problems[0] if problems else {}
        location = first.get("loc", ())
        kind = first.get("type", "")
        if kind == "json_invalid":
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        field = _field(location)
        message = first.get("msg", "invalid request")
        if kind == "missing":
            message = "field required"
        elif kind == "extra_forbidden":
            message = "unknown field"
        return error_response(400, "invalid_request", f"{field}: {message}" if field else message, field)

    def _undecodable(error: UnicodeDecodeError) -> Response[Any]:
        # Raised while the validation middleware reads the body: it is not UTF-8, so not JSON either.
        return error_response(400, "invalid_json", "the request body is not valid JSON (UTF-8)")

    def _media_type(error: RequestUnsupportedContentType) -> Response[Any]:
        return error_response(415, "unsupported_media_type", "the request body must be application/json")

    def _no_route(error: NotFoundError) -> Response[Any]:
        return error_response(404, "not_found", "no such route")

    def _unexpected(error: Exception) -> Response[Any]:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "something went wrong on our side; it was logged")

    app.exception_handler(MeshanicsError)(_domain)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(UnicodeDecodeError)(_undecodable)
    app.exception_handler(RequestUnsupportedContentType)(_media_type)
    app.exception_handler(NotFoundError)(_no_route)
    app.exception_handler(Exception)(_unexpected)

    # The body is checked before anything parses it: Powertools runs request validation ahead of
    # every middleware, so a middleware would see an oversized body already parsed.
    resolve = app.resolve

    def guarded_resolve(event: Any, context: Any) -> dict[str, Any]:
        if isinstance(event, dict):
            authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
            if routes is not None and authorizer.get("tenant_id"):
                forbidden = routes.refusal(str(event.get("httpMethod")), str(event.get("path")), _scopes(authorizer))
                if forbidden is not None:
                    return proxy_error(forbidden.status, forbidden.code, forbidden.message)
            if body_size(event) > max_request_bytes:
                return proxy_error(413, "request_too_large", f"the request body exceeds {max_request_bytes} bytes")
            json_only = json_bodies_under is not None and str(event.get("path", "")).startswith(json_bodies_under)
            refusal = json_body_refusal(event) if json_only else None
            if refusal is not None:
                return refusal
            if json_only:
                _lower_content_type(event)  # media types are case-insensitive; Powertools compares as is
        return resolve(event, context)

    app.resolve = guarded_resolve  # type: ignore[method-assign]


def body_size(event: dict[str, Any]) -> int:
    """The request body's size in bytes, as the client sent it."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return len(body.encode())
    try:
        return len(base64.b64decode(body))
    except (binascii.Error, ValueError):
        return len(body) * 3 // 4


def json_body_refusal(event: dict[str, Any]) -> dict[str, Any] | None:
    """Why a request body cannot be a JSON object, as an error response; None when it can be.

    Checked ahead of Powertools, which would otherwise parse multipart and form bodies too (and fail
    with a 500 on a malformed one), take an array's first item for the object it wants (it unwraps
    lists for fields that are not sequences), and fail with a 500 on JSON it cannot parse: nested
    too deeply, or holding an integer past Python's 4,300-digit limit. A lone UTF-16 surrogate
    (`"\\ud800"`) is refused here too: it parses, then fails wherever it is written as UTF-8.
    """
    raw = event.get("body")
    if not raw:
        return None
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = str(headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in ("", "application/json"):
        return proxy_error(415, "unsupported_media_type", "the request body must be application/json")
    try:
        text = base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw)
        parsed = untrusted.loads(text)
    except binascii.Error:
        return None  # not base64: the resolver answers invalid_json
    except untrusted.Unparseable as error:
        if error.kind == "syntax":
            return None  # not JSON: the resolver answers invalid_json (routes without a body ignore it)
        if error.kind == "depth":
            return proxy_error(400, "invalid_json", "the request body is nested too deeply")
        return proxy_error(400, "invalid_request", error.message, error.field)
    if isinstance(parsed, list):
        return proxy_error(400, "invalid_request", "the request body must be a JSON object")
    return None


def _lower_content_type(event: dict[str, Any]) -> None:
    for section in ("headers", "multiValueHeaders"):
        headers = event.get(section) or {}
        for name, value in headers.items():
            if str(name).lower() == "content-type":
                headers[name] = [str(v).lower() for v in value] if isinstance(value, list) else str(value).lower()


def proxy_error(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """An error as an API Gateway proxy response, for answers given before the resolver runs."""
    error = {"code": code, "message": message} | ({"field": field} if field else {})
    return {
        "statusCode": status,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": json.dumps({"error": error}, separators=(",", ":")),
        "isBase64Encoded": False,
    }

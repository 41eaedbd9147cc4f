"""What both API functions share at the door: the caller from the authorizer, scopes, one error shape.

Used with Powertools' API Gateway resolver; the domain modules stay unaware of HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

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


class _Resolver(Protocol):
    current_event: Any


def caller(app: _Resolver) -> Caller:
    """The authenticated caller; the tenant comes only from the authorizer, never from the request."""
    context = app.current_event.request_context.authorizer.get_context() or {}
    tenant = context.get("tenant_id")
    if not tenant:
        raise Unauthenticated("a valid API key is required")
    return Caller(tenant, str(context.get("key_id", "")), frozenset(str(context.get("scopes", "")).split()))


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": body})


def _field(location: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def install_error_handlers(app: APIGatewayRestResolver, *, max_request_bytes: int) -> None:
    """Map every failure to `{"error": {"code", "message", "field"?}}` with the right status."""

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

    def _no_route(error: NotFoundError) -> Response[Any]:
        return error_response(404, "not_found", "no such route")

    def _unexpected(error: Exception) -> Response[Any]:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "something went wrong on our side; it was logged")

    def size_guard(app_: APIGatewayRestResolver, next_middleware: Any) -> Response[Any]:
        event = app_.current_event
        body = event.body or ""
        size = len(body) * 3 // 4 if event.is_base64_encoded else len(body.encode())
        if size > max_request_bytes:
            return error_response(413, "request_too_large", f"the request body exceeds {max_request_bytes} bytes")
        return next_middleware(app_)  # type: ignore[no-any-return]

    app.exception_handler(MeshanicsError)(_domain)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(NotFoundError)(_no_route)
    app.exception_handler(Exception)(_unexpected)
    app.use(middlewares=[size_guard])

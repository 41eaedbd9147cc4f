"""The one error shape, `{"error": {"code", "message", "field"?}}`, and the mapping of every failure to it."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel, Field

from meshanics.errors import MeshanicsError

log = logging.getLogger("meshanics_api")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_request, egress.scheme, missing_scope")
    message: str = Field(description="What went wrong, for people")
    field: str | None = Field(default=None, description="The request field at fault, when there is one")


class ErrorResponse(BaseModel):
    """The shape of every error the API answers."""

    error: ErrorDetail


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return {"error": detail}


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    """An error as the resolver's response (inside Powertools' request chain)."""
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=error_body(code, message, field)
    )


def proxy_error(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """An error as an API Gateway proxy response, for answers given before the resolver runs."""
    return {
        "statusCode": status,
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": json.dumps(error_body(code, message, field), separators=(",", ":")),
        "isBase64Encoded": False,
    }


# -- every failure, mapped ------------------------------------------------------------------------
def domain_error(error: MeshanicsError) -> Response[Any]:
    return error_response(error.status, error.code, error.message, error.field)


def _field(location: tuple[Any, ...] | list[Any]) -> str | None:
    if len(location) == 2 and location[0] == "header":
        # Powertools reports a header in lower case; named as documented (Idempotency-Key).
        return "-".join(part.capitalize() for part in str(location[1]).split("-"))
    # Field names are snake_case; a capitalized part is the tag of a union member (a model name).
    parts = [
        str(p)
        for p in location
        if p not in ("body", "query", "path", "header") and not (isinstance(p, str) and p[:1].isupper())
    ]
    return ".".join(parts) or None


def invalid_request(error: RequestValidationError) -> Response[Any]:
    """Powertools' request validation failed: 400, naming the first field at fault."""
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


def undecodable(error: UnicodeDecodeError) -> Response[Any]:
    # Raised while the validation middleware reads the body: it is not UTF-8, so not JSON either.
    return error_response(400, "invalid_json", "the request body is not valid JSON (UTF-8)")


def unsupported_media_type(error: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(415, "unsupported_media_type", "the request body must be application/json")


def no_route(error: NotFoundError) -> Response[Any]:
    return error_response(404, "not_found", "no such route")


def unexpected(error: Exception) -> Response[Any]:
    log.exception("unexpected error")
    return error_response(500, "internal_error", "something went wrong on our side; it was logged")


class _Handlers(Protocol):
    def exception_handler(self, exc_class: type[Exception] | list[type[Exception]]) -> Any: ...


def install(app: _Handlers) -> None:
    """Register the mapping with Powertools' exception handlers (a function may replace one after)."""
    app.exception_handler(MeshanicsError)(domain_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(UnicodeDecodeError)(undecodable)
    app.exception_handler(RequestUnsupportedContentType)(unsupported_media_type)
    app.exception_handler(NotFoundError)(no_route)
    app.exception_handler(Exception)(unexpected)

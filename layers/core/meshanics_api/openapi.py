"""The OpenAPI document: errors in the one shape, each route's scopes, no default 422.

The document and the docs page are built on request: Powertools' OpenAPI models (and its
enable_swagger(), which builds them at import) would add about 100 ms to every cold start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from meshanics_api.errors import ErrorResponse
from meshanics_api.scopes import Scopes, describe

SCOPES_EXTENSION = "x-required-scopes"

ERRORS: dict[int, str] = {
    400: "Invalid request: the error names the field (validation, egress rule, event filter, cursor)",
    401: "Missing, malformed, unknown or revoked API key",
    403: "The API key lacks the scope this route needs (code missing_scope)",
    404: "No such resource for this tenant",
    409: "Conflict: a concurrent change",
    413: "The request body is larger than {max_request_bytes} bytes (code request_too_large)",
    415: "The request body is not application/json",
    422: "A configured limit would be exceeded (code limit_exceeded)",
}


def error(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": ErrorResponse}}}


def documented(
    status: int,
    errors: tuple[int, ...],
    *,
    description: str,
    notes: Mapping[int, str],
    max_request_bytes: int,
) -> dict[int, OpenAPIResponse]:
    """A route's responses: its success and every error it can answer (401/403 come with its scopes)."""
    success: OpenAPIResponse = {"description": description}
    if status == 204:
        success["content"] = {}
    responses: dict[int, OpenAPIResponse] = {status: success}
    for code in errors:
        text = notes.get(code) or ERRORS[code]
        responses[code] = error(text.format(max_request_bytes=max_request_bytes))
    return responses


def with_scopes(
    scopes: Scopes,
    description: str | None,
    responses: dict[int, OpenAPIResponse] | None,
    extensions: dict[str, Any] | None,
) -> tuple[str, dict[int, OpenAPIResponse], dict[str, Any]]:
    """A scoped route's description, responses and extensions: the scopes it requires, and its 401/403."""
    described = describe(scopes) + (f"\n\n{description}" if description else "")
    answers = dict(responses or {})
    for code in (401, 403):
        answers.setdefault(code, error(ERRORS[code]))
    return described, answers, {**(extensions or {}), SCOPES_EXTENSION: list(scopes)}


def without_default_422(schema: Any) -> Any:
    """Powertools documents a 422 "Validation Error" on every validated route; request validation
    errors answer 400 in the one error shape instead (documented per route)."""
    for item in (schema.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            responses = operation.responses if operation is not None else None
            default = responses.get(422) if responses else None
            if responses and default is not None and default.description == "Validation Error":
                del responses[422]
    if schema.components is not None and schema.components.schemas:
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.components.schemas.pop(unused, None)
    return schema


def swagger_page(document: str) -> str:
    """The interactive docs page for a document, with Powertools' bundled Swagger UI assets inline."""
    from pathlib import Path

    import aws_lambda_powertools.event_handler as event_handler
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = Path(event_handler.__file__).parent / "openapi" / "swagger_ui"
    return generate_swagger_html(
        document.replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )

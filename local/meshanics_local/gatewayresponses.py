"""API Gateway's gateway responses: status, headers and body of the answers the gateway itself gives.

A response type uses its own configuration from `x-amazon-apigateway-gateway-responses` when the
API has one, else the DEFAULT_4XX / DEFAULT_5XX fallback for its class (whose status code, when
set, replaces the type's default). Header values are `'literal'` strings or
`method.request.header.<name>`; body templates get `$context.error.messageString` (the message as a
JSON string), `$context.error.message`, `$context.error.responseType` and a few other `$context`
variables substituted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# type -> (default status, default message, x-amzn-ErrorType)
RESPONSE_TYPES: dict[str, tuple[int, str, str]] = {
    "ACCESS_DENIED": (403, "User is not authorized to access this resource", "AccessDeniedException"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error", "ApiConfigurationException"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal server error", "AuthorizerConfigurationException"),
    "AUTHORIZER_FAILURE": (500, "Internal server error", "AuthorizerFailureException"),
    "BAD_REQUEST_PARAMETERS": (400, "Bad request", "BadRequestException"),
    "BAD_REQUEST_BODY": (400, "Bad request", "BadRequestException"),
    "DEFAULT_4XX": (400, "Bad request", "BadRequestException"),
    "DEFAULT_5XX": (500, "Internal server error", "InternalServerErrorException"),
    "EXPIRED_TOKEN": (403, "Token expired", "ExpiredTokenException"),
    "INTEGRATION_FAILURE": (504, "Internal server error", "IntegrationFailureException"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out", "IntegrationTimeoutException"),
    "INVALID_API_KEY": (403, "Forbidden", "InvalidApiKeyException"),
    "INVALID_SIGNATURE": (403, "Forbidden", "InvalidSignatureException"),
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token", "MissingAuthenticationTokenException"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded", "LimitExceededException"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long", "RequestTooLargeException"),
    "RESOURCE_NOT_FOUND": (404, "Not Found", "ResourceNotFoundException"),
    "THROTTLED": (429, "Too Many Requests", "TooManyRequestsException"),
    "UNAUTHORIZED": (401, "Unauthorized", "UnauthorizedException"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type", "UnsupportedMediaTypeException"),
    "WAF_FILTERED": (403, "Forbidden", "WafFilteredException"),
}
DEFAULT_TEMPLATE = '{"message":$context.error.messageString}'
_VARIABLE = re.compile(r"\$(?:\{context\.([A-Za-z0-9_.]+)\}|context\.([A-Za-z0-9_.]*[A-Za-z0-9_]))")


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def render(
    response_type: str,
    configured: Mapping[str, Mapping[str, Any]],
    *,
    message: str | None = None,
    request_headers: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
) -> GatewayResponse:
    """The gateway's answer of `response_type` under the API's configuration."""
    default_status, default_message, error_type = RESPONSE_TYPES[response_type]
    message = default_message if message is None else message
    fallback = "DEFAULT_5XX" if default_status >= 500 else "DEFAULT_4XX"
    config = configured.get(response_type)
    status = default_status
    if config is None:
        config = configured.get(fallback) or {}
        if config.get("statusCode"):
            status = int(config["statusCode"])
    elif config.get("statusCode"):
        status = int(config["statusCode"])
    lowered = {k.lower(): v for k, v in (request_headers or {}).items()}
    headers: dict[str, str] = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}
    for name, source in (config.get("responseParameters") or {}).items():
        if not name.startswith("gatewayresponse.header."):
            continue
        value = _parameter_value(str(source), lowered)
        if value is not None:
            headers[name.removeprefix("gatewayresponse.header.")] = value
    templates = config.get("responseTemplates") or {}
    template = templates.get("application/json") or next(iter(templates.values()), None) or DEFAULT_TEMPLATE
    variables = {
        "error.messageString": json.dumps(message),
        "error.message": message,
        "error.responseType": response_type,
        **{k: "" if v is None else str(v) for k, v in (context or {}).items()},
    }
    body = _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), template)
    return GatewayResponse(status, headers, body.encode("utf-8"))


def _parameter_value(source: str, request_headers: Mapping[str, str]) -> str | None:
    if len(source) >= 2 and source.startswith("'") and source.endswith("'"):
        return source[1:-1]
    if source.startswith("method.request.header."):
        return request_headers.get(source.removeprefix("method.request.header.").lower())
    return None

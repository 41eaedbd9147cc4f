"""The API door, outside the core: what both API functions (api, registry) share at the edge.

The one error shape and the mapping of every failure to it (errors), the caller and its scopes
(scopes), request guards ahead of Powertools (guards), the OpenAPI customisation (openapi), the
resolver that ties them together and whose routes declare their scopes (resolver), routers for
routes kept in their own module (router), `Idempotency-Key` on the routes that create
(idempotency), and the functions' logging (observability). The core (`meshanics`) stays unaware
of HTTP.
"""

from meshanics_api.errors import ErrorDetail, ErrorResponse, error_response, proxy_error
from meshanics_api.observability import api_logger, entry_point
from meshanics_api.resolver import ApiResolver
from meshanics_api.router import ApiRouter
from meshanics_api.scopes import IMPLIED, Caller, permits

__all__ = [
    "IMPLIED",
    "ApiResolver",
    "ApiRouter",
    "Caller",
    "ErrorDetail",
    "ErrorResponse",
    "api_logger",
    "entry_point",
    "error_response",
    "permits",
    "proxy_error",
]

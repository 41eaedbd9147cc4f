"""The OCI pull facade (`/v2`), behind the API key authorizer: devices pull artifacts by digest.

Thin door: it parses the distribution API path (pull by digest only), asks the core's pull facade
and answers with the spec's headers and `{"errors": [...]}` bodies, errors included. The caller's
tenant and scopes come only from the authorizer. Registry connections (`/v1/registries`) are
managed through the API function. No X-Ray SDK here (about 75 ms of import): Lambda's active
tracing records the invocation, and devices' cold starts stay lean.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.config import settings
from meshanics.errors import MeshanicsError, Unauthenticated
from meshanics.registry import oci
from meshanics_api import ApiResolver, Caller, api_logger, entry_point, permits

if TYPE_CHECKING:
    from meshanics.registry.facade import Served

logger = api_logger()
# Bodies are the distribution API's (blobs, manifests), not JSON objects.
app = ApiResolver(max_request_bytes=settings().limits.max_request_bytes, json_bodies_under=None)
# The pull facade (upstream client, S3 cache) is built on the first request, not at import.

# The routes declare no scope: they check artifacts:pull themselves and answer in the distribution
# API's error format.
PULL = "artifacts:pull"
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="meshanics", charset="UTF-8"'}
GATEWAY_LIMIT = 29.0
DEADLINE_MARGIN = 2.0


# -- the pull facade ----------------------------------------------------------------------------
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _oci(status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=API_VERSION | (headers or {}),
    )


def _oci_error(error: oci.OciError) -> Response[Any]:
    headers = dict(error.headers)
    if error.status == 401:
        headers |= CHALLENGE
    return _oci(error.status, error.body(), headers)


def _puller() -> Caller:
    try:
        who = app.authenticated()
    except Unauthenticated:
        raise oci.OciError("UNAUTHORIZED", "authentication required: use an API key with artifacts:pull") from None
    if not permits(who.scopes, (PULL,)):
        raise oci.OciError("DENIED", f"this API key lacks the {PULL} scope")
    return who


def _accept() -> tuple[str, ...]:
    event = app.current_event
    values = [v for k, vs in (event.multi_value_headers or {}).items() if k.lower() == "accept" for v in vs or ()]
    if not values and event.headers.get("accept"):
        values = [event.headers["accept"]]
    return oci.parse_accept(values)


def _deadline() -> float:
    remaining = GATEWAY_LIMIT
    context = getattr(app, "lambda_context", None)
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        remaining = min(remaining, context.get_remaining_time_in_millis() / 1000)
    return time.monotonic() + remaining - DEADLINE_MARGIN


@app.route("/v2", method=ALL_METHODS, include_in_schema=False, enable_validation=False)
def version_check() -> Response[Any]:
    method = app.current_event.http_method.upper()
    _puller()
    if method not in ("GET", "HEAD"):
        raise oci.unsupported()
    return _oci(200, {} if method == "GET" else "")


@app.route("/v2/.+", method=ALL_METHODS, include_in_schema=False, enable_validation=False)
def pull() -> Response[Any]:
    event = app.current_event
    method = event.http_method.upper()
    who = _puller()
    target = oci.parse_pull_path(event.path.removeprefix("/v2/"), method)
    from meshanics.registry.facade import Pull  # here: a cold start does not pay for it before a pull

    request = Pull(who.tenant_id, who.actor, target, _accept(), _deadline())
    served = services.pull_facade().pull(request, head=method == "HEAD")
    logger.info(
        "pull served",
        extra={"kind": target.kind, "registry": target.registry, "status": served.status, "source": served.source},
    )
    return _served(served, head=method == "HEAD")


def _served(served: Served, *, head: bool) -> Response[Any]:
    headers = dict(served.headers)
    content_type = headers.pop("Content-Type", None)
    body: bytes | str = "" if head or not served.body else served.body
    return Response(status_code=served.status, content_type=content_type, body=body, headers=API_VERSION | headers)


# -- errors: the distribution spec's shape, for every failure ----------------------------------
def _domain_error(error: MeshanicsError) -> Response[Any]:
    return _oci_error(oci.from_domain(error))


def _no_route(error: NotFoundError) -> Response[Any]:
    return _oci(404, oci.error_body("NAME_UNKNOWN", "no such route"))


def _unexpected(error: Exception) -> Response[Any]:
    logger.exception("unexpected error")
    return _oci(500, oci.error_body("UNKNOWN", "something went wrong on our side; it was logged"))


# Replacing the door's handlers for these three (it registered them first).
app.exception_handler(MeshanicsError)(_domain_error)
app.exception_handler(NotFoundError)(_no_route)
app.exception_handler(Exception)(_unexpected)


@entry_point(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

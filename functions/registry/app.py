"""Registry connections (tenant API) and the OCI pull facade (`/v2`), behind the API key authorizer.

Thin door: `/v1/registries` validates input against the models and answers in the API's error
shape (meshanics_api); `/v2` parses the distribution API path (pull by digest only), asks the core's pull facade
and answers with the spec's headers and `{"errors": [...]}` bodies. The caller's tenant and scopes
come only from the authorizer. No X-Ray SDK here (about 75 ms of import): Lambda's active tracing
records the invocation, and devices' cold starts stay lean.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from models import LIMITS, CredentialsUpdate, Registry, RegistryCreate, RegistryPage

from meshanics import services
from meshanics.errors import MeshanicsError, Unauthenticated
from meshanics.model import Credentials
from meshanics.registry import oci
from meshanics_api import ApiResolver, Caller, api_logger, entry_point, permits
from meshanics_api import errors as door_errors

if TYPE_CHECKING:
    from meshanics.registry.facade import Served

logger = api_logger()
app = ApiResolver(
    max_request_bytes=LIMITS.max_request_bytes,
    error_notes={
        404: "No such registry connection for this tenant",
        409: "Conflict: the name is taken, or a concurrent change",
    },
)
registries = services.registries()
# The pull facade (upstream client, S3 cache) is built on the first /v2 request, not at import.

# Each /v1 route declares its scopes in its decorator (an operator may read what it manages); /v2
# declares none: it checks artifacts:pull itself and answers in the distribution API's error format.
READ = "integrations:read"
OPERATOR = "registries:operator"
PULL = "artifacts:pull"
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="meshanics", charset="UTF-8"'}
GATEWAY_LIMIT = 29.0
DEADLINE_MARGIN = 2.0
Limit = Annotated[int, Query(ge=1, le=LIMITS.max_page_size, description="Page size")]
Cursor = Annotated[
    str | None, Query(max_length=LIMITS.max_cursor_length, description="next_cursor of the previous page")
]


def _credentials(body: RegistryCreate | CredentialsUpdate) -> Credentials:
    given = body.credentials
    if given.type == "basic":
        return Credentials.basic(given.username, given.password)
    return Credentials.token(given.token)


# -- registry connections -----------------------------------------------------------------------
@app.post(
    "/v1/registries",
    scopes=(OPERATOR,),
    status_code=201,
    tags=["registries"],
    summary="Connect an upstream (pending approval)",
    description=f"At most {LIMITS.max_registries} registry connections per tenant (then 422 limit_exceeded).",
    responses=app.documented(201, 400, 409, 413, 415, 422),
)
def connect_registry(body: Annotated[RegistryCreate, Body()]) -> Registry:
    who = app.caller()
    connection = registries.connect(
        who.tenant_id,
        who.actor,
        name=body.name,
        upstream_url=body.upstream_url,
        credentials=_credentials(body),
        allow_private_network=body.allow_private_network,
    )
    return Registry(**connection.public())


@app.get(
    "/v1/registries",
    scopes=(READ, OPERATOR),
    tags=["registries"],
    summary="List registry connections",
    responses=app.documented(200, 400),
)
def list_registries(limit: Limit = 20, cursor: Cursor = None) -> RegistryPage:
    who = app.caller()
    items, next_cursor = registries.page(who.tenant_id, limit=limit, cursor=cursor)
    return RegistryPage(items=[Registry(**c.public()) for c in items], next_cursor=next_cursor)


@app.get(
    "/v1/registries/<registry_id>",
    scopes=(READ, OPERATOR),
    tags=["registries"],
    summary="Get a registry connection",
    responses=app.documented(200, 404),
)
def get_registry(registry_id: str) -> Registry:
    who = app.caller()
    return Registry(**registries.get(who.tenant_id, registry_id).public())


@app.post(
    "/v1/registries/<registry_id>/approve",
    scopes=(OPERATOR,),
    tags=["registries"],
    summary="Approve a pending connection",
    responses=app.documented(200, 404, 409),
)
def approve_registry(registry_id: str) -> Registry:
    who = app.caller()
    return Registry(**registries.approve(who.tenant_id, who.actor, registry_id).public())


@app.put(
    "/v1/registries/<registry_id>/credentials",
    scopes=(OPERATOR,),
    tags=["registries"],
    summary="Replace the upstream credentials",
    responses=app.documented(200, 400, 404, 409, 413, 415),
)
def update_credentials(registry_id: str, body: Annotated[CredentialsUpdate, Body()]) -> Registry:
    who = app.caller()
    updated = registries.update_credentials(who.tenant_id, who.actor, registry_id, _credentials(body))
    return Registry(**updated.public())


@app.delete(
    "/v1/registries/<registry_id>",
    scopes=(OPERATOR,),
    status_code=204,
    tags=["registries"],
    summary="Remove a connection",
    responses=app.documented(204, 404, description="Removed"),
)
def remove_registry(registry_id: str) -> Response[None]:
    who = app.caller()
    registries.remove(who.tenant_id, who.actor, registry_id)
    return Response(status_code=204)


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
    from meshanics.registry.facade import Pull  # here: /v1 cold starts do not pay for the pull side

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


# -- errors: the API's shape under /v1 (meshanics_api), the distribution spec's under /v2 ---------
def _is_v2() -> bool:
    path = app.current_event.path or ""
    return path == "/v2" or path.startswith("/v2/")


def _domain_error(error: MeshanicsError) -> Response[Any]:
    if _is_v2():
        return _oci_error(oci.from_domain(error))
    return door_errors.domain_error(error)


def _no_route(error: NotFoundError) -> Response[Any]:
    if _is_v2():
        return _oci(404, oci.error_body("NAME_UNKNOWN", "no such route"))
    return door_errors.no_route(error)


def _unexpected(error: Exception) -> Response[Any]:
    if _is_v2():
        logger.exception("unexpected error")
        return _oci(500, oci.error_body("UNKNOWN", "something went wrong on our side; it was logged"))
    return door_errors.unexpected(error)


# Replacing the door's handlers for these three (it registered them first): the same shape under /v1.
app.exception_handler(MeshanicsError)(_domain_error)
app.exception_handler(NotFoundError)(_no_route)
app.exception_handler(Exception)(_unexpected)


@entry_point(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

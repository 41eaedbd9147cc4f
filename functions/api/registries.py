"""Registry connections (`/v1/registries`): the upstreams a tenant's operators connect and approve.

Served by the API function, so they are in its one OpenAPI document; the registry function serves
only the devices' `/v2` pulls. Each route declares its scopes (an operator may read what it manages).
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from models import LIMITS, CredentialsUpdate, Registry, RegistryCreate, RegistryPage

from meshanics import services
from meshanics.model import Credentials
from meshanics_api import ApiRouter, idempotency
from meshanics_api.idempotency import IdempotencyKey

router = ApiRouter(
    max_request_bytes=LIMITS.max_request_bytes,
    error_notes={
        404: "No such registry connection for this tenant",
        409: "Conflict: the name is taken, or a concurrent change",
    },
)
registries = services.registries()

READ = "integrations:read"
OPERATOR = "registries:operator"
Limit = Annotated[int, Query(ge=1, le=LIMITS.max_page_size, description="Page size")]
Cursor = Annotated[
    str | None, Query(max_length=LIMITS.max_cursor_length, description="next_cursor of the previous page")
]


def _credentials(body: RegistryCreate | CredentialsUpdate) -> Credentials:
    given = body.credentials
    if given.type == "basic":
        return Credentials.basic(given.username, given.password)
    return Credentials.token(given.token)


@router.post(
    "/v1/registries",
    scopes=(OPERATOR,),
    status_code=201,
    tags=["registries"],
    summary="Connect an upstream (pending approval)",
    description=f"At most {LIMITS.max_registries} registry connections per tenant (then 422 limit_exceeded).",
    responses=idempotency.documented(router.documented(201, 400, 409, 413, 415, 422)),
)
def connect_registry(body: Annotated[RegistryCreate, Body()], idempotency_key: IdempotencyKey = None) -> Registry:
    return Registry(**router.once(idempotency_key, lambda: _connect_registry(body).model_dump(mode="json")))


def _connect_registry(body: RegistryCreate) -> Registry:
    who = router.caller()
    connection = registries.connect(
        who.tenant_id,
        who.actor,
        name=body.name,
        upstream_url=body.upstream_url,
        credentials=_credentials(body),
        allow_private_network=body.allow_private_network,
    )
    return Registry(**connection.public())


@router.get(
    "/v1/registries",
    scopes=(READ, OPERATOR),
    tags=["registries"],
    summary="List registry connections",
    responses=router.documented(200, 400),
)
def list_registries(limit: Limit = 20, cursor: Cursor = None) -> RegistryPage:
    who = router.caller()
    items, next_cursor = registries.page(who.tenant_id, limit=limit, cursor=cursor)
    return RegistryPage(items=[Registry(**c.public()) for c in items], next_cursor=next_cursor)


@router.get(
    "/v1/registries/<registry_id>",
    scopes=(READ, OPERATOR),
    tags=["registries"],
    summary="Get a registry connection",
    responses=router.documented(200, 404),
)
def get_registry(registry_id: str) -> Registry:
    who = router.caller()
    return Registry(**registries.get(who.tenant_id, registry_id).public())


@router.post(
    "/v1/registries/<registry_id>/approve",
    scopes=(OPERATOR,),
    tags=["registries"],
    summary="Approve a pending connection",
    responses=router.documented(200, 404, 409),
)
def approve_registry(registry_id: str) -> Registry:
    who = router.caller()
    return Registry(**registries.approve(who.tenant_id, who.actor, registry_id).public())


@router.put(
    "/v1/registries/<registry_id>/credentials",
    scopes=(OPERATOR,),
    tags=["registries"],
    summary="Replace the upstream credentials",
    responses=router.documented(200, 400, 404, 409, 413, 415),
)
def update_credentials(registry_id: str, body: Annotated[CredentialsUpdate, Body()]) -> Registry:
    who = router.caller()
    updated = registries.update_credentials(who.tenant_id, who.actor, registry_id, _credentials(body))
    return Registry(**updated.public())


@router.delete(
    "/v1/registries/<registry_id>",
    scopes=(OPERATOR,),
    status_code=204,
    tags=["registries"],
    summary="Remove a connection",
    responses=router.documented(204, 404, description="Removed"),
)
def remove_registry(registry_id: str) -> Response[None]:
    who = router.caller()
    registries.remove(who.tenant_id, who.actor, registry_id)
    return Response(status_code=204)

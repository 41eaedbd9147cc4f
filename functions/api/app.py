"""Tenant API: webhook endpoints, secrets, test deliveries, history, replay, the catalog, events and
registry connections (routes in registries.py): every /v1 route, so one OpenAPI document has them all;
and the tenant console (its page and assets in console/, served by meshanics_api.console).

Thin door: Powertools' resolver validates input against the models (and generates OpenAPI from
them); each route declares the scope it needs in its decorator (meshanics_api.ApiResolver); the
caller's tenant and scopes come from the authorizer; the core does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from models import (
    DELIVERY_SEARCH,
    LIMITS,
    DeliveryDetail,
    DeliveryPage,
    EventBatch,
    EventBody,
    EventTypePage,
    EventWrittenPage,
    Identity,
    Instant,
    Recover,
    Replay,
    ReplayFailed,
    ReplayPage,
    RotateSecret,
    TestDelivery,
    TestResult,
    Webhook,
    WebhookCreate,
    WebhookDetail,
    WebhookPage,
    WebhookStats,
    WebhookUpdate,
    WebhookUpdated,
    WebhookWithSecret,
)
from registries import router as registry_routes

from meshanics import __version__, catalog, services
from meshanics.apikeys import SCOPES
from meshanics.errors import MeshanicsError
from meshanics.model import EventInput
from meshanics_api import ApiResolver, api_logger, entry_point, idempotency
from meshanics_api.console import Console
from meshanics_api.idempotency import IdempotencyKey, IdempotentRequests

logger = api_logger()
app = ApiResolver(
    max_request_bytes=LIMITS.max_request_bytes,
    error_notes={
        404: "No such webhook or delivery for this tenant",
        409: "Conflict: a concurrent change, or a delivery that cannot be replayed in its state",
    },
    idempotency=IdempotentRequests.from_settings(),
)
webhooks = services.webhooks()
# The tenant console's page and assets, read and hashed once per cold start (meshanics_api.console).
console = Console(Path(__file__).parent / "console")

READ = "integrations:read"
ADMIN = "integrations:admin"
EVENTS = "events:write"
TITLE = "Meshanics Integrations API"

Limit = Annotated[int, Query(ge=1, le=LIMITS.max_page_size, description="Page size")]
Cursor = Annotated[
    str | None, Query(max_length=LIMITS.max_cursor_length, description="next_cursor of the previous page")
]


# -- webhook endpoints ----------------------------------------------------------------------------
@app.post(
    "/v1/webhooks",
    scopes=(ADMIN,),
    status_code=201,
    tags=["webhooks"],
    summary="Create an endpoint (returns its secret once)",
    description=f"At most {LIMITS.max_endpoints} endpoints per tenant (then 422 limit_exceeded).",
    responses=idempotency.documented(app.documented(201, 400, 409, 413, 415, 422)),
)
def create_webhook(body: Annotated[WebhookCreate, Body()], idempotency_key: IdempotencyKey = None) -> WebhookWithSecret:
    # The one answer that carries a secret: stored sealed for a replay (see meshanics_api.idempotency).
    answer = app.once(idempotency_key, lambda: _create_webhook(body).model_dump(mode="json"), sealed=("secret",))
    return WebhookWithSecret(**answer)


def _create_webhook(body: WebhookCreate) -> WebhookWithSecret:
    who = app.caller()
    endpoint, secret = webhooks.create(
        who.tenant_id,
        who.actor,
        url=body.url,
        events=body.events,
        description=body.description,
        allow_private_network=body.allow_private_network,
        enabled=body.enabled,
        headers=body.headers,
    )
    return WebhookWithSecret(**endpoint.public(), secret=secret)


@app.get(
    "/v1/webhooks", scopes=(READ,), tags=["webhooks"], summary="List endpoints", responses=app.documented(200, 400)
)
def list_webhooks(limit: Limit = 20, cursor: Cursor = None) -> WebhookPage:
    who = app.caller()
    items, next_cursor = webhooks.page(who.tenant_id, limit=limit, cursor=cursor)
    return WebhookPage(items=[Webhook(**e.public()) for e in items], next_cursor=next_cursor)


@app.get(
    "/v1/webhooks/<webhook_id>",
    scopes=(READ,),
    tags=["webhooks"],
    summary="Get an endpoint and its health",
    responses=app.documented(200, 404),
)
def get_webhook(webhook_id: str) -> WebhookDetail:
    who = app.caller()
    endpoint = webhooks.get(who.tenant_id, webhook_id)
    return WebhookDetail(**endpoint.public(), health=webhooks.health(who.tenant_id, webhook_id))  # type: ignore[arg-type]


@app.get(
    "/v1/webhooks/<webhook_id>/stats",
    scopes=(READ,),
    tags=["webhooks"],
    summary="Delivery statistics over the last 24 hours or 7 days",
    responses=app.documented(200, 400, 404),
)
def webhook_stats(
    webhook_id: str, window: Annotated[Literal["24h", "7d"], Query(description="How far back")] = "24h"
) -> WebhookStats:
    who = app.caller()
    return WebhookStats(**webhooks.stats(who.tenant_id, webhook_id, window))


@app.patch(
    "/v1/webhooks/<webhook_id>",
    scopes=(ADMIN,),
    tags=["webhooks"],
    summary="Change url, filters, description, state or custom headers (re-enabling may also recover what it missed)",
    responses=app.documented(200, 400, 404, 409, 413, 415, 422),
)
def update_webhook(webhook_id: str, body: Annotated[WebhookUpdate, Body()]) -> WebhookUpdated:
    who = app.caller()
    # Absent or null: unchanged (a null must not reach the core as a value, e.g. enabled=None).
    # Inside `headers` a null is a value: it removes that header.
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    endpoint, recovery = webhooks.update(who.tenant_id, who.actor, webhook_id, changes)
    return WebhookUpdated(**endpoint.public(), recovery=Replay(**recovery.public()) if recovery else None)


@app.delete(
    "/v1/webhooks/<webhook_id>",
    scopes=(ADMIN,),
    status_code=204,
    tags=["webhooks"],
    summary="Remove an endpoint",
    responses=app.documented(204, 404, description="Removed"),
)
def delete_webhook(webhook_id: str) -> Response[None]:
    who = app.caller()
    webhooks.delete(who.tenant_id, who.actor, webhook_id)
    return Response(status_code=204)


@app.post(
    "/v1/webhooks/<webhook_id>/rotate-secret",
    scopes=(ADMIN,),
    tags=["webhooks"],
    summary="Rotate the signing secret (new one shown once; both sign during the overlap)",
    responses=app.documented(200, 400, 404, 409, 413, 415),
)
def rotate_secret(webhook_id: str, body: Annotated[RotateSecret | None, Body()] = None) -> WebhookWithSecret:
    who = app.caller()
    overlap = body.overlap_seconds if body else None
    endpoint, secret = webhooks.rotate_secret(who.tenant_id, who.actor, webhook_id, overlap_seconds=overlap)
    return WebhookWithSecret(**endpoint.public(), secret=secret)


@app.post(
    "/v1/webhooks/<webhook_id>/test",
    scopes=(ADMIN,),
    tags=["webhooks"],
    summary="Send a test.ping now and report the outcome",
    responses=app.documented(200, 400, 404, 413, 415),
)
def test_webhook(webhook_id: str, body: Annotated[TestDelivery | None, Body()] = None) -> TestResult:
    who = app.caller()
    result = webhooks.test(who.tenant_id, who.actor, webhook_id, message=body.message if body else "")
    return TestResult(**result.public())


# -- deliveries -----------------------------------------------------------------------------------
@app.get(
    "/v1/webhooks/<webhook_id>/deliveries",
    scopes=(READ,),
    tags=["deliveries"],
    summary="Search the delivery history, newest first",
    description=DELIVERY_SEARCH,
    responses=app.documented(200, 400, 404),
)
def list_deliveries(
    webhook_id: str,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    event_type: Annotated[str | None, Query(max_length=LIMITS.max_event_type_length)] = None,
    since: Annotated[Instant | None, Query(description="Created at or after (RFC 3339)")] = None,
    until: Annotated[Instant | None, Query(description="Created before (RFC 3339)")] = None,
    status_code: Annotated[int | None, Query(ge=100, le=599, description="The receiver's last answer")] = None,
) -> DeliveryPage:
    who = app.caller()
    page = webhooks.deliveries(
        who.tenant_id,
        webhook_id,
        limit=limit,
        cursor=cursor,
        status=status,
        event_type=event_type,
        since=since,
        until=until,
        status_code=status_code,
    )
    return DeliveryPage(items=[d.public() for d in page.items], next_cursor=page.next_cursor)  # type: ignore[misc]


@app.post(
    "/v1/webhooks/<webhook_id>/replay",
    scopes=(ADMIN,),
    status_code=202,
    tags=["deliveries"],
    summary="Replay the endpoint's failed deliveries",
    responses=app.documented(202, 400, 404, 409, 413, 415),
)
def replay_failed(webhook_id: str, body: Annotated[ReplayFailed | None, Body()] = None) -> DeliveryPage:
    who = app.caller()
    request = body or ReplayFailed()
    # Same form as the stored created_at (UTC, milliseconds, "Z"); years stay four digits.
    since = request.since.isoformat(timespec="milliseconds").replace("+00:00", "Z") if request.since else None
    replayed = webhooks.replay_failed(who.tenant_id, who.actor, webhook_id, since=since, limit=request.limit)
    return DeliveryPage(items=[d.public() for d in replayed], next_cursor=None)  # type: ignore[misc]


@app.post(
    "/v1/webhooks/<webhook_id>/recover",
    scopes=(ADMIN,),
    status_code=202,
    tags=["replays"],
    summary="Send the endpoint's deliveries of a time window again, now or at a set time",
    description="Runs asynchronously in bounded batches: follow it with GET /v1/replays/{id}. Deliveries "
    "already on their way, or sent by an overlapping replay, are skipped.",
    responses=app.documented(202, 400, 404, 409, 413, 415, 422),
)
def recover(webhook_id: str, body: Annotated[Recover, Body()]) -> Replay:
    who = app.caller()
    recovery = services.endpoint_recovery().request(
        who.tenant_id,
        who.actor,
        webhook_id,
        since=body.since,
        until=body.until,
        status=body.status,
        missed=body.missed,
        at=body.at,
    )
    return Replay(**recovery.public())


@app.get(
    "/v1/replays",
    scopes=(READ,),
    tags=["replays"],
    summary="Replays (recoveries), newest first",
    responses=app.documented(200, 400),
)
def list_replays(
    limit: Limit = 20,
    cursor: Cursor = None,
    webhook_id: Annotated[str | None, Query(max_length=64, description="Only this endpoint's")] = None,
) -> ReplayPage:
    who = app.caller()
    items, next_cursor = services.endpoint_recovery().page(
        who.tenant_id, webhook_id=webhook_id, limit=limit, cursor=cursor
    )
    return ReplayPage(items=[Replay(**r.public()) for r in items], next_cursor=next_cursor)


@app.get(
    "/v1/replays/<replay_id>",
    scopes=(READ,),
    tags=["replays"],
    summary="A replay: its status and counts",
    responses=app.documented(200, 404),
)
def get_replay(replay_id: str) -> Replay:
    who = app.caller()
    return Replay(**services.endpoint_recovery().get(who.tenant_id, replay_id).public())


@app.delete(
    "/v1/replays/<replay_id>",
    scopes=(ADMIN,),
    tags=["replays"],
    summary="Cancel a scheduled, queued or running replay",
    responses=app.documented(200, 404, 409),
)
def cancel_replay(replay_id: str) -> Replay:
    who = app.caller()
    return Replay(**services.endpoint_recovery().cancel(who.tenant_id, replay_id).public())


@app.get(
    "/v1/deliveries/<delivery_id>",
    scopes=(READ,),
    tags=["deliveries"],
    summary="A delivery with its attempts",
    responses=app.documented(200, 404),
)
def get_delivery(delivery_id: str) -> DeliveryDetail:
    who = app.caller()
    delivery, envelope = webhooks.delivery(who.tenant_id, delivery_id)
    return DeliveryDetail(**delivery.public(envelope=envelope))


@app.post(
    "/v1/deliveries/<delivery_id>/replay",
    scopes=(ADMIN,),
    status_code=202,
    tags=["deliveries"],
    summary="Send a delivered or failed delivery again (same bytes, same idempotency key)",
    responses=app.documented(202, 404, 409),
)
def replay_delivery(delivery_id: str) -> DeliveryDetail:
    who = app.caller()
    webhooks.replay(who.tenant_id, who.actor, delivery_id)
    delivery, envelope = webhooks.delivery(who.tenant_id, delivery_id)
    return DeliveryDetail(**delivery.public(envelope=envelope))


# -- catalog and events ---------------------------------------------------------------------------
@app.get(
    "/v1/event-types",
    scopes=(READ,),
    tags=["events"],
    summary="The event catalog: families, types and their data fields",
    responses=app.documented(200),
)
def event_types() -> EventTypePage:
    app.caller()
    described = catalog.describe()
    items = [t for family in described["families"] for t in family["types"]]
    families = [
        {"family": f["family"], "filter": f["filter"], "types": [t["type"] for t in f["types"]]}
        for f in described["families"]
    ]
    return EventTypePage(items=items, families=families)  # type: ignore[arg-type]


@app.post(
    "/v1/events",
    scopes=(EVENTS,),
    status_code=201,
    tags=["events"],
    summary=f"Write 1-{LIMITS.max_events_per_request} metadata events to the audit log",
    responses=idempotency.documented(app.documented(201, 400, 413, 415, 422)),
)
def write_events(body: Annotated[EventBody, Body()], idempotency_key: IdempotencyKey = None) -> EventWrittenPage:
    return EventWrittenPage(**app.once(idempotency_key, lambda: _write_events(body).model_dump(mode="json")))


def _write_events(body: EventBody) -> EventWrittenPage:
    who = app.caller()
    given = body.events if isinstance(body, EventBatch) else [body]
    for index, event in enumerate(given):
        try:
            catalog.writable_by_tenants(event.type)
        except MeshanicsError as error:
            if isinstance(body, EventBatch):
                error.field = f"events.{index}.type"
            raise
    inputs = [
        EventInput(e.type, subject=e.subject, actor=e.actor or who.actor, data=e.data, occurred_at=e.occurred_at)
        for e in given
    ]
    records = services.audit_log().append(who.tenant_id, inputs)
    written = [
        {"sequence": r.sequence, "idempotency_key": r.idempotency_key, "type": r.type, "occurred_at": r.occurred_at}
        for r in records
    ]
    return EventWrittenPage(items=written)  # type: ignore[arg-type]


# -- registry connections (registries.py) ---------------------------------------------------------
app.include_router(registry_routes)


# -- the calling key ------------------------------------------------------------------------------
@app.get(
    "/v1/whoami",
    scopes=SCOPES,
    tags=["keys"],
    summary="The calling API key: its tenant, id and scopes",
    description="What a client (the console) needs to show only what the key may do; the API still checks.",
    responses=app.documented(200),
)
def whoami() -> Identity:
    who = app.caller()
    return Identity(tenant_id=who.tenant_id, key_id=who.key_id, scopes=sorted(who.scopes))


# -- the console: public (no key), it signs in in the browser --------------------------------------
@app.get("/console", include_in_schema=False)
def console_page() -> Response[Any]:
    return console.page(app.current_event.path)


@app.get("/console/assets/<version>/<name>", include_in_schema=False)
def console_asset(version: str, name: str) -> Response[Any]:
    return console.asset(version, name)


# The document and the docs page are built on request (not at import: see meshanics_api.openapi).
@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return app.openapi_response(title=TITLE, version=__version__)


@app.get("/v1/docs", include_in_schema=False)
def docs() -> Response[str]:
    return app.docs_response(title=TITLE, version=__version__)


@entry_point(logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""Tenant API: webhook endpoints, secrets, test deliveries, history, replay, the catalog and events.

Thin door: Powertools' resolver validates input against the models (and generates OpenAPI from
them); the caller's tenant and scopes come from the authorizer; the core does the work.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from models import (
    DeliveryDetail,
    DeliveryPage,
    EventBatch,
    EventIn,
    EventTypePage,
    EventWrittenPage,
    ReplayFailed,
    RotateSecret,
    TestDelivery,
    TestResult,
    Webhook,
    WebhookCreate,
    WebhookPage,
    WebhookUpdate,
    WebhookWithSecret,
)

from meshanics import __version__, catalog, services
from meshanics.apidoor import caller, install_error_handlers
from meshanics.audit import EventInput
from meshanics.clock import now_iso
from meshanics.config import settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
app = APIGatewayRestResolver(enable_validation=True)
install_error_handlers(app, max_request_bytes=settings().limits.max_request_bytes)
app.enable_swagger(
    path="/v1/docs",
    title="Meshanics Integrations API",
    version=__version__,
    security_schemes={"apiKey": HTTPBearer(description="API key: Authorization: Bearer <key>")},
    security=[{"apiKey": []}],
)
webhooks = services.webhooks()

READ = "integrations:read"
ADMIN = "integrations:admin"
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]


# -- webhook endpoints ----------------------------------------------------------------------------
@app.post("/v1/webhooks", status_code=201, tags=["webhooks"], summary="Create an endpoint (returns its secret once)")
def create_webhook(body: Annotated[WebhookCreate, Body()]) -> WebhookWithSecret:
    who = caller(app).require(ADMIN)
    endpoint, secret = webhooks.create(
        who.tenant_id,
        who.actor,
        url=body.url,
        events=body.events,
        description=body.description,
        allow_private_network=body.allow_private_network,
        enabled=body.enabled,
    )
    return WebhookWithSecret(**endpoint.public(), secret=secret)


@app.get("/v1/webhooks", tags=["webhooks"], summary="List endpoints")
def list_webhooks(limit: Limit = 20, cursor: Cursor = None) -> WebhookPage:
    who = caller(app).require(READ)
    items, next_cursor = webhooks.page(who.tenant_id, limit=limit, cursor=cursor)
    return WebhookPage(items=[Webhook(**e.public()) for e in items], next_cursor=next_cursor)


@app.get("/v1/webhooks/<webhook_id>", tags=["webhooks"], summary="Get an endpoint")
def get_webhook(webhook_id: str) -> Webhook:
    who = caller(app).require(READ)
    return Webhook(**webhooks.get(who.tenant_id, webhook_id).public())


@app.patch("/v1/webhooks/<webhook_id>", tags=["webhooks"], summary="Change url, filters, description or state")
def update_webhook(webhook_id: str, body: Annotated[WebhookUpdate, Body()]) -> Webhook:
    who = caller(app).require(ADMIN)
    changes = body.model_dump(exclude_unset=True)
    return Webhook(**webhooks.update(who.tenant_id, who.actor, webhook_id, changes).public())


@app.delete("/v1/webhooks/<webhook_id>", status_code=204, tags=["webhooks"], summary="Remove an endpoint")
def delete_webhook(webhook_id: str) -> Response[None]:
    who = caller(app).require(ADMIN)
    webhooks.delete(who.tenant_id, who.actor, webhook_id)
    return Response(status_code=204)


@app.post(
    "/v1/webhooks/<webhook_id>/rotate-secret",
    tags=["webhooks"],
    summary="Rotate the signing secret (new one shown once; both sign during the overlap)",
)
def rotate_secret(webhook_id: str, body: Annotated[RotateSecret | None, Body()] = None) -> WebhookWithSecret:
    who = caller(app).require(ADMIN)
    overlap = body.overlap_seconds if body else None
    endpoint, secret = webhooks.rotate_secret(who.tenant_id, who.actor, webhook_id, overlap_seconds=overlap)
    return WebhookWithSecret(**endpoint.public(), secret=secret)


@app.post("/v1/webhooks/<webhook_id>/test", tags=["webhooks"], summary="Send a test.ping now and report the outcome")
def test_webhook(webhook_id: str, body: Annotated[TestDelivery | None, Body()] = None) -> TestResult:
    who = caller(app).require(ADMIN)
    result = webhooks.test(who.tenant_id, who.actor, webhook_id, message=body.message if body else "")
    return TestResult(**result.public())


# -- deliveries -----------------------------------------------------------------------------------
@app.get("/v1/webhooks/<webhook_id>/deliveries", tags=["deliveries"], summary="Delivery history, newest first")
def list_deliveries(
    webhook_id: str,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    event_type: Annotated[str | None, Query(max_length=128)] = None,
) -> DeliveryPage:
    who = caller(app).require(READ)
    items, next_cursor = webhooks.deliveries(
        who.tenant_id, webhook_id, limit=limit, cursor=cursor, status=status, event_type=event_type
    )
    return DeliveryPage(items=[d.public() for d in items], next_cursor=next_cursor)  # type: ignore[misc]


@app.post(
    "/v1/webhooks/<webhook_id>/replay",
    status_code=202,
    tags=["deliveries"],
    summary="Replay the endpoint's failed deliveries",
)
def replay_failed(webhook_id: str, body: Annotated[ReplayFailed | None, Body()] = None) -> DeliveryPage:
    who = caller(app).require(ADMIN)
    request = body or ReplayFailed()
    since = now_iso(request.since.timestamp()) if request.since else None
    replayed = webhooks.replay_failed(who.tenant_id, who.actor, webhook_id, since=since, limit=request.limit)
    return DeliveryPage(items=[d.public() for d in replayed], next_cursor=None)  # type: ignore[misc]


@app.get("/v1/deliveries/<delivery_id>", tags=["deliveries"], summary="A delivery with its attempts")
def get_delivery(delivery_id: str) -> DeliveryDetail:
    who = caller(app).require(READ)
    return DeliveryDetail(**webhooks.delivery(who.tenant_id, delivery_id).public(detail=True))


@app.post(
    "/v1/deliveries/<delivery_id>/replay", status_code=202, tags=["deliveries"], summary="Replay a failed delivery"
)
def replay_delivery(delivery_id: str) -> DeliveryDetail:
    who = caller(app).require(ADMIN)
    return DeliveryDetail(**webhooks.replay(who.tenant_id, who.actor, delivery_id).public(detail=True))


# -- catalog and events ---------------------------------------------------------------------------
@app.get("/v1/event-types", tags=["events"], summary="The event catalog: families, types and their data fields")
def event_types() -> EventTypePage:
    caller(app).require(READ)
    described = catalog.describe()
    items = [t for family in described["families"] for t in family["types"]]
    families = [
        {"family": f["family"], "filter": f["filter"], "types": [t["type"] for t in f["types"]]}
        for f in described["families"]
    ]
    return EventTypePage(items=items, families=families)  # type: ignore[arg-type]


@app.post("/v1/events", status_code=201, tags=["events"], summary="Write 1-100 metadata events to the audit log")
def write_events(body: Annotated[EventIn | EventBatch, Body()]) -> EventWrittenPage:
    who = caller(app).require("events:write")
    given = body.events if isinstance(body, EventBatch) else [body]
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


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="Meshanics Integrations API", version=__version__),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""Tenant API: webhook endpoints, secrets, test deliveries, history, replay, the catalog and events.

Thin door: Powertools' resolver validates input against the models (and generates OpenAPI from
them); the caller's tenant and scopes come from the authorizer; the core does the work. No X-Ray SDK
here (about 75 ms of import): Lambda's active tracing records the invocation, and interactive cold
starts stay lean.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from models import (
    DeliveryDetail,
    DeliveryPage,
    ErrorResponse,
    EventBatch,
    EventBody,
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
from meshanics.apidoor import RouteScopes, caller, install_error_handlers
from meshanics.config import settings
from meshanics.errors import MeshanicsError
from meshanics.model import EventInput


class Resolver(APIGatewayRestResolver):
    """Powertools' resolver whose OpenAPI document leaves out the default 422 "Validation Error":
    request validation errors answer 400 in the one error shape (apidoor), documented per route."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
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


logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
app = Resolver(enable_validation=True)
webhooks = services.webhooks()

READ = "integrations:read"
ADMIN = "integrations:admin"
EVENTS = "events:write"

# The scope each route needs: checked before the body is validated, and by `caller` in the route.
ROUTES = RouteScopes(
    {
        ("POST", "/v1/webhooks"): (ADMIN,),
        ("GET", "/v1/webhooks"): (READ,),
        ("GET", "/v1/webhooks/{id}"): (READ,),
        ("PATCH", "/v1/webhooks/{id}"): (ADMIN,),
        ("DELETE", "/v1/webhooks/{id}"): (ADMIN,),
        ("POST", "/v1/webhooks/{id}/rotate-secret"): (ADMIN,),
        ("POST", "/v1/webhooks/{id}/test"): (ADMIN,),
        ("GET", "/v1/webhooks/{id}/deliveries"): (READ,),
        ("POST", "/v1/webhooks/{id}/replay"): (ADMIN,),
        ("GET", "/v1/deliveries/{id}"): (READ,),
        ("POST", "/v1/deliveries/{id}/replay"): (ADMIN,),
        ("GET", "/v1/event-types"): (READ,),
        ("POST", "/v1/events"): (EVENTS,),
    }
)
install_error_handlers(
    app, max_request_bytes=settings().limits.max_request_bytes, json_bodies_under="/v1/", routes=ROUTES
)
Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]

ERRORS: dict[int, str] = {
    400: "Invalid request: the error names the field (validation, egress rule, event filter, cursor)",
    401: "Missing, malformed, unknown or revoked API key",
    403: "The API key lacks the scope this route needs (code missing_scope)",
    404: "No such webhook or delivery for this tenant",
    409: "Conflict: a concurrent change, or a delivery that cannot be replayed in its state",
    413: "The request body is larger than the configured limit",
    415: "The request body is not application/json",
    422: "A configured limit would be exceeded (code limit_exceeded)",
}


def documented(status: int, *errors: int, description: str = "Successful Response") -> dict[int, OpenAPIResponse]:
    """The route's responses for the OpenAPI document: its success and every error it can answer."""
    success: OpenAPIResponse = {"description": description}
    if status == 204:
        success["content"] = {}
    responses: dict[int, OpenAPIResponse] = {status: success}
    for code in (401, 403, *errors):
        responses[code] = {"description": ERRORS[code], "content": {"application/json": {"model": ErrorResponse}}}
    return responses


# -- webhook endpoints ----------------------------------------------------------------------------
@app.post(
    "/v1/webhooks",
    status_code=201,
    tags=["webhooks"],
    summary="Create an endpoint (returns its secret once)",
    responses=documented(201, 400, 409, 413, 415, 422),
)
def create_webhook(body: Annotated[WebhookCreate, Body()]) -> WebhookWithSecret:
    who = caller(app, ROUTES)
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


@app.get("/v1/webhooks", tags=["webhooks"], summary="List endpoints", responses=documented(200, 400))
def list_webhooks(limit: Limit = 20, cursor: Cursor = None) -> WebhookPage:
    who = caller(app, ROUTES)
    items, next_cursor = webhooks.page(who.tenant_id, limit=limit, cursor=cursor)
    return WebhookPage(items=[Webhook(**e.public()) for e in items], next_cursor=next_cursor)


@app.get("/v1/webhooks/<webhook_id>", tags=["webhooks"], summary="Get an endpoint", responses=documented(200, 404))
def get_webhook(webhook_id: str) -> Webhook:
    who = caller(app, ROUTES)
    return Webhook(**webhooks.get(who.tenant_id, webhook_id).public())


@app.patch(
    "/v1/webhooks/<webhook_id>",
    tags=["webhooks"],
    summary="Change url, filters, description or state",
    responses=documented(200, 400, 404, 409, 413, 415),
)
def update_webhook(webhook_id: str, body: Annotated[WebhookUpdate, Body()]) -> Webhook:
    who = caller(app, ROUTES)
    # Absent or null: unchanged (a null must not reach the core as a value, e.g. enabled=None).
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return Webhook(**webhooks.update(who.tenant_id, who.actor, webhook_id, changes).public())


@app.delete(
    "/v1/webhooks/<webhook_id>",
    status_code=204,
    tags=["webhooks"],
    summary="Remove an endpoint",
    responses=documented(204, 404, description="Removed"),
)
def delete_webhook(webhook_id: str) -> Response[None]:
    who = caller(app, ROUTES)
    webhooks.delete(who.tenant_id, who.actor, webhook_id)
    return Response(status_code=204)


@app.post(
    "/v1/webhooks/<webhook_id>/rotate-secret",
    tags=["webhooks"],
    summary="Rotate the signing secret (new one shown once; both sign during the overlap)",
    responses=documented(200, 400, 404, 409, 413, 415),
)
def rotate_secret(webhook_id: str, body: Annotated[RotateSecret | None, Body()] = None) -> WebhookWithSecret:
    who = caller(app, ROUTES)
    overlap = body.overlap_seconds if body else None
    endpoint, secret = webhooks.rotate_secret(who.tenant_id, who.actor, webhook_id, overlap_seconds=overlap)
    return WebhookWithSecret(**endpoint.public(), secret=secret)


@app.post(
    "/v1/webhooks/<webhook_id>/test",
    tags=["webhooks"],
    summary="Send a test.ping now and report the outcome",
    responses=documented(200, 400, 404, 413, 415),
)
def test_webhook(webhook_id: str, body: Annotated[TestDelivery | None, Body()] = None) -> TestResult:
    who = caller(app, ROUTES)
    result = webhooks.test(who.tenant_id, who.actor, webhook_id, message=body.message if body else "")
    return TestResult(**result.public())


# -- deliveries -----------------------------------------------------------------------------------
@app.get(
    "/v1/webhooks/<webhook_id>/deliveries",
    tags=["deliveries"],
    summary="Delivery history, newest first",
    responses=documented(200, 400, 404),
)
def list_deliveries(
    webhook_id: str,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    event_type: Annotated[str | None, Query(max_length=128)] = None,
) -> DeliveryPage:
    who = caller(app, ROUTES)
    page = webhooks.deliveries(
        who.tenant_id, webhook_id, limit=limit, cursor=cursor, status=status, event_type=event_type
    )
    return DeliveryPage(items=[d.public() for d in page.items], next_cursor=page.next_cursor)  # type: ignore[misc]


@app.post(
    "/v1/webhooks/<webhook_id>/replay",
    status_code=202,
    tags=["deliveries"],
    summary="Replay the endpoint's failed deliveries",
    responses=documented(202, 400, 404, 409, 413, 415),
)
def replay_failed(webhook_id: str, body: Annotated[ReplayFailed | None, Body()] = None) -> DeliveryPage:
    who = caller(app, ROUTES)
    request = body or ReplayFailed()
    # Same form as the stored created_at (UTC, milliseconds, "Z"); years stay four digits.
    since = request.since.isoformat(timespec="milliseconds").replace("+00:00", "Z") if request.since else None
    replayed = webhooks.replay_failed(who.tenant_id, who.actor, webhook_id, since=since, limit=request.limit)
    return DeliveryPage(items=[d.public() for d in replayed], next_cursor=None)  # type: ignore[misc]


@app.get(
    "/v1/deliveries/<delivery_id>",
    tags=["deliveries"],
    summary="A delivery with its attempts",
    responses=documented(200, 404),
)
def get_delivery(delivery_id: str) -> DeliveryDetail:
    who = caller(app, ROUTES)
    delivery, envelope = webhooks.delivery(who.tenant_id, delivery_id)
    return DeliveryDetail(**delivery.public(envelope=envelope))


@app.post(
    "/v1/deliveries/<delivery_id>/replay",
    status_code=202,
    tags=["deliveries"],
    summary="Replay a failed delivery",
    responses=documented(202, 404, 409),
)
def replay_delivery(delivery_id: str) -> DeliveryDetail:
    who = caller(app, ROUTES)
    webhooks.replay(who.tenant_id, who.actor, delivery_id)
    delivery, envelope = webhooks.delivery(who.tenant_id, delivery_id)
    return DeliveryDetail(**delivery.public(envelope=envelope))


# -- catalog and events ---------------------------------------------------------------------------
@app.get(
    "/v1/event-types",
    tags=["events"],
    summary="The event catalog: families, types and their data fields",
    responses=documented(200),
)
def event_types() -> EventTypePage:
    caller(app, ROUTES)
    described = catalog.describe()
    items = [t for family in described["families"] for t in family["types"]]
    families = [
        {"family": f["family"], "filter": f["filter"], "types": [t["type"] for t in f["types"]]}
        for f in described["families"]
    ]
    return EventTypePage(items=items, families=families)  # type: ignore[arg-type]


@app.post(
    "/v1/events",
    status_code=201,
    tags=["events"],
    summary="Write 1-100 metadata events to the audit log",
    responses=documented(201, 400, 413, 415, 422),
)
def write_events(body: Annotated[EventBody, Body()]) -> EventWrittenPage:
    who = caller(app, ROUTES)
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


# The spec and the docs page are built on request: Powertools' enable_swagger() would build the
# OpenAPI models at import, adding about 100 ms to every cold start of this function.
# One configuration for both the served document (/v1/openapi.json) and the interactive docs.
def openapi_document() -> str:
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    app.configure_openapi(
        title="Meshanics Integrations API",
        version=__version__,
        security_schemes={"apiKey": HTTPBearer(description="API key: Authorization: Bearer <key>")},
        security=[{"apiKey": []}],
    )
    return app.get_openapi_json_schema()


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document())


@app.get("/v1/docs", include_in_schema=False)
def docs() -> Response[str]:
    from pathlib import Path

    import aws_lambda_powertools.event_handler as event_handler
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = Path(event_handler.__file__).parent / "openapi" / "swagger_ui"
    page = generate_swagger_html(
        openapi_document().replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
    return Response(status_code=200, content_type="text/html", body=page)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

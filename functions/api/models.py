"""The tenant API's request and response shapes (the contract; OpenAPI is generated from these).

Every bound comes from the deployment's limits (meshanics.config.Limits), read once at import: Lambda
sets the environment before it imports the function, so the document states the limits enforced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from meshanics.config import settings

LIMITS = settings().limits


class Strict(BaseModel):
    # Requests are taken as documented: no unknown field, no coercion ("5" is not 5, 1 is not true).
    model_config = ConfigDict(extra="forbid", strict=True)


def _text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


def _utc(value: datetime) -> datetime:
    """The moment in UTC; a value that cannot be expressed in UTC is a validation error, not a crash."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None


def _event_time(value: datetime) -> datetime:
    if not 1970 <= value.year <= 9999:
        raise ValueError("timestamp must be between 1970-01-01 and 9999-12-31 (UTC)")
    return value


# RFC 3339 timestamps must carry a time zone (a naive one would be read in the server's zone).
# (Parsed from text, not strictly: strict mode would accept only datetime objects; never from numbers.)
Instant = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_text), AfterValidator(_utc)]
EventTime = Annotated[
    AwareDatetime, Field(strict=False), BeforeValidator(_text), AfterValidator(_utc), AfterValidator(_event_time)
]


FILTERS = f"Event filters (at most {LIMITS.max_filters}): exact types or trailing wildcards (`rollout.*`)"


class WebhookCreate(Strict):
    url: str = Field(
        min_length=1,
        max_length=LIMITS.max_url_length,
        description="Receiver URL (https; http only with allow_private_network)",
    )
    events: list[str] = Field(
        default_factory=list, max_length=LIMITS.max_filters, description=f"{FILTERS}; empty means all events"
    )
    description: str = Field(default="", max_length=LIMITS.max_description)
    allow_private_network: bool = Field(
        default=False, description="Allow private/loopback receivers (link-local and metadata stay refused)"
    )
    enabled: bool = True


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=LIMITS.max_url_length)
    events: list[str] | None = Field(default=None, max_length=LIMITS.max_filters, description=FILTERS)
    description: str | None = Field(default=None, max_length=LIMITS.max_description)
    allow_private_network: bool | None = None
    enabled: bool | None = None


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    allow_private_network: bool
    enabled: bool
    disabled_reason: Literal["api", "failing", "gone"] | None = Field(
        description="Why it is disabled: by the API (api), after failing every attempt for the configured "
        "period (failing), or because the receiver answered 410 Gone (gone)"
    )
    created_at: str
    updated_at: str
    secret_rotation_overlap_until: str | None = None


class WebhookHealth(BaseModel):
    consecutive_failures: int = Field(description="Failed attempts since the last success")
    failing_since: str | None = Field(description="First failed attempt since the last success")
    last_success_at: str | None
    last_failure_at: str | None
    last_status_code: int | None = Field(description="The receiver's last HTTP status code, if it answered")
    attempts_24h: int
    success_rate_24h: float | None = Field(description="Successful attempts / attempts, last 24 hours")


class WebhookDetail(Webhook):
    health: WebhookHealth


class LatencyPercentiles(BaseModel):
    p50: int | None
    p95: int | None


class ErrorCount(BaseModel):
    error: str = Field(description="Kind of error: HTTP <status>, timeout, connection failed, TLS error, ...")
    count: int


class WebhookStats(BaseModel):
    window: Literal["24h", "7d"]
    from_: str = Field(alias="from")
    to: str
    attempts: int
    delivered: int = Field(description="Attempts that succeeded")
    retried: int = Field(description="Failed attempts with another attempt to come")
    failed: int = Field(description="Deliveries that failed after their last attempt")
    success_rate: float | None
    latency_ms: LatencyPercentiles = Field(description="Attempt latency percentiles, interpolated in 12 buckets")
    top_errors: list[ErrorCount]


class WebhookWithSecret(Webhook):
    secret: str = Field(description="The signing secret. Shown only in this response: store it now.")


class WebhookPage(BaseModel):
    items: list[Webhook]
    next_cursor: str | None


class RotateSecret(Strict):
    overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        le=LIMITS.max_rotation_overlap,
        description=(
            f"How long the previous secret keeps signing, in seconds (default {settings().rotation_overlap_seconds})"
        ),
    )


class TestDelivery(Strict):
    message: str = Field(default="", max_length=LIMITS.max_test_message)


class TestResult(BaseModel):
    delivery_id: str
    status: Literal["delivered", "failed"]
    status_code: int | None
    duration_ms: int
    error: str | None


class Attempt(BaseModel):
    attempt: int
    at: str
    outcome: Literal["delivered", "failed"]
    status_code: int | None
    duration_ms: int
    error: str | None


class Delivery(BaseModel):
    id: str
    webhook_id: str
    event_type: str
    sequence: int
    idempotency_key: str
    status: Literal["pending", "delivered", "failed"]
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None
    next_attempt_at: str | None
    replays: int


class DeliveryDetail(Delivery):
    attempts: list[Attempt]
    envelope: dict[str, Any]


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None


class ReplayFailed(Strict):
    since: Instant | None = Field(default=None, description="Only deliveries created at or after this time")
    limit: int = Field(default=min(50, LIMITS.max_replay_batch), ge=1, le=LIMITS.max_replay_batch)


class EventField(BaseModel):
    name: str
    type: str
    required: bool
    max_length: int | None
    description: str


class EventTypeInfo(BaseModel):
    type: str
    family: str
    description: str
    data: list[EventField]
    platform_only: bool = Field(description="Written only by the platform; POST /v1/events refuses it")
    operational: bool = Field(
        description="About one endpoint (data.webhook_id): never delivered to that endpoint, and never raised by "
        "the delivery of another operational event"
    )


class Family(BaseModel):
    family: str
    filter: str
    types: list[str]


class EventTypePage(BaseModel):
    items: list[EventTypeInfo]
    families: list[Family]
    next_cursor: str | None = None


class EventIn(Strict):
    type: str = Field(min_length=1, max_length=LIMITS.max_event_type_length)
    subject: str = Field(min_length=1, max_length=LIMITS.max_subject_length)
    actor: str | None = Field(
        default=None, min_length=1, max_length=LIMITS.max_actor_length, description="Defaults to the API key"
    )
    occurred_at: EventTime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=LIMITS.max_events_per_request)


def _event_body_kind(value: Any) -> str:
    if isinstance(value, EventBatch) or (isinstance(value, dict) and "events" in value):
        return "EventBatch"
    return "EventIn"


# One event, or {"events": [...]}: chosen by the presence of `events`, so a validation error
# speaks about the shape the caller meant (not about every member of the union).
EventBody = Annotated[
    Annotated[EventIn, Tag("EventIn")] | Annotated[EventBatch, Tag("EventBatch")],
    Discriminator(_event_body_kind),
]


class EventWritten(BaseModel):
    sequence: int
    idempotency_key: str
    type: str
    occurred_at: str


class EventWrittenPage(BaseModel):
    items: list[EventWritten]
    next_cursor: str | None = None


class Identity(BaseModel):
    tenant_id: str
    key_id: str
    scopes: list[str] = Field(description="The key's scopes (integrations:admin includes integrations:read)")

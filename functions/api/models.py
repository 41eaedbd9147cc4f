"""The tenant API's request and response shapes, registry connections included (the contract; OpenAPI
is generated from these).

Every bound comes from the deployment's limits (meshanics.config.Limits), read once at import: Lambda
sets the environment before it imports the function, so the document states the limits enforced.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from meshanics.config import settings
from meshanics.model import HEADER_MASK

LIMITS = settings().limits


class Strict(BaseModel):
    # Requests are taken as documented: no unknown field, no coercion ("5" is not 5, 1 is not true).
    model_config = ConfigDict(extra="forbid", strict=True)


# The shape of an RFC 3339 date-time (pydantic alone would also take "1" as seconds since 1970).
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
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


DELIVERY_SEARCH = (
    "Every filter given must match: `status`, `event_type` (exact or `family.*`), `since` (inclusive) and "
    "`until` (exclusive) on when the delivery was created (RFC 3339 with a zone, e.g. `2026-06-16T09:30:00Z`; "
    "`since` before `until`), `status_code` (the receiver's last answer, 100-599: only attempted deliveries "
    "have one). A page may hold fewer than `limit` items while `next_cursor` is set (each page reads a bounded "
    "part of the history): follow `next_cursor` until it is null, with the same filters (a cursor sent with "
    "other filters is refused: 400 `cursor_mismatch`)."
)
FILTERS = f"Event filters (at most {LIMITS.max_filters}): exact types or trailing wildcards (`rollout.*`)"
HEADERS = (
    f"Custom headers sent with every delivery (at most {LIMITS.max_custom_headers}): names are RFC 9110 tokens "
    f"of at most {LIMITS.max_header_name_length} characters, case-insensitive; values printable ASCII of at most "
    f"{LIMITS.max_header_value_length} characters; {LIMITS.max_custom_headers_bytes} bytes of names and values in "
    "all. Refused: X-Meshanics-*, Meshanics-*, webhook-*, Content-*, Host, User-Agent, Cookie, Expect, Proxy-* "
    "and the hop-by-hop headers. Values are write-only (sealed; responses show them masked)."
)


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
    # repr=False: Powertools logs the handler's arguments at DEBUG, and the values are secrets.
    headers: dict[str, str] = Field(
        default_factory=dict, max_length=LIMITS.max_custom_headers, description=HEADERS, repr=False
    )


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=LIMITS.max_url_length)
    events: list[str] | None = Field(default=None, max_length=LIMITS.max_filters, description=FILTERS)
    description: str | None = Field(default=None, max_length=LIMITS.max_description)
    allow_private_network: bool | None = None
    enabled: bool | None = None
    recover_since: Instant | None = Field(
        default=None,
        description="With enabled: true, also recover the endpoint's failed deliveries and the events it "
        "missed while disabled, from this time until now (a replay, see POST /v1/webhooks/{id}/recover)",
    )
    # A change can name every header an endpoint may have plus as many to remove.
    headers: dict[str, str | None] | None = Field(
        default=None,
        max_length=2 * LIMITS.max_custom_headers,
        repr=False,
        description=(
            "Merged into the endpoint's custom headers: `name: value` sets or replaces that header (names match "
            "case-insensitively), `name: null` removes it, headers not named stay. " + HEADERS
        ),
    )


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
    headers: dict[str, str] = Field(
        default_factory=dict, description=f"Custom header names; every value is shown as {HEADER_MASK!r}"
    )


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


RECOVERY = settings().recovery_bounds


class Recover(Strict):
    since: Instant = Field(description="Start of the window (deliveries created, events recorded, at or after it)")
    until: Instant | None = Field(
        default=None,
        description=f"End of the window (default: now, or `at`); at most {RECOVERY.max_window_hours} hours "
        f"after since, and since at most {RECOVERY.max_age_days} days ago",
    )
    status: Literal["failed", "delivered", "all"] = Field(
        default="failed", description="Which settled deliveries to send again"
    )
    missed: bool = Field(
        default=False,
        description="Also send the events the endpoint subscribes to but never received (it was disabled)",
    )
    at: Instant | None = Field(
        default=None,
        description=f"Run at this future time (at most {RECOVERY.max_schedule_hours} hours ahead) instead of now",
    )


class ReplayCounts(BaseModel):
    queued: int = Field(description="Deliveries and missed events found in the window so far")
    sent: int = Field(description="Put on the delivery queue")
    failed: int = Field(description="Could not be replayed (past retention, or replayed too often)")
    skipped: int = Field(description="Already on their way, or sent by an overlapping replay")


class Replay(BaseModel):
    id: str
    webhook_id: str
    status: Literal["scheduled", "queued", "running", "completed", "cancelled", "failed"]
    since: str
    until: str
    statuses: list[Literal["failed", "delivered"]]
    missed: bool
    at: str | None = Field(description="When a scheduled replay runs")
    created_at: str
    updated_at: str
    counts: ReplayCounts
    error: str | None = Field(description="Why it failed or stopped early")


class ReplayPage(BaseModel):
    items: list[Replay]
    next_cursor: str | None


class WebhookUpdated(Webhook):
    recovery: Replay | None = Field(default=None, description="The replay started by recover_since")


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


# -- registry connections -------------------------------------------------------------------------
class Closed(BaseModel):
    # No unknown field. Unlike Strict, values are coerced as pydantic does by default ("true" is
    # true): the registry requests have always been read so, and clients may rely on it.
    model_config = ConfigDict(extra="forbid")


class BasicCredentials(Closed):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=LIMITS.max_username_length)
    password: str = Field(min_length=1, max_length=LIMITS.max_password_length, description="Never returned")


class TokenCredentials(Closed):
    type: Literal["token"]
    token: str = Field(
        min_length=1,
        max_length=LIMITS.max_token_length,
        description="Sent as a Bearer token, or exchanged at the upstream's token service. Never returned",
    )


UpstreamCredentials = Annotated[BasicCredentials | TokenCredentials, Field(discriminator="type")]


class RegistryCreate(Closed):
    name: str = Field(
        min_length=1,
        max_length=LIMITS.max_registry_name,
        pattern=rf"^[a-z0-9][a-z0-9-]{{0,{LIMITS.max_registry_name - 1}}}$",
        description="Unique within the tenant; devices pull /v2/<name>/<repository>@sha256:<digest>",
    )
    upstream_url: str = Field(
        min_length=1,
        max_length=LIMITS.max_url_length,
        description="Base URL of the upstream registry (https; http only when private)",
    )
    credentials: UpstreamCredentials
    allow_private_network: bool = Field(
        default=False,
        description="Allow an upstream on a private or loopback address (link-local and metadata stay refused)",
    )


class CredentialsUpdate(Closed):
    credentials: UpstreamCredentials


class Registry(BaseModel):
    id: str
    name: str
    upstream_url: str
    allow_private_network: bool
    status: Literal["pending", "approved"]
    auth_type: Literal["basic", "token"]
    username: str | None
    created_at: str
    created_by: str
    updated_at: str
    approved_at: str | None
    approved_by: str | None
    credentials_updated_at: str


class RegistryPage(BaseModel):
    items: list[Registry]
    next_cursor: str | None


class Identity(BaseModel):
    tenant_id: str
    key_id: str
    scopes: list[str] = Field(description="The key's scopes (integrations:admin includes integrations:read)")

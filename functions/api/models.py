"""The tenant API's request and response shapes (the contract; OpenAPI is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(Strict):
    url: str = Field(
        min_length=1, max_length=2048, description="Receiver URL (https; http only with allow_private_network)"
    )
    events: list[str] = Field(default_factory=list, max_length=100, description="Filters; empty means all events")
    description: str = Field(default="", max_length=4096)
    allow_private_network: bool = Field(
        default=False, description="Allow private/loopback receivers (link-local and metadata stay refused)"
    )
    enabled: bool = True


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=4096)
    allow_private_network: bool | None = None
    enabled: bool | None = None


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    allow_private_network: bool
    enabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str
    secret_rotation_overlap_until: str | None = None


class WebhookWithSecret(Webhook):
    secret: str = Field(description="The signing secret. Shown only in this response: store it now.")


class WebhookPage(BaseModel):
    items: list[Webhook]
    next_cursor: str | None


class RotateSecret(Strict):
    overlap_seconds: int | None = Field(
        default=None, ge=0, le=604800, description="How long the previous secret keeps signing (default 24 h)"
    )


class TestDelivery(Strict):
    message: str = Field(default="", max_length=256)


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
    since: datetime | None = Field(default=None, description="Only deliveries created at or after this time")
    limit: int = Field(default=50, ge=1, le=100)


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


class Family(BaseModel):
    family: str
    filter: str
    types: list[str]


class EventTypePage(BaseModel):
    items: list[EventTypeInfo]
    families: list[Family]
    next_cursor: str | None = None


class EventIn(Strict):
    type: str = Field(min_length=1, max_length=128)
    subject: str = Field(min_length=1, max_length=256)
    actor: str | None = Field(default=None, min_length=1, max_length=128, description="Defaults to the API key")
    occurred_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=100)


class EventWritten(BaseModel):
    sequence: int
    idempotency_key: str
    type: str
    occurred_at: str


class EventWrittenPage(BaseModel):
    items: list[EventWritten]
    next_cursor: str | None = None

"""The domain, as the use cases speak it: plain values, no storage keys, no AWS, no HTTP.

One type per thing: an audit record, an endpoint, a delivery job, a delivery and its attempts, an
API key, a registry connection. The storage package (`meshanics.store`) turns them into items and
back; the API functions turn them into their public shapes with `public()`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from meshanics.clock import now_iso, parse_moment
from meshanics.errors import InvalidInput, NotFound

# -- audit log ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventInput:
    """An event as a producer hands it to the audit log (before it has a sequence)."""

    type: str
    subject: str
    actor: str
    data: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the append-only audit log.

    `body` is the delivery envelope, serialized once when the event was written: those exact bytes
    are what every delivery, retry and replay signs and sends. `endpoints` are the ids of the
    endpoints subscribed to the event when it was written (matched then, once).
    """

    tenant_id: str
    sequence: int
    event_id: str
    type: str
    occurred_at: str
    subject: str
    actor: str
    data: Mapping[str, Any]
    partition: str = ""
    body: str = ""
    endpoints: tuple[str, ...] = ()
    recorded_at: str = ""

    @property
    def idempotency_key(self) -> str:
        """Same for the same logical event on every attempt and replay, to every endpoint."""
        return f"{self.sequence}-{self.event_id}"


# -- endpoints ------------------------------------------------------------------------------------

HEADER_MASK = "********"  # every custom header value, as responses show it: nothing of it, not even its length


@dataclass(frozen=True)
class Endpoint:
    tenant_id: str
    id: str
    url: str
    events: tuple[str, ...]
    description: str
    allow_private_network: bool
    enabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str
    sealed_secret: bytes
    previous_sealed_secret: bytes | None = None
    previous_secret_expires_at: int | None = None
    # Custom headers: their names in the clear (shown, masked), their values sealed beside the
    # current secret (`custom_headers.SEALED_LABEL`), so one data key opens both.
    header_names: tuple[str, ...] = ()
    sealed_headers: bytes | None = None

    def public(self) -> dict[str, Any]:
        """The API representation: never a secret or a header value, sealed or not."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "allow_private_network": self.allow_private_network,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "secret_rotation_overlap_until": (
                now_iso(self.previous_secret_expires_at)
                if self.previous_secret_expires_at is not None and self.previous_overlap_active()
                else None
            ),
            "headers": dict.fromkeys(self.header_names, HEADER_MASK),
        }

    def previous_overlap_active(self, now: float | None = None) -> bool:
        return (
            self.previous_sealed_secret is not None
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > (time.time() if now is None else now)
        )

    @property
    def secret_context(self) -> dict[str, str]:
        return secret_context(self.tenant_id, self.id)


def secret_context(tenant_id: str, endpoint_id: str) -> dict[str, str]:
    return {"tenant": tenant_id, "endpoint": endpoint_id, "purpose": "webhook-signing"}


# -- deliveries -----------------------------------------------------------------------------------

Status = Literal["pending", "delivered", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "failed")
MAX_ERROR = 300
MAX_REPLAYS = 20
_DELIVERY_ID = re.compile(r"^dlv_([0-9a-f]{24})_([1-9][0-9]{0,18})$")


def delivery_id(endpoint_id: str, sequence: int) -> str:
    return f"dlv_{endpoint_id.removeprefix('ep_')}_{sequence}"


def parse_delivery_id(value: str) -> tuple[str, int]:
    match = _DELIVERY_ID.fullmatch(value)
    if not match:
        raise NotFound(f"delivery {value[:64]} not found")
    return f"ep_{match.group(1)}", int(match.group(2))


@dataclass(frozen=True)
class DeliveryJob:
    """What the delivery queue carries: enough to sign and send without reading the audit log.

    `attempt_base` is the attempt count when this run of the retry schedule began (0, or the count
    when the delivery was replayed); `partition` locates the audit record that holds the body.
    """

    tenant_id: str
    endpoint_id: str
    sequence: int
    event_type: str
    idempotency_key: str
    body: str
    partition: str
    recorded_at: str
    attempt_base: int = 0

    @classmethod
    def of(cls, record: AuditRecord, endpoint_id: str, *, attempt_base: int = 0) -> DeliveryJob:
        """The one way to make a job: an audit record, for one endpoint."""
        return cls(
            tenant_id=record.tenant_id,
            endpoint_id=endpoint_id,
            sequence=record.sequence,
            event_type=record.type,
            idempotency_key=record.idempotency_key,
            body=record.body,
            partition=record.partition,
            recorded_at=record.recorded_at,
            attempt_base=attempt_base,
        )

    @property
    def delivery_id(self) -> str:
        return delivery_id(self.endpoint_id, self.sequence)

    def to_message(self) -> str:
        return json.dumps(
            {
                "v": 2,
                "tenant": self.tenant_id,
                "endpoint": self.endpoint_id,
                "sequence": self.sequence,
                "type": self.event_type,
                "key": self.idempotency_key,
                "partition": self.partition,
                "at": self.recorded_at,
                "attempt_base": self.attempt_base,
                "body": self.body,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, text: str) -> DeliveryJob:
        m = json.loads(text)
        return cls(
            tenant_id=str(m["tenant"]),
            endpoint_id=str(m["endpoint"]),
            sequence=int(m["sequence"]),
            event_type=str(m["type"]),
            idempotency_key=str(m["key"]),
            body=str(m["body"]),
            partition=str(m["partition"]),
            recorded_at=str(m["at"]),
            attempt_base=int(m.get("attempt_base", 0)),
        )


@dataclass(frozen=True)
class Attempt:
    number: int
    at: str
    outcome: Literal["delivered", "failed"]
    status_code: int | None
    duration_ms: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "at": self.at,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delivery:
    """A delivery of one event to one endpoint: its state and every attempt.

    A delivery waiting for its first attempt has no attempts yet (`attempt_count` 0); its state is
    known from the audit record until the first attempt writes it down.
    """

    tenant_id: str
    endpoint_id: str
    sequence: int
    event_type: str
    idempotency_key: str
    partition: str
    status: Status
    attempt_count: int
    attempt_base: int
    created_at: str
    updated_at: str
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    replays: int = 0
    attempts: tuple[Attempt, ...] = ()
    recovery_id: str | None = None  # the last recovery that claimed it (see DeliveryStore.claim)

    @property
    def id(self) -> str:
        return delivery_id(self.endpoint_id, self.sequence)

    def job(self, body: str, *, attempt_base: int | None = None) -> DeliveryJob:
        return DeliveryJob(
            tenant_id=self.tenant_id,
            endpoint_id=self.endpoint_id,
            sequence=self.sequence,
            event_type=self.event_type,
            idempotency_key=self.idempotency_key,
            body=body,
            partition=self.partition,
            recorded_at=self.created_at,
            attempt_base=self.attempt_base if attempt_base is None else attempt_base,
        )

    def accepts(self, job: DeliveryJob) -> bool:
        """Whether `job` may make the next attempt of this delivery.

        A pending delivery takes the job of its current run. A settled one (failed or delivered)
        takes a replay's job: one that starts a new run at the current count (its record may not
        say pending yet). Anything else is a stale copy: a job of an earlier run, or a duplicate of
        one that already finished.
        """
        if self.status == "pending":
            return job.attempt_base == self.attempt_base
        return job.attempt_base == self.attempt_count and self.replays < MAX_REPLAYS

    def public(self, *, envelope: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "webhook_id": self.endpoint_id,
            "event_type": self.event_type,
            "sequence": self.sequence,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "attempt_count": self.attempt_count,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "delivered_at": self.delivered_at,
            "next_attempt_at": self.next_attempt_at,
            "replays": self.replays,
        }
        if envelope is not None:
            body["attempts"] = [a.as_dict() for a in self.attempts]
            body["envelope"] = json.loads(envelope)
        return body

    @classmethod
    def waiting(cls, record: AuditRecord, endpoint_id: str) -> Delivery:
        """A delivery fanned out but not attempted yet: what the audit record says of it."""
        return cls(
            tenant_id=record.tenant_id,
            endpoint_id=endpoint_id,
            sequence=record.sequence,
            event_type=record.type,
            idempotency_key=record.idempotency_key,
            partition=record.partition,
            status="pending",
            attempt_count=0,
            attempt_base=0,
            created_at=record.recorded_at,
            updated_at=record.recorded_at,
        )


@dataclass(frozen=True)
class AttemptResult:
    """An attempt and the status it leaves the delivery in, ready to be recorded."""

    job: DeliveryJob
    attempt: Attempt
    status: Status
    next_attempt_at: str | None = None


# -- recoveries ------------------------------------------------------------------------------------
RecoveryStatus = Literal["scheduled", "queued", "running", "completed", "cancelled", "failed"]
RecoveryPhase = Literal["deliveries", "missed", "done"]
RECOVERY_STATUSES: dict[str, tuple[Status, ...]] = {
    "failed": ("failed",),
    "delivered": ("delivered",),
    "all": ("failed", "delivered"),
}
COUNTS = ("queued", "sent", "failed", "skipped")


def recovery_id(now: float | None = None) -> str:
    """`rpl_` + creation time in milliseconds (12 hex digits) + 48 random bits: ids sort by time."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"rpl_{millis:012x}{secrets.token_hex(6)}"


_RECOVERY_ID = re.compile(r"^rpl_[0-9a-f]{24}$")


def check_recovery_id(value: str) -> str:
    if not _RECOVERY_ID.match(value):
        raise NotFound(f"replay {value} not found")
    return value


@dataclass(frozen=True)
class Recovery:
    """A replay of one endpoint's deliveries in a time window (`POST /v1/webhooks/{id}/recover`).

    It runs asynchronously in bounded batches; `phase` and `cursor` say where the next batch starts
    (a delivery's or an audit shard's sequence), so a run that dies is finished by the next one.
    `missed` also sends the events the endpoint subscribed to but never got (it was disabled).
    """

    tenant_id: str
    id: str
    webhook_id: str
    actor: str
    since: str
    until: str
    statuses: tuple[Status, ...]
    missed: bool
    status: RecoveryStatus
    created_at: str
    updated_at: str
    at: str | None = None
    phase: RecoveryPhase = "deliveries"
    shard: int = 0
    cursor: int = 0
    counts: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    lease_owner: str | None = None
    lease_until: float = 0.0
    error: str | None = None

    @property
    def settled(self) -> bool:
        return self.status in ("completed", "cancelled", "failed")

    @property
    def requested_at(self) -> str:
        """From when on a delivery changed by someone else is not this recovery's to send: its
        request, or for a scheduled one the time it runs (what fails until then is in its window)."""
        return self.at or self.created_at

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "status": self.status,
            "since": self.since,
            "until": self.until,
            "statuses": list(self.statuses),
            "missed": self.missed,
            "at": self.at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "counts": {name: int(self.counts.get(name, 0)) for name in COUNTS},
            "error": self.error,
        }


@dataclass(frozen=True)
class DeliveryFilter:
    """A search of an endpoint's delivery history: a delivery is listed when it matches every
    filter set. `since` (inclusive) and `until` (exclusive) bound when it was created (its event
    recorded), in the stored form (`clock.ceil_ms`); `status_code` is the receiver's last answer,
    which only attempted deliveries have."""

    status: Status | None = None
    event_type: str | None = None  # exact, or a family wildcard (`rollout.*`)
    since: str | None = None
    until: str | None = None
    status_code: int | None = None

    @property
    def attempted_only(self) -> bool:
        """Whether only attempted deliveries can match (a waiting one is pending, with no answer)."""
        return self.status in ("delivered", "failed") or self.status_code is not None

    def within(self, created_at: str) -> bool:
        """Whether a stored time is inside [since, until)."""
        if self.since is None and self.until is None:
            return True
        moment = parse_moment(created_at)
        return (self.since is None or moment >= parse_moment(self.since)) and (
            self.until is None or moment < parse_moment(self.until)
        )

    def digest(self) -> str:
        """A fingerprint of the filters, carried by the cursors of this search: a later page is
        read with the filters of the first, or refused."""
        raw = json.dumps([self.status, self.event_type, self.since, self.until, self.status_code])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


# -- API keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    name: str
    created_at: str
    revoked_at: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant_id,
            "scopes": list(self.scopes),
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


# -- registry connections -------------------------------------------------------------------------

AuthType = Literal["basic", "token"]
RegistryStatus = Literal["pending", "approved"]


@dataclass(frozen=True, repr=False)
class Credentials:
    """Upstream credentials in the clear: only ever in memory, never logged (no repr)."""

    auth_type: AuthType
    secret: str  # the password (basic) or the token
    username: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(auth_type={self.auth_type!r}, username={self.username!r})"

    def to_json(self) -> str:
        return json.dumps({"type": self.auth_type, "username": self.username, "secret": self.secret})

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        v = json.loads(text)
        return cls(auth_type=v["type"], secret=v["secret"], username=v.get("username"))

    @classmethod
    def basic(cls, username: str, password: str) -> Credentials:
        if not username or ":" in username:
            raise InvalidInput("username must be non-empty and contain no ':'", field="credentials.username")
        if not password:
            raise InvalidInput("password must not be empty", field="credentials.password")
        return cls("basic", password, username)

    @classmethod
    def token(cls, token: str) -> Credentials:
        # Sent as `Authorization: Bearer <token>`: only visible ASCII can go into that header.
        if not token or not all("!" <= c <= "~" for c in token):
            raise InvalidInput("token must be non-empty visible ASCII, with no whitespace", field="credentials.token")
        return cls("token", token)


@dataclass(frozen=True)
class RegistryConnection:
    tenant_id: str
    id: str
    name: str
    upstream_url: str
    allow_private_network: bool
    status: RegistryStatus
    auth_type: AuthType
    username: str | None
    created_at: str
    updated_at: str
    created_by: str
    credentials_updated_at: str
    sealed_credentials: bytes
    approved_at: str | None = None
    approved_by: str | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def upstream_host(self) -> str:
        return urlsplit(self.upstream_url).netloc

    @property
    def credentials_context(self) -> dict[str, str]:
        return credentials_context(self.tenant_id, self.id)

    def public(self) -> dict[str, Any]:
        """The API representation: never a credential, sealed or not."""
        return {
            "id": self.id,
            "name": self.name,
            "upstream_url": self.upstream_url,
            "allow_private_network": self.allow_private_network,
            "status": self.status,
            "auth_type": self.auth_type,
            "username": self.username,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "approved_at": self.approved_at,
            "approved_by": self.approved_by,
            "credentials_updated_at": self.credentials_updated_at,
        }


def credentials_context(tenant_id: str, registry_id: str) -> dict[str, str]:
    return {"tenant": tenant_id, "registry": registry_id, "purpose": "registry-credentials"}

"""The event catalog: every event type the platform emits and the metadata fields of its `data`.

Metadata only, by construction: an audit record may carry only the fields declared here, each
bounded in size, and the envelope builder copies only declared fields. Nothing in the catalog can
hold artifact or payload bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshanics.errors import InvalidInput

FieldKind = Literal["string", "integer", "boolean", "string_list", "timestamp"]

MAX_STRING = 256
MAX_LIST_ITEMS = 32


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: FieldKind
    description: str
    max_length: int = MAX_STRING
    required: bool = False

    def check(self, event_type: str, value: Any) -> None:
        where = f"data.{self.name}"
        if self.kind in ("string", "timestamp"):
            if not isinstance(value, str):
                raise InvalidInput(f"{event_type}: {where} must be a string", field=where)
            if len(value) > self.max_length:
                raise InvalidInput(f"{event_type}: {where} is longer than {self.max_length} characters", field=where)
        elif self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(f"{event_type}: {where} must be an integer", field=where)
            if not -(2**53) < value < 2**53:
                raise InvalidInput(f"{event_type}: {where} is out of range", field=where)
        elif self.kind == "boolean":
            if not isinstance(value, bool):
                raise InvalidInput(f"{event_type}: {where} must be true or false", field=where)
        elif self.kind == "string_list":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(f"{event_type}: {where} must be a list of strings", field=where)
            if len(value) > MAX_LIST_ITEMS:
                raise InvalidInput(f"{event_type}: {where} holds more than {MAX_LIST_ITEMS} items", field=where)
            if any(len(v) > self.max_length for v in value):
                raise InvalidInput(
                    f"{event_type}: an item of {where} is longer than {self.max_length} characters",
                    field=where,
                )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "required": self.required,
            "max_length": self.max_length if self.kind in ("string", "timestamp", "string_list") else None,
            "description": self.description,
        }


@dataclass(frozen=True)
class EventType:
    name: str
    family: str
    description: str
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)
    # Directed types go to one named endpoint (test deliveries), never through subscriptions.
    subscribable: bool = True
    # Written only by the platform about itself (integrations management, integrity findings):
    # tenants' producers cannot write them, so a receiver can trust their origin.
    platform_only: bool = False
    # Operational events about one endpoint (its `data.webhook_id`): never delivered to that
    # endpoint, and a delivery of one never raises another (so they cannot loop).
    operational: bool = False

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "family": self.family,
            "description": self.description,
            "data": [f.describe() for f in self.fields],
            "platform_only": self.platform_only,
            "operational": self.operational,
        }


def _s(name: str, description: str, *, required: bool = False, max_length: int = MAX_STRING) -> FieldSpec:
    return FieldSpec(name, "string", description, max_length=max_length, required=required)


def _i(name: str, description: str, *, required: bool = False) -> FieldSpec:
    return FieldSpec(name, "integer", description, required=required)


def _b(name: str, description: str) -> FieldSpec:
    return FieldSpec(name, "boolean", description)


def _l(name: str, description: str) -> FieldSpec:
    return FieldSpec(name, "string_list", description)


def _t(name: str, description: str) -> FieldSpec:
    return FieldSpec(name, "timestamp", description, max_length=40)


_DIGEST = "content digest, e.g. sha256:<hex>"

_ROLLOUT_ID = _s("rollout_id", "rollout identifier", required=True)
_DEVICE_ID = _s("device_id", "device identifier", required=True)
_ARTIFACT_ID = _s("artifact_id", "artifact identifier", required=True)
_REGISTRY_ID = _s("registry_id", "registry connection identifier", required=True)
_WEBHOOK_ID = _s("webhook_id", "webhook endpoint identifier", required=True)

FAMILIES: dict[str, str] = {
    "rollouts": "rollout",
    "devices": "device",
    "artifacts": "artifact",
    "registries": "registry",
    "vulnerabilities": "vulnerability",
    "webhooks": "webhook",
    "test": "test",
}

_TYPES: tuple[EventType, ...] = (
    # rollouts
    EventType(
        "rollout.created",
        "rollouts",
        "A rollout was created.",
        (
            _ROLLOUT_ID,
            _s("name", "rollout name"),
            _s("artifact_digest", _DIGEST, max_length=80),
            _s("target_group", "device group targeted"),
            _i("device_count", "number of devices targeted"),
        ),
    ),
    EventType(
        "rollout.state_changed",
        "rollouts",
        "A rollout moved from one state to another.",
        (
            _ROLLOUT_ID,
            _s("previous_state", "state before the change", max_length=32),
            _s("state", "state after the change", required=True, max_length=32),
            _s("reason", "why the state changed"),
        ),
    ),
    EventType(
        "rollout.completed",
        "rollouts",
        "A rollout finished on every targeted device.",
        (
            _ROLLOUT_ID,
            _i("succeeded", "devices that applied the artifact"),
            _i("failed", "devices that did not"),
        ),
    ),
    EventType(
        "rollout.failed",
        "rollouts",
        "A rollout stopped because of failures.",
        (_ROLLOUT_ID, _s("reason", "why the rollout failed"), _i("failed", "devices that failed")),
    ),
    # devices
    EventType(
        "device.enrolled",
        "devices",
        "A device enrolled in the fleet.",
        (
            _DEVICE_ID,
            _s("hardware_model", "hardware model"),
            _s("group", "device group"),
            _t("enrolled_at", "enrolment time (RFC 3339)"),
        ),
    ),
    EventType(
        "device.status_changed",
        "devices",
        "A device's authentication or health status changed.",
        (
            _DEVICE_ID,
            _s("previous_status", "status before", max_length=32),
            _s("status", "status after", required=True, max_length=32),
        ),
    ),
    EventType(
        "device.decommissioned",
        "devices",
        "A device was removed from the fleet.",
        (_DEVICE_ID, _s("reason", "why it was decommissioned")),
    ),
    # artifacts
    EventType(
        "artifact.published",
        "artifacts",
        "An artifact was published for rollout.",
        (
            _ARTIFACT_ID,
            _s("name", "artifact name"),
            _s("version", "artifact version", max_length=64),
            _s("digest", _DIGEST, required=True, max_length=80),
            _i("size_bytes", "artifact size in bytes"),
            _l("platforms", "target platforms, e.g. linux/arm64"),
        ),
    ),
    EventType(
        "artifact.signed",
        "artifacts",
        "An artifact received a signature.",
        (
            _ARTIFACT_ID,
            _s("digest", _DIGEST, required=True, max_length=80),
            _s("key_id", "identifier of the signing key"),
        ),
    ),
    EventType(
        "artifact.revoked",
        "artifacts",
        "An artifact was revoked and must not be applied.",
        (_ARTIFACT_ID, _s("digest", _DIGEST, required=True, max_length=80), _s("reason", "why")),
    ),
    # registries
    EventType(
        "registry.connected",
        "registries",
        "An upstream registry connection was created (pending approval).",
        (_REGISTRY_ID, _s("name", "connection name"), _s("upstream_host", "upstream registry host")),
    ),
    EventType(
        "registry.approved",
        "registries",
        "An operator approved an upstream registry connection.",
        (_REGISTRY_ID, _s("name", "connection name"), _s("approved_by", "approving key or user")),
    ),
    EventType(
        "registry.credentials_updated",
        "registries",
        "The credentials of an upstream registry connection changed.",
        (_REGISTRY_ID, _s("name", "connection name"), _s("auth_type", "basic or token", max_length=16)),
    ),
    EventType(
        "registry.removed",
        "registries",
        "An upstream registry connection was removed.",
        (_REGISTRY_ID, _s("name", "connection name")),
    ),
    EventType(
        "registry.digest_mismatch",
        "registries",
        "Content from an upstream did not match the requested digest; nothing was served or cached.",
        (
            _REGISTRY_ID,
            _s("repository", "repository path"),
            _s("expected_digest", _DIGEST, required=True, max_length=80),
            _s("actual_digest", _DIGEST, max_length=80),
            _s("kind", "manifest or blob", max_length=16),
        ),
    ),
    # vulnerabilities
    EventType(
        "vulnerability.detected",
        "vulnerabilities",
        "A vulnerability was found in an artifact or component.",
        (
            _s("vulnerability_id", "advisory identifier, e.g. CVE-2026-1234", required=True, max_length=64),
            _s("severity", "critical, high, medium, low or unknown", max_length=16),
            _s("component", "affected component"),
            _s("artifact_digest", _DIGEST, max_length=80),
            _i("affected_devices", "devices running the affected component"),
        ),
    ),
    EventType(
        "vulnerability.resolved",
        "vulnerabilities",
        "A previously detected vulnerability no longer applies.",
        (
            _s("vulnerability_id", "advisory identifier", required=True, max_length=64),
            _s("resolution", "how it was resolved"),
        ),
    ),
    # webhooks (management of the integrations themselves; never carries a secret)
    EventType(
        "webhook.created",
        "webhooks",
        "A webhook endpoint was created.",
        (_WEBHOOK_ID, _s("url_host", "host of the endpoint URL"), _l("events", "subscribed filters")),
    ),
    EventType(
        "webhook.updated",
        "webhooks",
        "A webhook endpoint was changed.",
        (
            _WEBHOOK_ID,
            _l("changed", "names of the changed fields"),
            _b("enabled", "enabled after the change"),
        ),
    ),
    EventType("webhook.deleted", "webhooks", "A webhook endpoint was removed.", (_WEBHOOK_ID,)),
    EventType(
        "webhook.secret_rotated",
        "webhooks",
        "A webhook endpoint's signing secret was rotated.",
        (_WEBHOOK_ID, _t("previous_secret_expires_at", "end of the overlap window (RFC 3339)")),
    ),
    EventType(
        "webhook.disabled",
        "webhooks",
        "A webhook endpoint was disabled: by the tenant (reason api), after failing every attempt for "
        "the configured period (failing), or because its receiver answered 410 Gone (gone). Never "
        "delivered to the endpoint it is about.",
        (
            _WEBHOOK_ID,
            _s("reason", "api, failing or gone", required=True, max_length=16),
            _t("failing_since", "first failed attempt of the failing period (failing)"),
            _i("last_status_code", "the receiver's last HTTP status code, if it answered"),
        ),
        operational=True,
    ),
    EventType(
        "webhook.enabled",
        "webhooks",
        "A disabled webhook endpoint was enabled again. Never delivered to the endpoint it is about.",
        (_WEBHOOK_ID, _s("recovery_id", "the replay catching up on what it missed, if one was asked for")),
        operational=True,
    ),
    EventType(
        "webhook.delivery_exhausted",
        "webhooks",
        "A delivery failed after the last attempt of its retry schedule; it stays failed and can be "
        "replayed. Never delivered to the endpoint it is about, never raised for operational events.",
        (
            _WEBHOOK_ID,
            _s("delivery_id", "the failed delivery", required=True, max_length=64),
            _i("sequence", "audit sequence of the event that was not delivered", required=True),
            _s("event_type", "type of the event that was not delivered", max_length=64),
            _i("attempts", "attempts made"),
            _i("last_status_code", "the receiver's last HTTP status code, if it answered"),
        ),
        operational=True,
    ),
    EventType(
        "webhook.fanout_failed",
        "webhooks",
        "Events of this tenant could not be fanned out to its endpoints after every retry; an operator "
        "was alerted. Recorded in the audit log only (never delivered, so it cannot loop).",
        (
            _i("first_sequence", "first audit sequence of the affected range", required=True),
            _i("last_sequence", "last audit sequence of the affected range", required=True),
            _s("reason", "why the range could not be fanned out"),
        ),
        subscribable=False,
    ),
    # test deliveries
    EventType(
        "test.ping",
        "test",
        "A test delivery sent on request to one endpoint.",
        (_WEBHOOK_ID, _s("message", "free text shown in the test delivery")),
        subscribable=False,
    ),
)

_PLATFORM_FAMILIES = frozenset({"registries", "webhooks", "test"})
_TYPES = tuple(replace(t, platform_only=t.family in _PLATFORM_FAMILIES) for t in _TYPES)
CATALOG: Mapping[str, EventType] = {t.name: t for t in _TYPES}


def event_type(name: str) -> EventType:
    """The declared type, or a clear error naming the valid ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise InvalidInput(
            f"unknown event type {name!r}; see GET /v1/event-types for the catalog", field="type"
        ) from None


def writable_by_tenants(type_name: str) -> EventType:
    """The declared type if a tenant's producer may write it, else a clear error."""
    declared = event_type(type_name)
    if declared.platform_only:
        raise InvalidInput(
            f"{type_name} is written only by the platform itself; producers may write the "
            "rollouts, devices, artifacts and vulnerabilities families",
            code="reserved_event_type",
            field="type",
        )
    return declared


def validate_data(type_name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check `data` against the declaration: no undeclared field, right types, bounded sizes."""
    declared = event_type(type_name)
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{type_name}: data must be an object", field="data")
    undeclared = sorted(set(data) - declared.field_names)
    if undeclared:
        raise InvalidInput(
            f"{type_name}: undeclared data field(s) {', '.join(undeclared)}; "
            f"declared: {', '.join(sorted(declared.field_names)) or 'none'}",
            field=f"data.{undeclared[0]}",
        )
    for spec in declared.fields:
        if spec.name in data and data[spec.name] is not None:
            spec.check(type_name, data[spec.name])
        elif spec.required:
            raise InvalidInput(f"{type_name}: data.{spec.name} is required", field=f"data.{spec.name}")
    return {k: v for k, v in data.items() if v is not None}


def project(type_name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Only the declared fields of `data`, in declaration order (what an envelope may carry)."""
    declared = CATALOG[type_name]
    return {spec.name: data[spec.name] for spec in declared.fields if spec.name in data}


def operational_types() -> frozenset[str]:
    return frozenset(t.name for t in _TYPES if t.operational)


def subscribable_types() -> list[str]:
    return [t.name for t in _TYPES if t.subscribable]


def describe() -> dict[str, Any]:
    """The catalog as served by GET /v1/event-types."""
    families = []
    for family, prefix in FAMILIES.items():
        types = [t.describe() for t in _TYPES if t.family == family]
        families.append({"family": family, "filter": f"{prefix}.*", "types": types})
    return {"families": families}

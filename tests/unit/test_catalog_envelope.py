"""The catalog keeps records to declared metadata; the envelope is fixed, stable bytes."""

from __future__ import annotations

import json

import pytest

from meshanics import audit, catalog, envelope
from meshanics.errors import InvalidInput, LimitExceeded
from meshanics.model import AuditRecord

FAMILIES = {"rollouts", "devices", "artifacts", "registries", "vulnerabilities", "webhooks"}


def test_catalog_covers_every_family_and_a_test_ping() -> None:
    assert {t.family for t in catalog.CATALOG.values()} >= FAMILIES
    assert "test.ping" in catalog.CATALOG
    assert "test.ping" not in catalog.subscribable_types()
    for name, declared in catalog.CATALOG.items():
        assert name == declared.name
        assert name.split(".")[0] == catalog.FAMILIES[declared.family]


def test_describe_lists_families_types_and_fields() -> None:
    described = catalog.describe()
    rollouts = next(f for f in described["families"] if f["family"] == "rollouts")
    assert rollouts["filter"] == "rollout.*"
    created = next(t for t in rollouts["types"] if t["type"] == "rollout.created")
    assert {"name": "rollout_id", "type": "string", "required": True}.items() <= created["data"][0].items()


@pytest.mark.parametrize(
    ("type_", "data", "message"),
    [
        ("rollout.exploded", {}, "unknown event type"),
        ("rollout.created", {"rollout_id": "r", "payload": "AAAA"}, "undeclared data field"),
        ("rollout.created", {"name": "x"}, "rollout_id is required"),
        ("rollout.created", {"rollout_id": 5}, "must be a string"),
        ("rollout.created", {"rollout_id": "r", "device_count": "3"}, "must be an integer"),
        ("rollout.created", {"rollout_id": "r", "device_count": True}, "must be an integer"),
        ("rollout.created", {"rollout_id": "x" * 257}, "longer than 256"),
        ("artifact.published", {"artifact_id": "a", "digest": "sha256:x", "platforms": [1]}, "list of strings"),
        ("artifact.published", {"artifact_id": "a", "digest": "d", "platforms": ["p"] * 33}, "more than 32"),
        ("webhook.updated", {"webhook_id": "w", "enabled": "yes"}, "true or false"),
    ],
)
def test_validation_errors_are_clear(type_: str, data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        catalog.validate_data(type_, data)


def test_oversized_record_is_refused() -> None:
    event = audit.EventInput(
        "vulnerability.detected",
        subject="s",
        actor="a",
        data={"vulnerability_id": "CVE-1", "component": "c" * 250, "severity": "high"},
    )
    audit.validate(event, max_record_bytes=4096)
    with pytest.raises(LimitExceeded, match="above the 200-byte limit"):
        audit.validate(event, max_record_bytes=200)


def _record(data: dict[str, object]) -> AuditRecord:
    return AuditRecord(
        tenant_id="acme",
        sequence=4821,
        event_id="abc123",
        type="rollout.created",
        occurred_at="2026-06-16T09:30:00Z",
        subject="rollout/r-1",
        actor="user:alice",
        data=data,
    )


def test_envelope_has_the_seed_fields_in_order_and_compact_ascii_json() -> None:
    body = envelope.serialize(_record({"rollout_id": "r-1", "name": "Café", "device_count": 3}))
    parsed = json.loads(body)
    assert list(parsed) == [
        "specversion",
        "type",
        "occurred_at",
        "subject",
        "actor",
        "sequence",
        "idempotency_key",
        "data",
    ]
    assert parsed["specversion"] == "1.0"
    assert parsed["idempotency_key"] == "4821-abc123"
    assert parsed["idempotency_key"].startswith(f"{parsed['sequence']}-")
    assert body.isascii() and " " not in body.replace("Caf\\u00e9", "")
    assert parsed["data"] == {"rollout_id": "r-1", "name": "Café", "device_count": 3}


def test_envelope_copies_only_declared_fields() -> None:
    # Even if a stored record somehow held more, the envelope carries only what the catalog declares.
    body = envelope.serialize(_record({"rollout_id": "r-1", "artifact_bytes": "AAAA"}))
    assert json.loads(body)["data"] == {"rollout_id": "r-1"}
    assert "artifact_bytes" not in body


def test_envelope_serialization_is_stable() -> None:
    record = _record({"device_count": 3, "rollout_id": "r-1"})
    assert envelope.serialize(record) == envelope.serialize(record)


def test_rfc3339_timestamps() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    assert audit.rfc3339(datetime(2026, 6, 16, 9, 30, tzinfo=UTC)) == "2026-06-16T09:30:00Z"
    plus2 = timezone(timedelta(hours=2))
    assert audit.rfc3339(datetime(2026, 6, 16, 11, 30, 0, 250000, tzinfo=plus2)) == "2026-06-16T09:30:00.250Z"

"""The delivery envelope: built once from an audit record, serialized once, sent as those bytes.

Field order and serialization are fixed so the bytes are stable: every attempt and replay sends the
exact string stored when the delivery was created, and the signature covers exactly those bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshanics import catalog

SPEC_VERSION = "1.0"


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the append-only audit log, as the core sees it (no storage keys)."""

    tenant_id: str
    sequence: int
    event_id: str
    type: str
    occurred_at: str
    subject: str
    actor: str
    data: Mapping[str, Any]

    @property
    def idempotency_key(self) -> str:
        """Same for the same logical event on every attempt and replay, to every endpoint."""
        return f"{self.sequence}-{self.event_id}"


def serialize(record: AuditRecord) -> str:
    """The envelope as the exact string that is stored, signed and sent (ASCII-only JSON)."""
    envelope = {
        "specversion": SPEC_VERSION,
        "type": record.type,
        "occurred_at": record.occurred_at,
        "subject": record.subject,
        "actor": record.actor,
        "sequence": record.sequence,
        "idempotency_key": record.idempotency_key,
        "data": catalog.project(record.type, record.data),
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=True)

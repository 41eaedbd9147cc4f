"""The delivery envelope: built once from an audit record, serialized once, sent as those bytes.

Field order and serialization are fixed so the bytes are stable: every attempt and replay sends the
exact string stored when the delivery was created, and the signature covers exactly those bytes.
"""

from __future__ import annotations

import json

from meshanics import catalog
from meshanics.model import AuditRecord

SPEC_VERSION = "1.0"


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

"""The append-only audit log: the one way any producer records a platform event.

`AuditLog.append` validates each event against the catalog (type, declared fields, size), assigns
the tenant's next sequence numbers with one atomic counter update, and writes the records in one
transaction. A sequence is never reused: a failed write leaves a gap, never a duplicate.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from meshanics import catalog, dynamo
from meshanics.envelope import AuditRecord
from meshanics.errors import InvalidInput, LimitExceeded, MeshanicsError
from meshanics.ids import check_tenant

MAX_SUBJECT = 256
MAX_ACTOR = 128


@dataclass(frozen=True)
class EventInput:
    type: str
    subject: str
    actor: str
    data: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None


def rfc3339(moment: datetime) -> str:
    """UTC, second precision with milliseconds when present: 2026-06-16T09:30:00Z."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not an RFC 3339 timestamp", field="occurred_at") from None
    if moment.tzinfo is None:
        raise InvalidInput("occurred_at must carry a time zone (e.g. Z)", field="occurred_at")
    return moment


def validate(event: EventInput, *, max_record_bytes: int) -> dict[str, Any]:
    """The event's clean data, or a clear error: unknown type, undeclared field, oversized record."""
    data = catalog.validate_data(event.type, event.data)
    if not event.subject or len(event.subject) > MAX_SUBJECT:
        raise InvalidInput(f"subject must be 1-{MAX_SUBJECT} characters", field="subject")
    if not event.actor or len(event.actor) > MAX_ACTOR:
        raise InvalidInput(f"actor must be 1-{MAX_ACTOR} characters", field="actor")
    size = len(json.dumps(data, separators=(",", ":")).encode()) + len(event.subject) + len(event.actor)
    if size > max_record_bytes:
        raise LimitExceeded(
            f"{event.type}: record is {size} bytes, above the {max_record_bytes}-byte limit", field="data"
        )
    return data


def record_from_item(item: Mapping[str, Any]) -> AuditRecord:
    """An audit table item (plain Python values, e.g. a stream's new image) -> AuditRecord."""
    values = dynamo.plain(item)
    return AuditRecord(
        tenant_id=values["tenant_id"],
        sequence=int(values["sequence"]),
        event_id=values["event_id"],
        type=values["type"],
        occurred_at=values["occurred_at"],
        subject=values["subject"],
        actor=values["actor"],
        data=values.get("data") or {},
    )


class AuditLog:
    def __init__(
        self,
        client: Callable[[], Any],
        *,
        audit_table: str,
        integrations_table: str,
        max_record_bytes: int,
        retention_days: int,
    ) -> None:
        self._client = client
        self._audit_table = audit_table
        self._integrations_table = integrations_table
        self._max_record_bytes = max_record_bytes
        self._retention_seconds = retention_days * 86_400

    def append(self, tenant_id: str, events: Sequence[EventInput]) -> list[AuditRecord]:
        """Validate and write up to 100 events atomically; return them with their sequences."""
        check_tenant(tenant_id)
        if not events:
            return []
        if len(events) > 100:
            raise LimitExceeded("at most 100 events per write", field="events")
        cleaned = []
        for index, event in enumerate(events):
            try:
                cleaned.append(validate(event, max_record_bytes=self._max_record_bytes))
            except MeshanicsError as error:
                if len(events) > 1:  # name the event of a batch the error is about
                    error.field = f"events.{index}.{error.field or ''}".rstrip(".")
                    error.message = f"events[{index}]: {error.message}"
                raise
        last = self._allocate(tenant_id, len(events))
        first = last - len(events) + 1
        now = datetime.now(UTC)
        expires = int(time.time()) + self._retention_seconds
        records = [
            AuditRecord(
                tenant_id=tenant_id,
                sequence=first + i,
                event_id=secrets.token_hex(10),
                type=event.type,
                occurred_at=rfc3339(event.occurred_at or now),
                subject=event.subject,
                actor=event.actor,
                data=data,
            )
            for i, (event, data) in enumerate(zip(events, cleaned, strict=True))
        ]
        puts = [
            {
                "TableName": self._audit_table,
                "Item": dynamo.to_item(
                    {
                        "tenant_id": r.tenant_id,
                        "sequence": r.sequence,
                        "event_id": r.event_id,
                        "type": r.type,
                        "occurred_at": r.occurred_at,
                        "recorded_at": rfc3339(now),
                        "subject": r.subject,
                        "actor": r.actor,
                        "data": dict(r.data),
                        "expires_at": expires,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(tenant_id)",
            }
            for r in records
        ]
        if len(puts) == 1:
            try:
                self._client().put_item(**puts[0], ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except ClientError as error:
                # Our own write, its answer lost and retried by the SDK, is already there: written.
                old: dict[str, Any] = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
                found = old.get("event_id", {}).get("S")
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException" or found != records[0].event_id:
                    raise
        else:  # a batch is written all or nothing (the SDK's idempotency token makes its retries safe)
            self._client().transact_write_items(TransactItems=[{"Put": put} for put in puts])
        return records

    def _allocate(self, tenant_id: str, count: int) -> int:
        response = self._client().update_item(
            TableName=self._integrations_table,
            Key=dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": dynamo.TENANT_SK}),
            UpdateExpression="ADD #seq :n",
            ExpressionAttributeNames={"#seq": "sequence"},
            ExpressionAttributeValues={":n": dynamo.to_value(count)},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["sequence"]["N"])

    def current_sequence(self, tenant_id: str) -> int:
        response = self._client().get_item(
            TableName=self._integrations_table,
            Key=dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": dynamo.TENANT_SK}),
            ConsistentRead=True,
        )
        item = dynamo.from_item(response.get("Item", {}))
        return int(item.get("sequence", 0))

    def between(self, tenant_id: str, first: int, last: int) -> list[AuditRecord]:
        """The tenant's records with first <= sequence <= last, in order, read consistently."""
        kwargs: dict[str, Any] = {
            "TableName": self._audit_table,
            "KeyConditionExpression": "tenant_id = :tenant AND #seq BETWEEN :first AND :last",
            "ExpressionAttributeNames": {"#seq": "sequence"},
            "ExpressionAttributeValues": dynamo.to_item({":tenant": tenant_id, ":first": first, ":last": last}),
            "ConsistentRead": True,
        }
        records: list[AuditRecord] = []
        while True:
            response = self._client().query(**kwargs)
            records.extend(record_from_item(dynamo.from_item(item)) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return records
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def get(self, tenant_id: str, sequence: int) -> AuditRecord | None:
        response = self._client().get_item(
            TableName=self._audit_table,
            Key=dynamo.to_item({"tenant_id": tenant_id, "sequence": sequence}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return record_from_item(dynamo.from_item(item)) if item else None

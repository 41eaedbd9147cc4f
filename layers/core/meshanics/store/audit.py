"""The audit table: the append-only log, spread over shards of each tenant.

Item: `partition` = `<tenant>#<shard>` (the shard chosen by the event's subject, so one subject's
events share a partition and stay in order in the stream), `sequence` (the tenant's number for the
event); `body` (the envelope, serialized once: the exact bytes every delivery sends), `endpoints`
(ids of the endpoints subscribed when the event was written), `type`, `subject`, `actor`,
`event_id`, `occurred_at`, `recorded_at`, `expires_at` (TTL). Written once by `put`, never changed;
its stream (INSERT only) drives the fan-out.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshanics.model import AuditRecord, DeliveryFilter
from meshanics.store.batch import conditional
from meshanics.store.items import from_item, plain, time_window, to_item


def record_from_values(values: Mapping[str, Any]) -> AuditRecord:
    """An audit item's plain values (from the table, or a stream's new image) -> AuditRecord."""
    body = str(values["body"])
    return AuditRecord(
        tenant_id=values["tenant_id"],
        sequence=int(values["sequence"]),
        event_id=values["event_id"],
        type=values["type"],
        occurred_at=values["occurred_at"],
        subject=values["subject"],
        actor=values["actor"],
        data=json.loads(body).get("data") or {},
        partition=values["partition"],
        body=body,
        endpoints=tuple(f"ep_{e}" for e in values.get("endpoints") or ()),
        recorded_at=values["recorded_at"],
    )


def record_from_image(image: Mapping[str, Any]) -> AuditRecord:
    """A stream record's new image (already deserialized, e.g. by Powertools) -> AuditRecord."""
    return record_from_values(plain(image))


class AuditTable:
    def __init__(self, client: Callable[[], Any], table: str, *, shards: int, retention_days: int) -> None:
        self._client = client
        self._table = table
        self.shards = shards
        self._retention = retention_days * 86_400

    def partition(self, tenant_id: str, subject: str) -> str:
        """The tenant's shard for `subject`: stable, so a subject's events stay in one partition."""
        return f"{tenant_id}#{zlib.crc32(subject.encode('utf-8')) % self.shards}"

    def partitions(self, tenant_id: str) -> list[str]:
        return [f"{tenant_id}#{shard}" for shard in range(self.shards)]

    def _item(self, record: AuditRecord) -> dict[str, Any]:
        return to_item(
            {
                "partition": record.partition,
                "sequence": record.sequence,
                "tenant_id": record.tenant_id,
                "event_id": record.event_id,
                "type": record.type,
                "subject": record.subject,
                "actor": record.actor,
                "occurred_at": record.occurred_at,
                "recorded_at": record.recorded_at,
                "body": record.body,
                # Ids without their `ep_` prefix: the list travels in every item and stream record.
                "endpoints": [e.removeprefix("ep_") for e in record.endpoints] or None,
                "expires_at": int(time.time()) + self._retention,
            }
        )

    def put(self, records: Sequence[AuditRecord]) -> None:
        """Write new records: one with a conditional put, several all or nothing (a transaction)."""
        if len(records) == 1:
            (record,) = records
            written = conditional(
                self._client().put_item,
                {
                    "TableName": self._table,
                    "Item": self._item(record),
                    "ConditionExpression": "attribute_not_exists(#seq)",
                    "ExpressionAttributeNames": {"#seq": "sequence"},
                },
                ours=lambda found: found.get("event_id") == record.event_id,
            )
            if not written:
                raise RuntimeError(f"sequence {record.sequence} of {record.tenant_id} was used twice")
            return
        # The SDK's idempotency token makes a retried transaction (a lost answer) safe.
        self._client().transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": self._item(r),
                        "ConditionExpression": "attribute_not_exists(#seq)",
                        "ExpressionAttributeNames": {"#seq": "sequence"},
                    }
                }
                for r in records
            ]
        )

    def get(self, partition: str, sequence: int) -> AuditRecord | None:
        response = self._client().get_item(
            TableName=self._table,
            Key=to_item({"partition": partition, "sequence": sequence}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return record_from_values(from_item(item)) if item else None

    def between(self, partition: str, first: int, last: int) -> list[AuditRecord]:
        """The partition's records with first <= sequence <= last, in order, read consistently."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#part = :part AND #seq BETWEEN :first AND :last",
            "ExpressionAttributeNames": {"#part": "partition", "#seq": "sequence"},
            "ExpressionAttributeValues": to_item({":part": partition, ":first": first, ":last": last}),
            "ConsistentRead": True,
        }
        records: list[AuditRecord] = []
        while True:
            response = self._client().query(**kwargs)
            records.extend(record_from_values(from_item(item)) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return records
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def of_tenant(self, tenant_id: str, *, after: int = 0) -> list[AuditRecord]:
        """The tenant's records above `after`, every shard, in sequence order (operators, tests)."""
        found: list[AuditRecord] = []
        for partition in self.partitions(tenant_id):
            found += self.between(partition, after + 1, 2**63 - 1)
        return sorted(found, key=lambda r: r.sequence)

    def recorded_between(
        self, partition: str, *, after: int, since: str, until: str, budget: int
    ) -> tuple[list[AuditRecord], int | None]:
        """The partition's records above sequence `after` recorded in [since, until], in order,
        examining at most `budget` items; also the sequence to continue after (None: none left)."""
        response = self._client().query(
            TableName=self._table,
            KeyConditionExpression="#part = :part AND #seq > :after",
            FilterExpression="recorded_at BETWEEN :since AND :until",
            ExpressionAttributeNames={"#part": "partition", "#seq": "sequence"},
            ExpressionAttributeValues=to_item({":part": partition, ":after": after, ":since": since, ":until": until}),
            Limit=budget,
            ConsistentRead=True,
        )
        records = [record_from_values(from_item(item)) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return records, (int(last["sequence"]["N"]) if last else None)

    def addressed_to(
        self,
        partition: str,
        endpoint_id: str,
        *,
        below: int | None,
        above: int,
        search: DeliveryFilter,
        budget: int,
    ) -> tuple[list[AuditRecord], int | None]:
        """The partition's records for `endpoint_id` with above < sequence < below that match the
        event type and time window of `search`, newest first.

        Reads at most `budget` records; if it stopped short of `above`, also returns the lowest
        sequence it examined (below that, this partition was not looked at).
        """
        names = {"#part": "partition", "#seq": "sequence", "#eps": "endpoints"}
        values: dict[str, Any] = {":part": partition, ":above": above + 1, ":ep": endpoint_id.removeprefix("ep_")}
        condition = "#part = :part AND #seq >= :above"
        if below is not None:
            condition = "#part = :part AND #seq BETWEEN :above AND :below"
            values[":below"] = below - 1
        wanted = ["contains(#eps, :ep)"]
        if search.event_type:
            names["#type"] = "type"
            if search.event_type.endswith(".*"):
                wanted.append("begins_with(#type, :type)")
                values[":type"] = search.event_type[:-1]
            else:
                wanted.append("#type = :type")
                values[":type"] = search.event_type
        window = time_window("#rec", search.since, search.until, values)
        if window:
            names["#rec"] = "recorded_at"
            wanted += window
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "FilterExpression": " AND ".join(wanted),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": False,
        }
        found: list[AuditRecord] = []
        examined = 0
        while True:
            kwargs["Limit"] = budget - examined
            response = self._client().query(**kwargs)
            examined += int(response.get("ScannedCount", 0))
            for item in response.get("Items", []):
                record = record_from_values(from_item(item))
                if search.within(record.recorded_at):  # the expression kept its whole second
                    found.append(record)
            last = response.get("LastEvaluatedKey")
            if last is None:
                return found, None
            if examined >= budget:
                return found, int(last["sequence"]["N"])
            kwargs["ExclusiveStartKey"] = last

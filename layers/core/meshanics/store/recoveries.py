"""Recovery items: one per `POST /v1/webhooks/{id}/recover` (a replay resource).

Item: `T#<tenant>#RPL` / `<recovery id>` (ids sort by creation time, so newest first is a reverse
Query of the tenant's partition); the window, the statuses, `status`, where the next batch starts
(`phase`, `shard`, `cursor`), the `counts`, the run's lease (`lease_owner`, `lease_until` in epoch
milliseconds) and
`expires_at` (TTL, RECOVERY_RETENTION_DAYS after creation).

A run takes the lease with a conditional write and every batch it finishes advances the cursor and
the counts in one conditional write on that lease: a run that dies leaves the cursor at the last
finished batch, and a cancelled recovery refuses the next advance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from meshanics.errors import NotFound
from meshanics.model import COUNTS, Recovery, RecoveryPhase, RecoveryStatus
from meshanics.store.items import decode_cursor, encode_cursor, from_item, to_item

RECOVERY_RETENTION_DAYS = 30
ACTIVE: tuple[RecoveryStatus, ...] = ("queued", "running")


def recoveries_pk(tenant_id: str) -> str:
    return f"T#{tenant_id}#RPL"


def _key(tenant_id: str, recovery_id: str) -> dict[str, Any]:
    return to_item({"pk": recoveries_pk(tenant_id), "sk": recovery_id})


def _to_item(r: Recovery) -> dict[str, Any]:
    return to_item(
        {
            "pk": recoveries_pk(r.tenant_id),
            "sk": r.id,
            "tenant_id": r.tenant_id,
            "webhook_id": r.webhook_id,
            "actor": r.actor,
            "since": r.since,
            "until": r.until,
            "statuses": list(r.statuses),
            "missed": r.missed,
            "status": r.status,
            "at": r.at,
            "phase": r.phase,
            "shard": r.shard,
            "cursor": r.cursor,
            "counts": dict(r.counts),
            "lease_until": 0,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "expires_at": int(time.time()) + RECOVERY_RETENTION_DAYS * 86_400,
        }
    )


def _from_item(item: Mapping[str, Any]) -> Recovery:
    v = from_item(item)
    return Recovery(
        tenant_id=v["tenant_id"],
        id=v["sk"],
        webhook_id=v["webhook_id"],
        actor=v["actor"],
        since=v["since"],
        until=v["until"],
        statuses=tuple(v["statuses"]),
        missed=bool(v["missed"]),
        status=v["status"],
        created_at=v["created_at"],
        updated_at=v["updated_at"],
        at=v.get("at"),
        phase=v.get("phase", "deliveries"),
        shard=int(v.get("shard", 0)),
        cursor=int(v.get("cursor", 0)),
        counts={name: int(v.get("counts", {}).get(name, 0)) for name in COUNTS},
        lease_owner=v.get("lease_owner"),
        lease_until=int(v.get("lease_until", 0)) / 1000,
        error=v.get("error"),
    )


def _failed_condition(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class RecoveryStore:
    def __init__(self, client: Callable[[], Any], table: str) -> None:
        self._client = client
        self._table = table

    def create(self, recovery: Recovery) -> None:
        self._client().put_item(
            TableName=self._table, Item=_to_item(recovery), ConditionExpression="attribute_not_exists(pk)"
        )

    def find(self, tenant_id: str, recovery_id: str) -> Recovery | None:
        response = self._client().get_item(TableName=self._table, Key=_key(tenant_id, recovery_id), ConsistentRead=True)
        return _from_item(response["Item"]) if "Item" in response else None

    def get(self, tenant_id: str, recovery_id: str) -> Recovery:
        found = self.find(tenant_id, recovery_id)
        if found is None:
            raise NotFound(f"replay {recovery_id} not found")
        return found

    def page(
        self, tenant_id: str, *, webhook_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Recovery], str | None]:
        """The tenant's recoveries, newest first (only one endpoint's if `webhook_id` is given)."""
        partition = recoveries_pk(tenant_id)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": partition}),
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
        }
        if webhook_id:
            kwargs["FilterExpression"] = "webhook_id = :webhook"
            kwargs["ExpressionAttributeValues"][":webhook"] = {"S": webhook_id}
        start = decode_cursor(cursor, partition=partition, sort_prefix="rpl_")
        if start:
            kwargs["ExclusiveStartKey"] = start
        found: list[Recovery] = []
        while True:
            response = self._client().query(**kwargs)
            for item in response.get("Items", []):
                found.append(_from_item(item))
                if len(found) == limit:
                    last = {"pk": item["pk"], "sk": item["sk"]}
                    return found, encode_cursor(last)
            if "LastEvaluatedKey" not in response:
                return found, None
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def lease(self, recovery: Recovery, owner: str, *, seconds: float, now: float) -> Recovery | None:
        """Take the run's lease (queued or running, lease free or expired); the recovery as it is
        now, or None if another run holds it or it is settled."""
        try:
            response = self._client().update_item(
                TableName=self._table,
                Key=_key(recovery.tenant_id, recovery.id),
                UpdateExpression="SET #status = :running, lease_owner = :owner, lease_until = :until",
                ConditionExpression="#status IN (:queued, :running) AND (lease_until < :now OR lease_owner = :owner)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":running": "running",
                        ":queued": "queued",
                        ":owner": owner,
                        ":until": int((now + seconds) * 1000),
                        ":now": int(now * 1000),
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _failed_condition(error):
                return None
            raise
        return _from_item(response["Attributes"])

    def advance(
        self,
        recovery: Recovery,
        owner: str,
        *,
        phase: RecoveryPhase,
        shard: int,
        cursor: int,
        added: Mapping[str, int],
        status: RecoveryStatus,
        now: str,
        lease_until: float,
        error: str | None = None,
    ) -> bool:
        """Record a finished batch under the lease: where the next starts, the counts it adds and the
        status it leaves; False if the lease was lost or the recovery cancelled meanwhile."""
        values: dict[str, Any] = {
            ":phase": phase,
            ":shard": shard,
            ":cursor": cursor,
            ":status": status,
            ":now": now,
            ":owner": owner,
            ":running": "running",
            ":until": int(lease_until * 1000),
        }
        sets = ["#phase = :phase", "#shard = :shard", "#cursor = :cursor", "#status = :status", "updated_at = :now"]
        sets.append("lease_until = :until")
        for name in COUNTS:
            values[f":{name}"] = int(added.get(name, 0))
            sets.append(f"counts.#{name} = counts.#{name} + :{name}")
        if error:
            sets.append("#error = :error")
            values[":error"] = error
        try:
            self._client().update_item(
                TableName=self._table,
                Key=_key(recovery.tenant_id, recovery.id),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="#status = :running AND lease_owner = :owner",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#cursor": "cursor",
                    "#phase": "phase",
                    "#shard": "shard",
                    **({"#error": "error"} if error else {}),
                    **{f"#{name}": name for name in COUNTS},
                },
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as error_:
            if _failed_condition(error_):
                return False
            raise
        return True

    def switch(
        self, recovery: Recovery, to: RecoveryStatus, *, when: tuple[RecoveryStatus, ...], now: str
    ) -> Recovery | None:
        """Change the status if it is one of `when`; the recovery after, or None if it was not."""
        names = [f":when{i}" for i in range(len(when))]
        try:
            response = self._client().update_item(
                TableName=self._table,
                Key=_key(recovery.tenant_id, recovery.id),
                UpdateExpression="SET #status = :to, updated_at = :now",
                ConditionExpression=f"#status IN ({', '.join(names)})",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":to": to, ":now": now, **{name: status for name, status in zip(names, when, strict=True)}}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _failed_condition(error):
                return None
            raise
        return _from_item(response["Attributes"])

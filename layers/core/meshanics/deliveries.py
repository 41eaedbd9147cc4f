"""Delivery jobs and records: one per (event, endpoint), with every attempt (the storage side).

A record is created `pending` with the envelope's exact serialized string; that string travels in
the SQS job and is what every attempt and replay signs and sends. Its id is derived from the
endpoint and the event's sequence, so a redelivered stream record cannot create a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from botocore.exceptions import ClientError

from meshanics import dynamo
from meshanics.clock import now_iso
from meshanics.errors import Conflict, NotFound

Status = Literal["pending", "delivered", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "failed")
UNSENT_SHARDS = 8
MAX_ERROR = 300
MAX_REPLAYS = 20
_DELIVERY_ID = re.compile(r"^dlv_([0-9a-f]{24})_([1-9][0-9]{0,18})$")


@dataclass(frozen=True)
class DeliveryJob:
    """What the delivery queue carries: enough to sign and send without reading the record."""

    tenant_id: str
    endpoint_id: str
    sequence: int
    event_type: str
    idempotency_key: str
    body: str
    attempt_base: int = 0

    @property
    def delivery_id(self) -> str:
        return delivery_id(self.endpoint_id, self.sequence)

    def to_message(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "tenant": self.tenant_id,
                "endpoint": self.endpoint_id,
                "sequence": self.sequence,
                "type": self.event_type,
                "key": self.idempotency_key,
                "attempt_base": self.attempt_base,
                "body": self.body,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, text: str) -> DeliveryJob:
        m = json.loads(text)
        return cls(
            tenant_id=m["tenant"],
            endpoint_id=m["endpoint"],
            sequence=int(m["sequence"]),
            event_type=m["type"],
            idempotency_key=m["key"],
            body=m["body"],
            attempt_base=int(m.get("attempt_base", 0)),
        )


def delivery_id(endpoint_id: str, sequence: int) -> str:
    return f"dlv_{endpoint_id.removeprefix('ep_')}_{sequence}"


def parse_delivery_id(value: str) -> tuple[str, int]:
    match = _DELIVERY_ID.fullmatch(value)
    if not match:
        raise NotFound(f"delivery {value} not found")
    return f"ep_{match.group(1)}", int(match.group(2))


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
class AttemptResult:
    """An attempt and the status it leaves the delivery in, ready to be recorded."""

    job: DeliveryJob
    attempt: Attempt
    status: Status
    next_attempt_at: str | None = None


@dataclass(frozen=True)
class Delivery:
    job: DeliveryJob
    status: Status
    attempt_count: int
    created_at: str
    updated_at: str
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    replays: int = 0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)

    def public(self, *, detail: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.job.delivery_id,
            "webhook_id": self.job.endpoint_id,
            "event_type": self.job.event_type,
            "sequence": self.job.sequence,
            "idempotency_key": self.job.idempotency_key,
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
        if detail:
            body["attempts"] = [a.as_dict() for a in self.attempts]
            body["envelope"] = json.loads(self.job.body)
        return body


def _shard(job: DeliveryJob) -> str:
    digest = hashlib.sha256(f"{job.tenant_id}/{job.delivery_id}".encode()).digest()
    return f"UNSENT#{digest[0] % UNSENT_SHARDS}"


def _from_item(item: Mapping[str, Any]) -> Delivery:
    v = dynamo.from_item(item)
    job = DeliveryJob(
        tenant_id=v["tenant_id"],
        endpoint_id=v["endpoint_id"],
        sequence=int(v["sequence"]),
        event_type=v["event_type"],
        idempotency_key=v["idempotency_key"],
        body=v["body"],
        attempt_base=int(v.get("attempt_base", 0)),
    )
    return Delivery(
        job=job,
        status=v["status"],
        attempt_count=int(v.get("attempt_count", 0)),
        created_at=v["created_at"],
        updated_at=v["updated_at"],
        last_status_code=v.get("last_status_code"),
        last_error=v.get("last_error"),
        next_attempt_at=v.get("next_attempt_at"),
        delivered_at=v.get("delivered_at"),
        replays=int(v.get("replays", 0)),
        attempts=tuple(
            Attempt(
                number=int(a["attempt"]),
                at=a["at"],
                outcome=a["outcome"],
                status_code=a.get("status_code"),
                duration_ms=int(a.get("duration_ms", 0)),
                error=a.get("error"),
            )
            for a in v.get("attempts", [])
        ),
    )


class DeliveryStore:
    def __init__(self, client: Callable[[], Any], table: str, *, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = retention_days * 86_400

    def _key(self, tenant_id: str, endpoint_id: str, sequence: int) -> dict[str, Any]:
        return dynamo.to_item({"pk": dynamo.deliveries_pk(tenant_id, endpoint_id), "sk": dynamo.delivery_sk(sequence)})

    def _new_item(self, job: DeliveryJob, now: float) -> dict[str, Any]:
        created = now_iso(now)
        return dynamo.to_item(
            {
                "pk": dynamo.deliveries_pk(job.tenant_id, job.endpoint_id),
                "sk": dynamo.delivery_sk(job.sequence),
                "kind": "delivery",
                "tenant_id": job.tenant_id,
                "endpoint_id": job.endpoint_id,
                "sequence": job.sequence,
                "event_type": job.event_type,
                "idempotency_key": job.idempotency_key,
                "body": job.body,
                "status": "pending",
                "attempt_count": 0,
                "attempt_base": job.attempt_base,
                "created_at": created,
                "updated_at": created,
                "expires_at": int(now) + self._retention,
                # Sparse index of jobs not yet attempted: the sweeper re-sends any left behind.
                "gsi1pk": _shard(job),
                "gsi1sk": created,
            }
        )

    def create_pending(self, jobs: Sequence[DeliveryJob]) -> list[DeliveryJob]:
        """Create records for the jobs that have none yet; return those (the ones to enqueue).

        A job whose record already exists (a redelivered stream record) is left out, so it is not
        enqueued a second time. Existing records are looked up first (BatchGetItem, 100 keys a
        call) and the new ones written in batches of 25: a check then a write is safe here because
        the records of a stream shard are fanned out by one invocation at a time (the mapping's
        ParallelizationFactor is 1), so no other writer creates the same record in between.
        """
        if not jobs:
            return []
        existing = self._existing([self._key(j.tenant_id, j.endpoint_id, j.sequence) for j in jobs])
        new = [
            j
            for j in jobs
            if (dynamo.deliveries_pk(j.tenant_id, j.endpoint_id), dynamo.delivery_sk(j.sequence)) not in existing
        ]
        now = time.time()
        for chunk in dynamo.chunks(new, 25):
            request: dict[str, Any] = {
                self._table: [{"PutRequest": {"Item": self._new_item(job, now)}} for job in chunk]
            }
            for pause in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
                time.sleep(pause)
                request = self._client().batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
            else:
                raise RuntimeError("DynamoDB left delivery records unprocessed after retries")
        return new

    def _existing(self, keys: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for chunk in dynamo.chunks(keys, 100):
            request: dict[str, Any] = {
                self._table: {"Keys": list(chunk), "ProjectionExpression": "pk, sk", "ConsistentRead": True}
            }
            for pause in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
                time.sleep(pause)
                response = self._client().batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found.add((item["pk"]["S"], item["sk"]["S"]))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError("DynamoDB left delivery lookups unprocessed after retries")
        return found

    def delete_unsent(self, job: DeliveryJob) -> None:
        """Undo a record whose job could not be enqueued (so a retried fan-out recreates both)."""
        self._client().delete_item(
            TableName=self._table,
            Key=self._key(job.tenant_id, job.endpoint_id, job.sequence),
            ConditionExpression="attempt_count = :zero AND #status = :pending",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=dynamo.to_item({":zero": 0, ":pending": "pending"}),
        )

    def create_direct(self, job: DeliveryJob) -> None:
        """A record for a job sent at once by the caller (test deliveries), outside the sweeper."""
        item = self._new_item(job, time.time())
        item.pop("gsi1pk")
        item.pop("gsi1sk")
        self._client().put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def _attempt_update(self, result: AttemptResult) -> dict[str, Any]:
        """The UpdateItem parameters that append an attempt and set the resulting status."""
        job, attempt, status = result.job, result.attempt, result.status
        sets: dict[str, Any] = {
            "status": status,
            "attempt_count": attempt.number,
            "updated_at": attempt.at,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
        }
        removes = ["gsi1pk", "gsi1sk"]
        if status == "delivered":
            sets["delivered_at"] = attempt.at
            removes.append("next_attempt_at")
        elif result.next_attempt_at:
            sets["next_attempt_at"] = result.next_attempt_at
        else:
            removes.append("next_attempt_at")
        for name in ("last_status_code", "last_error"):
            if sets[name] is None:
                sets.pop(name)
                removes.append(name)
        expression, names, values = dynamo.update_expression(sets, removes)
        names["#attempts"] = "attempts"
        values[":attempt"] = dynamo.to_value([attempt.as_dict()])
        values[":empty"] = dynamo.to_value([])
        expression = expression.replace(
            "SET ", "SET #attempts = list_append(if_not_exists(#attempts, :empty), :attempt), ", 1
        )
        # A delivered record is never turned back to pending or failed by a late duplicate job.
        condition = "attribute_exists(pk)"
        if status != "delivered":
            condition += " AND #st <> :delivered"
            names["#st"] = "status"
            values[":delivered"] = dynamo.to_value("delivered")
        return {
            "TableName": self._table,
            "Key": self._key(job.tenant_id, job.endpoint_id, job.sequence),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def record_attempt(self, result: AttemptResult) -> bool:
        """Append an attempt and set the resulting status in one write; False if the record is gone."""
        try:
            self._client().update_item(**self._attempt_update(result))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_failed(self, job: DeliveryJob, error: str) -> bool:
        """Settle a pending delivery as failed (no recorded outcome); False if it is not pending."""
        try:
            self._client().update_item(
                TableName=self._table,
                Key=self._key(job.tenant_id, job.endpoint_id, job.sequence),
                UpdateExpression="SET #status = :failed, last_error = :error, updated_at = :now "
                "REMOVE next_attempt_at, gsi1pk, gsi1sk",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=dynamo.to_item(
                    {":failed": "failed", ":pending": "pending", ":error": error[:MAX_ERROR], ":now": now_iso()}
                ),
            )
        except ClientError as error_:
            if error_.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, tenant_id: str, delivery_id_: str) -> Delivery:
        endpoint_id, sequence = parse_delivery_id(delivery_id_)
        response = self._client().get_item(
            TableName=self._table, Key=self._key(tenant_id, endpoint_id, sequence), ConsistentRead=True
        )
        if "Item" not in response:
            raise NotFound(f"delivery {delivery_id_} not found")
        return _from_item(response["Item"])

    def page(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        limit: int,
        cursor: str | None,
        status: Status | None = None,
        event_type: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Newest first; filters apply before the page is cut, so a page holds `limit` matches."""
        partition = dynamo.deliveries_pk(tenant_id, endpoint_id)
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": dynamo.to_value(partition)},
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
        }
        conditions = []
        if status:
            conditions.append("#status = :status")
            kwargs.setdefault("ExpressionAttributeNames", {})["#status"] = "status"
            kwargs["ExpressionAttributeValues"][":status"] = dynamo.to_value(status)
        if event_type:
            if event_type.endswith(".*"):
                conditions.append("begins_with(event_type, :type)")
                kwargs["ExpressionAttributeValues"][":type"] = dynamo.to_value(event_type[:-1])
            else:
                conditions.append("event_type = :type")
                kwargs["ExpressionAttributeValues"][":type"] = dynamo.to_value(event_type)
        if conditions:
            kwargs["FilterExpression"] = " AND ".join(conditions)
        start = dynamo.decode_cursor(cursor, partition=partition, sort_prefix="D#")
        if start:
            kwargs["ExclusiveStartKey"] = start
        found: list[Delivery] = []
        while True:
            response = self._client().query(**kwargs)
            for item in response.get("Items", []):
                found.append(_from_item(item))
                if len(found) == limit:
                    last = {"pk": item["pk"], "sk": item["sk"]}
                    more = "LastEvaluatedKey" in response or item is not response["Items"][-1]
                    return found, dynamo.encode_cursor(last) if more else None
            if "LastEvaluatedKey" not in response:
                return found, None
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def unsent(self, *, older_than: float, limit: int = 500) -> list[DeliveryJob]:
        """Jobs recorded but never attempted since before `older_than` (epoch seconds)."""
        jobs: list[DeliveryJob] = []
        cutoff = now_iso(older_than)
        for shard in range(UNSENT_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "unsent",
                "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk < :cutoff",
                "ExpressionAttributeValues": dynamo.to_item({":pk": f"UNSENT#{shard}", ":cutoff": cutoff}),
            }
            while len(jobs) < limit:
                response = self._client().query(**kwargs)
                jobs.extend(_from_item(i).job for i in response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return jobs[:limit]

    def touch_unsent(self, job: DeliveryJob) -> None:
        """Move a re-sent job to the back of the sweeper's index."""
        try:
            self._client().update_item(
                TableName=self._table,
                Key=self._key(job.tenant_id, job.endpoint_id, job.sequence),
                UpdateExpression="SET gsi1sk = :now",
                ConditionExpression="attribute_exists(gsi1pk)",
                ExpressionAttributeValues=dynamo.to_item({":now": now_iso()}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def reopen_for_replay(self, tenant_id: str, delivery_id_: str) -> DeliveryJob:
        """Turn a failed delivery back to pending for a replay; its job continues the attempt count."""
        delivery = self.get(tenant_id, delivery_id_)
        if delivery.status != "failed":
            raise Conflict(f"only failed deliveries can be replayed; this one is {delivery.status}")
        if delivery.replays >= MAX_REPLAYS:
            raise Conflict(f"this delivery was already replayed {MAX_REPLAYS} times")
        try:
            self._client().update_item(
                TableName=self._table,
                Key=self._key(tenant_id, delivery.job.endpoint_id, delivery.job.sequence),
                UpdateExpression="SET #status = :pending, replays = if_not_exists(replays, :zero) + :one, "
                "attempt_base = attempt_count, updated_at = :now REMOVE next_attempt_at",
                ConditionExpression="#status = :failed",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=dynamo.to_item(
                    {":pending": "pending", ":failed": "failed", ":zero": 0, ":one": 1, ":now": now_iso()}
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict("the delivery changed while replaying; read it again") from None
            raise
        return replace(delivery.job, attempt_base=delivery.attempt_count)

    def failed_for_endpoint(
        self, tenant_id: str, endpoint_id: str, *, since: str | None, limit: int
    ) -> Iterable[Delivery]:
        deliveries, _ = self.page(tenant_id, endpoint_id, limit=limit, cursor=None, status="failed")
        return [d for d in deliveries if since is None or d.created_at >= since]

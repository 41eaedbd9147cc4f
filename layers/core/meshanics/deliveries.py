"""Delivery jobs and records: one per (event, endpoint), with every attempt (the storage side).

A record is created `pending` with the envelope's exact serialized string; that string travels in
the SQS job and is what every attempt and replay signs and sends. Its id is derived from the
endpoint and the event's sequence, so a redelivered stream record cannot create a second one.

The record is the authority on attempts: `attempt_count` counts POSTs made, `attempt_base` is the
count when the current run of the retry schedule began (0, or the count at a replay), and every
attempt is recorded with a condition on the state the deliverer read, so two copies of one job
never both advance it. Failed records carry a sparse index entry (`failed` index, sharded) from
which the sweep replays them once their endpoint delivers again.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from meshanics import dynamo
from meshanics.clock import now_iso
from meshanics.errors import NotFound

Status = Literal["pending", "delivered", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "failed")
FAILED_SHARDS = 8
FAILED_INDEX = "failed"
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

    @property
    def attempt_base(self) -> int:
        """The attempt count when the current run of the retry schedule began."""
        return self.job.attempt_base

    def accepts(self, job: DeliveryJob) -> bool:
        """Whether `job` may make the next attempt of this delivery.

        A pending delivery takes the job of its current run. A failed one takes a replay's job: one
        that starts a new run at the current count (its record may not say pending yet). Anything
        else is a stale copy: a job of an earlier run, or a duplicate of one that already finished.
        """
        if self.status == "pending":
            return job.attempt_base == self.attempt_base
        if self.status == "failed":
            return job.attempt_base == self.attempt_count and self.replays < MAX_REPLAYS
        return False

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


def _failed_shard(job: DeliveryJob) -> str:
    digest = hashlib.sha256(f"{job.tenant_id}/{job.delivery_id}".encode()).digest()
    return f"FAILED#{digest[0] % FAILED_SHARDS}"


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


def _holds(error: ClientError, attempt: Attempt) -> bool:
    """Whether the item a failed condition returned (ALL_OLD) already holds `attempt`."""
    item: dict[str, Any] = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
    if "attempts" not in item:
        return False
    recorded = dynamo.from_item({"attempts": item["attempts"]})["attempts"]
    return any(a.get("attempt") == attempt.number and a.get("at") == attempt.at for a in recorded)


class DeliveryStore:
    def __init__(self, client: Callable[[], Any], table: str, *, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = retention_days * 86_400

    def _key(self, tenant_id: str, endpoint_id: str, sequence: int) -> dict[str, Any]:
        return dynamo.to_item({"pk": dynamo.deliveries_pk(tenant_id, endpoint_id), "sk": dynamo.delivery_sk(sequence)})

    def _new_item(self, job: DeliveryJob, now: float) -> dict[str, Any]:
        created = now_iso(now)
        return {
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
        }

    def create_pending(self, jobs: Sequence[DeliveryJob]) -> tuple[list[DeliveryJob], int]:
        """Create the records the jobs need; return (the jobs to enqueue, how many were already done).

        A job whose record exists and was never attempted is enqueued again: its first fan-out may
        have stopped between writing the record and sending the job (a duplicate job is harmless,
        the deliverer drops copies). One whose record was attempted already is left out. Existing
        records are looked up first (BatchGetItem) and the new ones written in batches of 25: a
        check then a write is safe because a stream shard's records are fanned out by one
        invocation at a time (ParallelizationFactor 1), so nobody creates the same record in between.
        """
        if not jobs:
            return [], 0
        jobs = list({j.delivery_id: j for j in jobs}.values())  # a record repeated in one batch
        existing = dynamo.batch_get(
            self._client(),
            self._table,
            [self._key(j.tenant_id, j.endpoint_id, j.sequence) for j in jobs],
            projection="pk, sk, #status, attempt_count",
            names={"#status": "status"},
        )
        now = time.time()
        new: list[DeliveryJob] = []
        unattempted: list[DeliveryJob] = []
        for job in jobs:
            found = existing.get(
                (dynamo.deliveries_pk(job.tenant_id, job.endpoint_id), dynamo.delivery_sk(job.sequence))
            )
            if found is None:
                new.append(job)
            elif found["status"]["S"] == "pending" and found["attempt_count"]["N"] == "0":
                unattempted.append(job)
        dynamo.batch_write(
            self._client(),
            self._table,
            [{"PutRequest": {"Item": dynamo.to_item(self._new_item(job, now))}} for job in new],
        )
        return new + unattempted, len(jobs) - len(new) - len(unattempted)

    def get_many(self, jobs: Sequence[DeliveryJob]) -> dict[str, Delivery]:
        """The records of `jobs` by delivery id (read consistently); missing ones are absent.

        Raises StoreThrottled rather than report a throttled record as missing.
        """
        unique = {j.delivery_id: j for j in jobs}.values()
        items = dynamo.batch_get(
            self._client(), self._table, [self._key(j.tenant_id, j.endpoint_id, j.sequence) for j in unique]
        )
        found = (_from_item(item) for item in items.values())
        return {d.job.delivery_id: d for d in found}

    def record_test(self, job: DeliveryJob, attempt: Attempt) -> None:
        """A test delivery, written once with its only attempt (made before: a test that dies
        mid-POST leaves no record behind, and its API call fails for the caller to retry)."""
        item = self._new_item(job, time.time())
        item |= {
            "status": attempt.outcome,
            "attempt_count": attempt.number,
            "updated_at": attempt.at,
            "attempts": [attempt.as_dict()],
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
        }
        if attempt.outcome == "delivered":
            item["delivered_at"] = attempt.at
        try:
            self._client().put_item(
                TableName=self._table,
                Item=dynamo.to_item(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            # Only our own earlier write (its answer lost, the SDK retried) may already be there.
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException" or not _holds(error, attempt):
                raise

    def _attempt_update(self, result: AttemptResult, seen: Delivery) -> dict[str, Any]:
        """The UpdateItem parameters that append an attempt and set the resulting status, if the
        record is still as `seen` (no other copy of the job recorded an attempt in between)."""
        job, attempt, status = result.job, result.attempt, result.status
        sets: dict[str, Any] = {
            "status": status,
            "attempt_count": attempt.number,
            "attempt_base": job.attempt_base,
            "updated_at": attempt.at,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
        }
        removes = ["gsi1pk", "gsi1sk"]
        if seen.status == "failed":
            sets["replays"] = seen.replays + 1  # a replay's job that arrived before its record said so
        if status == "delivered":
            sets["delivered_at"] = attempt.at
            removes.append("next_attempt_at")
        elif result.next_attempt_at:
            sets["next_attempt_at"] = result.next_attempt_at
        else:
            removes.append("next_attempt_at")
        if status == "failed":
            removes.remove("gsi1pk")
            removes.remove("gsi1sk")
            sets["gsi1pk"] = _failed_shard(job)
            sets["gsi1sk"] = attempt.at
        for name in ("last_status_code", "last_error"):
            if sets[name] is None:
                sets.pop(name)
                removes.append(name)
        expression, names, values = dynamo.update_expression(sets, removes)
        names["#attempts"] = "attempts"
        names["#count"] = "attempt_count"
        names["#st"] = "status"
        values[":attempt"] = dynamo.to_value([attempt.as_dict()])
        values[":empty"] = dynamo.to_value([])
        values[":seen_count"] = dynamo.to_value(seen.attempt_count)
        values[":seen_status"] = dynamo.to_value(seen.status)
        expression = expression.replace(
            "SET ", "SET #attempts = list_append(if_not_exists(#attempts, :empty), :attempt), ", 1
        )
        return {
            "TableName": self._table,
            "Key": self._key(job.tenant_id, job.endpoint_id, job.sequence),
            "UpdateExpression": expression,
            "ConditionExpression": "#count = :seen_count AND #st = :seen_status",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def record_attempt(self, result: AttemptResult, seen: Delivery) -> bool:
        """Append an attempt and set the resulting status in one write; False if the record changed
        since it was read as `seen` (another copy of the job got there first).

        A write whose answer was lost and that the SDK then retried finds its own attempt already
        there: that is success, not a change by someone else.
        """
        try:
            self._client().update_item(
                **self._attempt_update(result, seen), ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return _holds(error, result.attempt)
            raise
        return True

    def mark_failed(self, job: DeliveryJob, error: str) -> bool:
        """Settle a pending delivery as failed (no recorded outcome); False if it is not pending."""
        try:
            self._client().update_item(
                TableName=self._table,
                Key=self._key(job.tenant_id, job.endpoint_id, job.sequence),
                UpdateExpression="SET #status = :failed, last_error = :error, updated_at = :now, "
                "gsi1pk = :shard, gsi1sk = :now REMOVE next_attempt_at",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=dynamo.to_item(
                    {
                        ":failed": "failed",
                        ":pending": "pending",
                        ":error": error[:MAX_ERROR],
                        ":now": now_iso(),
                        ":shard": _failed_shard(job),
                    }
                ),
            )
        except ClientError as error_:
            if error_.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def reopen(self, delivery: Delivery) -> bool:
        """Show a failed delivery as pending once its replay's job is queued; False if it changed
        since it was read (the job may already have run: nothing to do)."""
        try:
            self._client().update_item(
                TableName=self._table,
                Key=self._key(delivery.job.tenant_id, delivery.job.endpoint_id, delivery.job.sequence),
                UpdateExpression="SET #status = :pending, replays = if_not_exists(replays, :zero) + :one, "
                "attempt_base = attempt_count, updated_at = :now REMOVE next_attempt_at, gsi1pk, gsi1sk",
                ConditionExpression="#status = :failed AND attempt_count = :count",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=dynamo.to_item(
                    {
                        ":pending": "pending",
                        ":failed": "failed",
                        ":zero": 0,
                        ":one": 1,
                        ":now": now_iso(),
                        ":count": delivery.attempt_count,
                    }
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
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

    def failed(self, *, limit: int) -> list[Delivery]:
        """Failed deliveries from the sparse `failed` index, oldest failure first within each shard."""
        found: list[Delivery] = []
        for shard in range(FAILED_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": FAILED_INDEX,
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": dynamo.to_item({":pk": f"FAILED#{shard}"}),
            }
            while len(found) < limit:
                response = self._client().query(**kwargs)
                found.extend(_from_item(i) for i in response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    def failed_for_endpoint(
        self, tenant_id: str, endpoint_id: str, *, since: str | None, limit: int
    ) -> Iterable[Delivery]:
        deliveries, _ = self.page(tenant_id, endpoint_id, limit=limit, cursor=None, status="failed")
        return [d for d in deliveries if since is None or d.created_at >= since]

"""Delivery items: one per (event, endpoint), written at its first attempt and at every later one.

Item: `T#<tenant>#EP#<endpoint>` / `D#<sequence, 20 digits>` (newest first is a reverse Query);
`status`, `attempt_count` (POSTs made, over every run), `attempt_base` (the count when the current
run of the retry schedule began), `replays`, `attempts` (each with number, time, outcome, status
code, duration, short error), `partition` (where the audit record and its body are), timestamps,
`expires_at` (TTL). No body: the audit record holds it once for every endpoint. Failed items carry
`gsi1pk` = `FAILED#<0..7>` and `gsi1sk` (when) in the sparse `failed` index the sweep reads.

Every attempt is written conditionally on what the deliverer read before its POST, so two copies
of one job never both advance a delivery; a write the SDK repeated after a lost answer is
recognised by its own attempt (see batch.conditional).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from meshanics.clock import now_iso, parse_moment
from meshanics.errors import NotFound
from meshanics.model import (
    MAX_ERROR,
    Attempt,
    AttemptResult,
    Delivery,
    DeliveryFilter,
    DeliveryJob,
    Endpoint,
    Status,
    parse_delivery_id,
)
from meshanics.store.batch import batch_get, conditional
from meshanics.store.endpoints import EndpointStore
from meshanics.store.items import from_item, time_window, to_item, to_value, update_expression
from meshanics.store.tenants import SEQUENCE_SKEW

FAILED_SHARDS = 8
FAILED_INDEX = "failed"
READ_BUDGET = 1000  # items a page of the history reads at most (a selective search ends it short)
SEEK_PROBES = 64  # one-item reads to find where a search ending at `until` starts (2^64 sequences)
ANY = DeliveryFilter()


@dataclass(frozen=True)
class Slice:
    """A page of attempted deliveries, and where the next one starts: the items below `rest` were
    not read yet (None: none of them matches)."""

    items: list[Delivery]
    rest: int | None


def deliveries_pk(tenant_id: str, endpoint_id: str) -> str:
    return f"T#{tenant_id}#EP#{endpoint_id}"


def delivery_sk(sequence: int) -> str:
    return f"D#{sequence:020d}"


def _key(tenant_id: str, endpoint_id: str, sequence: int) -> dict[str, Any]:
    return to_item({"pk": deliveries_pk(tenant_id, endpoint_id), "sk": delivery_sk(sequence)})


def _failed_shard(tenant_id: str, delivery_id: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}/{delivery_id}".encode()).digest()
    return f"FAILED#{digest[0] % FAILED_SHARDS}"


def _moved(moment: str, by: timedelta) -> datetime | None:
    try:
        return parse_moment(moment) + by
    except OverflowError:  # beyond year 1 or 9999: no bound there
        return None


def _sequence(key: Mapping[str, Any]) -> int:
    return int(key["sk"]["S"].removeprefix("D#"))


def _from_item(item: Mapping[str, Any]) -> Delivery:
    v = from_item(item)
    return Delivery(
        tenant_id=v["tenant_id"],
        endpoint_id=v["endpoint_id"],
        sequence=int(v["sequence"]),
        event_type=v["event_type"],
        idempotency_key=v["idempotency_key"],
        partition=v["partition"],
        status=v["status"],
        attempt_count=int(v.get("attempt_count", 0)),
        attempt_base=int(v.get("attempt_base", 0)),
        created_at=v["created_at"],
        updated_at=v["updated_at"],
        last_status_code=v.get("last_status_code"),
        last_error=v.get("last_error"),
        next_attempt_at=v.get("next_attempt_at"),
        delivered_at=v.get("delivered_at"),
        replays=int(v.get("replays", 0)),
        recovery_id=v.get("recovery_id"),
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


def _holds(found: Mapping[str, Any], attempt: Attempt) -> bool:
    """Whether an item (plain values) already holds `attempt`: our own write, repeated by the SDK."""
    return any(a.get("attempt") == attempt.number and a.get("at") == attempt.at for a in found.get("attempts", []))


class DeliveryStore:
    def __init__(self, client: Callable[[], Any], table: str, *, retention_days: int) -> None:
        self._client = client
        self._table = table
        self._retention = retention_days * 86_400

    # -- reads -------------------------------------------------------------------------------
    def find(self, tenant_id: str, endpoint_id: str, sequence: int) -> Delivery | None:
        response = self._client().get_item(
            TableName=self._table, Key=_key(tenant_id, endpoint_id, sequence), ConsistentRead=True
        )
        return _from_item(response["Item"]) if "Item" in response else None

    def get(self, tenant_id: str, delivery_id: str) -> Delivery:
        endpoint_id, sequence = parse_delivery_id(delivery_id)
        found = self.find(tenant_id, endpoint_id, sequence)
        if found is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return found

    def attempted(self, tenant_id: str, endpoint_id: str, sequences: Sequence[int]) -> dict[int, Delivery]:
        """The deliveries among `sequences` that were attempted (have an item), by sequence."""
        items = batch_get(self._client(), self._table, [_key(tenant_id, endpoint_id, s) for s in set(sequences)])
        return {d.sequence: d for d in (_from_item(i) for i in items.values())}

    def read_for(self, jobs: Sequence[DeliveryJob]) -> tuple[dict[tuple[str, str], Endpoint], dict[str, Delivery]]:
        """The endpoints and the delivery items of a batch of jobs, in one consistent BatchGetItem.

        Raises StoreThrottled rather than report a throttled item as missing.
        """
        endpoint_keys = {(j.tenant_id, j.endpoint_id) for j in jobs}
        delivery_keys = {(j.tenant_id, j.endpoint_id, j.sequence) for j in jobs}
        keys = [EndpointStore.key(t, e) for t, e in sorted(endpoint_keys)]
        keys += [_key(t, e, s) for t, e, s in sorted(delivery_keys)]
        endpoints: dict[tuple[str, str], Endpoint] = {}
        deliveries: dict[str, Delivery] = {}
        for (_pk, sk), item in batch_get(self._client(), self._table, keys).items():
            if sk.startswith("EP#"):
                ep = EndpointStore.from_item(item)
                endpoints[(ep.tenant_id, ep.id)] = ep
            else:
                d = _from_item(item)
                deliveries[d.id] = d
        return endpoints, deliveries

    def page(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        limit: int,
        before: int | None,
        after: int = 0,
        search: DeliveryFilter = ANY,
        budget: int | None = None,
    ) -> Slice:
        """Attempted deliveries between sequences `after` and `before` (exclusive) that match
        `search`, newest first.

        The filters apply before the page is cut, so a page holds `limit` matches, unless `budget`
        items (if given) were read first: a selective search, the slice says where to carry on.
        """
        values: dict[str, Any] = {":pk": deliveries_pk(tenant_id, endpoint_id)}
        condition = "pk = :pk"
        if before is not None and after:
            if before - after <= 1:
                return Slice([], None)
            condition += " AND sk BETWEEN :after AND :before"
            values[":after"], values[":before"] = delivery_sk(after + 1), delivery_sk(before - 1)
        elif before is not None:
            condition += " AND sk < :before"
            values[":before"] = delivery_sk(before)
        elif after:
            condition += " AND sk > :after"
            values[":after"] = delivery_sk(after)
        names: dict[str, str] = {}
        match = []
        if search.status:
            match.append("#status = :status")
            names["#status"] = "status"
            values[":status"] = search.status
        if search.event_type:
            if search.event_type.endswith(".*"):
                match.append("begins_with(event_type, :type)")
                values[":type"] = search.event_type[:-1]
            else:
                match.append("event_type = :type")
                values[":type"] = search.event_type
        if search.status_code is not None:
            match.append("last_status_code = :code")
            values[":code"] = search.status_code
        window = time_window("#created", search.since, search.until, values)
        if window:
            names["#created"] = "created_at"
            match += window
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
        }
        if match:
            kwargs["FilterExpression"] = " AND ".join(match)
        if names:
            kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = to_item(values)
        found: list[Delivery] = []
        read = 0
        while True:
            # Filtered, a page may need many items read: ask for what the budget still allows.
            allowed = READ_BUDGET if budget is None else budget - read
            kwargs["Limit"] = allowed if match else min(max(limit, 25), allowed)
            response = self._client().query(**kwargs)
            read += int(response.get("ScannedCount", 0))
            items = response.get("Items", [])
            for index, item in enumerate(items):
                delivery = _from_item(item)
                if not search.within(delivery.created_at):  # the expression kept its whole second
                    continue
                found.append(delivery)
                if len(found) == limit:
                    more = "LastEvaluatedKey" in response or index < len(items) - 1
                    return Slice(found, delivery.sequence if more else None)
            last = response.get("LastEvaluatedKey")
            if last is None:
                return Slice(found, None)
            if budget is not None and read >= budget:
                return Slice(found, _sequence(last))
            kwargs["ExclusiveStartKey"] = last

    def span(self, tenant_id: str, endpoint_id: str, since: str | None, until: str | None) -> tuple[int, int | None]:
        """The sequences a search of [since, until) need read: `(after, before)`, exclusive, with
        every delivery of the endpoint at or below `after` created before `since` and every one at
        or above `before` created at or after `until` (None: no such bound). Found by bisecting the
        sequences with one-item reads, so the window is a key condition, not a read of everything
        outside it filtered out. Sequences follow time within SEQUENCE_SKEW (store.tenants): an
        item that much outside the window puts every sequence beyond it outside too."""
        pk = deliveries_pk(tenant_id, endpoint_id)

        def newest_below(sequence: int | None) -> tuple[int, datetime] | None:
            condition = "pk = :pk" if sequence is None else "pk = :pk AND sk < :below"
            values = {":pk": pk} if sequence is None else {":pk": pk, ":below": delivery_sk(sequence)}
            response = self._client().query(
                TableName=self._table,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=to_item(values),
                ProjectionExpression="sk, created_at",
                ScanIndexForward=False,
                Limit=1,
            )
            items = response.get("Items", [])
            if not items:
                return None
            item = from_item(items[0])
            return int(item["sk"].removeprefix("D#")), parse_moment(item["created_at"])

        newest = newest_below(None) if since is not None or until is not None else None
        if newest is None:
            return 0, None
        skew = timedelta(seconds=SEQUENCE_SKEW)
        after = 0
        if since is not None:
            older = _moved(since, -skew)
            if older is not None and newest[1] < older:
                after = newest[0]
            elif older is not None:
                low, high = 0, newest[0] + 1  # the last item old enough is in [low, high)
                for _ in range(SEEK_PROBES):
                    if high - low <= 1:
                        break
                    middle = (low + high) // 2
                    below = newest_below(middle)
                    if below is None or below[1] < older:
                        after = below[0] if below is not None else after
                        low = middle  # nothing between it and `middle`: look above
                    else:
                        high = below[0]
        before = None
        if until is not None:
            newer = _moved(until, skew)
            if newer is not None and newest[1] >= newer:
                low, high = after, newest[0]  # the first item new enough is in (low, high]
                for _ in range(SEEK_PROBES):
                    if high - low <= 1:
                        break
                    middle = (low + high) // 2
                    below = newest_below(middle)
                    if below is not None and below[1] >= newer:
                        high = below[0]
                    else:  # none below `middle`, or an older one: nothing to skip there
                        low = middle
                before = high
        return after, before

    def _window_query(
        self, tenant_id: str, endpoint_id: str, *, after: int, since: str, until: str, statuses: Sequence[Status]
    ) -> dict[str, Any]:
        names = [f":status{i}" for i in range(len(statuses))]
        return {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk > :after",
            "FilterExpression": f"created_at BETWEEN :since AND :until AND #status IN ({', '.join(names)})",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item(
                {
                    ":pk": deliveries_pk(tenant_id, endpoint_id),
                    ":after": delivery_sk(after),
                    ":since": since,
                    ":until": until,
                    **dict(zip(names, statuses, strict=True)),
                }
            ),
        }

    def in_window(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        after: int,
        since: str,
        until: str,
        statuses: Sequence[Status],
        budget: int,
    ) -> tuple[list[Delivery], int | None]:
        """The endpoint's deliveries above sequence `after` created in [since, until] with one of
        `statuses`, oldest first, examining at most `budget` items; also the sequence to continue
        after (None: nothing is left)."""
        kwargs = self._window_query(tenant_id, endpoint_id, after=after, since=since, until=until, statuses=statuses)
        kwargs["Limit"] = budget
        response = self._client().query(**kwargs)
        found = [_from_item(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return found, (int(last["sk"]["S"].removeprefix("D#")) if last else None)

    def count_in_window(
        self, tenant_id: str, endpoint_id: str, *, since: str, until: str, statuses: Sequence[Status], cap: int
    ) -> int:
        """How many deliveries `in_window` would find, counted up to just past `cap`."""
        kwargs = self._window_query(tenant_id, endpoint_id, after=0, since=since, until=until, statuses=statuses)
        kwargs["Select"] = "COUNT"
        total = 0
        while total <= cap:
            response = self._client().query(**kwargs)
            total += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return total

    def claim(self, delivery: Delivery, recovery_id: str, *, requested_at: str, now: str) -> bool:
        """Mark a settled delivery as taken by a recovery requested at `requested_at`, if nothing
        touched it since that request and no recovery requested at or after it took it already.

        Two overlapping recoveries thus send a delivery once, and a recovery run that died after its
        claim (before or after the job was queued) claims it again when it is redone. The claim does
        not change the status: a claimed delivery whose job never went out stays settled, replayable.
        """
        try:
            self._client().update_item(
                TableName=self._table,
                Key=_key(delivery.tenant_id, delivery.endpoint_id, delivery.sequence),
                UpdateExpression="SET recovery_id = :recovery, recovery_claimed_at = :now",
                ConditionExpression="#status = :status AND attempt_count = :count AND updated_at <= :requested "
                "AND (attribute_not_exists(recovery_id) OR recovery_id = :recovery "
                "OR recovery_claimed_at < :requested)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":recovery": recovery_id,
                        ":now": now,
                        ":status": delivery.status,
                        ":count": delivery.attempt_count,
                        ":requested": requested_at,
                    }
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def failed(self, *, limit: int) -> list[Delivery]:
        """Failed deliveries from the sparse `failed` index (oldest failure first in each shard)."""
        found: list[Delivery] = []
        for shard in range(FAILED_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": FAILED_INDEX,
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": to_item({":pk": f"FAILED#{shard}"}),
            }
            while len(found) < limit:
                response = self._client().query(**kwargs)
                found.extend(_from_item(i) for i in response.get("Items", []))
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    # -- writes ------------------------------------------------------------------------------
    def record(self, result: AttemptResult, seen: Delivery | None, *, index_failure: bool = True) -> bool:
        """Write an attempt and the status it leaves; False if the delivery changed since it was
        read as `seen` (another copy of the job got there first). The first attempt creates the
        item: one write for a delivery that succeeds at once."""
        if seen is None:
            return self._first(result, index_failure=index_failure)
        return conditional(
            self._client().update_item,
            self._attempt_update(result, seen),
            ours=lambda found: _holds(found, result.attempt),
        )

    def _first(self, result: AttemptResult, *, index_failure: bool) -> bool:
        job, attempt = result.job, result.attempt
        values: dict[str, Any] = {
            "pk": deliveries_pk(job.tenant_id, job.endpoint_id),
            "sk": delivery_sk(job.sequence),
            "tenant_id": job.tenant_id,
            "endpoint_id": job.endpoint_id,
            "sequence": job.sequence,
            "event_type": job.event_type,
            "idempotency_key": job.idempotency_key,
            "partition": job.partition,
            "status": result.status,
            "attempt_count": attempt.number,
            "attempt_base": job.attempt_base,
            "attempts": [attempt.as_dict()],
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
            "next_attempt_at": result.next_attempt_at,
            "created_at": job.recorded_at,
            "updated_at": attempt.at,
            "delivered_at": attempt.at if result.status == "delivered" else None,
            "expires_at": int(time.time()) + self._retention,
        }
        if result.status == "failed" and index_failure:
            values["gsi1pk"] = _failed_shard(job.tenant_id, job.delivery_id)
            values["gsi1sk"] = attempt.at
        return conditional(
            self._client().put_item,
            {"TableName": self._table, "Item": to_item(values), "ConditionExpression": "attribute_not_exists(pk)"},
            ours=lambda found: _holds(found, attempt),
        )

    def _attempt_update(self, result: AttemptResult, seen: Delivery) -> dict[str, Any]:
        """The UpdateItem that appends an attempt and sets the status it leaves, if the item is still
        as `seen` (no other copy of the job recorded an attempt in between)."""
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
        if seen.status != "pending":
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
            sets["gsi1pk"] = _failed_shard(job.tenant_id, job.delivery_id)
            sets["gsi1sk"] = attempt.at
        for name in ("last_status_code", "last_error"):
            if sets[name] is None:
                sets.pop(name)
                removes.append(name)
        expression, names, values = update_expression(sets, removes)
        names["#attempts"] = "attempts"
        names["#count"] = "attempt_count"
        names["#st"] = "status"
        values[":attempt"] = to_value([attempt.as_dict()])
        values[":empty"] = to_value([])
        values[":seen_count"] = to_value(seen.attempt_count)
        values[":seen_status"] = to_value(seen.status)
        condition = "#count = :seen_count AND #st = :seen_status"
        if seen.status != "pending":
            # A replay queues its job before it shows the record pending (reopen): that may land while
            # this attempt was being made. The record, reopened for this very run (its base is this
            # job's), still takes the attempt; left pending, it would never settle.
            condition = "#count = :seen_count AND (#st = :seen_status OR (#st = :pending AND #base = :base))"
            names["#base"] = "attempt_base"
            values[":pending"] = to_value("pending")
            values[":base"] = to_value(job.attempt_base)
        expression = expression.replace(
            "SET ", "SET #attempts = list_append(if_not_exists(#attempts, :empty), :attempt), ", 1
        )
        return {
            "TableName": self._table,
            "Key": _key(job.tenant_id, job.endpoint_id, job.sequence),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def mark_failed(self, job: DeliveryJob, error: str) -> bool:
        """Settle as failed a delivery never settled (pending, or never attempted: no item yet);
        False if it was settled meanwhile."""
        now = now_iso()
        try:
            self._client().update_item(
                TableName=self._table,
                Key=_key(job.tenant_id, job.endpoint_id, job.sequence),
                UpdateExpression="SET #status = :failed, last_error = :error, updated_at = :now, gsi1pk = :shard, "
                "gsi1sk = :now, tenant_id = :tenant, endpoint_id = :endpoint, #seq = :seq, event_type = :type, "
                "idempotency_key = :key, #part = :part, created_at = if_not_exists(created_at, :created), "
                "attempt_count = if_not_exists(attempt_count, :zero), attempt_base = if_not_exists(attempt_base, "
                ":zero), expires_at = if_not_exists(expires_at, :expires) REMOVE next_attempt_at",
                ConditionExpression="attribute_not_exists(pk) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status", "#seq": "sequence", "#part": "partition"},
                ExpressionAttributeValues=to_item(
                    {
                        ":failed": "failed",
                        ":pending": "pending",
                        ":error": error[:MAX_ERROR],
                        ":now": now,
                        ":shard": _failed_shard(job.tenant_id, job.delivery_id),
                        ":tenant": job.tenant_id,
                        ":endpoint": job.endpoint_id,
                        ":seq": job.sequence,
                        ":type": job.event_type,
                        ":key": job.idempotency_key,
                        ":part": job.partition,
                        ":created": job.recorded_at,
                        ":zero": 0,
                        ":expires": int(time.time()) + self._retention,
                    }
                ),
            )
        except ClientError as error_:
            if error_.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def reopen(self, delivery: Delivery) -> bool:
        """Show a settled delivery as pending once its replay's job is queued; False if it changed
        since it was read (the job may already have run: nothing to do)."""
        try:
            self._client().update_item(
                TableName=self._table,
                Key=_key(delivery.tenant_id, delivery.endpoint_id, delivery.sequence),
                UpdateExpression="SET #status = :pending, replays = if_not_exists(replays, :zero) + :one, "
                "attempt_base = attempt_count, updated_at = :now REMOVE next_attempt_at, gsi1pk, gsi1sk",
                ConditionExpression="#status IN (:failed, :delivered) AND attempt_count = :count",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":pending": "pending",
                        ":failed": "failed",
                        ":delivered": "delivered",
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

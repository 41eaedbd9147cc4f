"""Recovering an endpoint's window: `POST /v1/webhooks/{id}/recover`, now or at a scheduled time.

A request is checked and answered at once (202, a replay resource); the work runs in the replay
function, in bounded batches, from the replay queue:

* now: the run message is sent first (delayed a second), then the recovery is written; a crash in
  between leaves a message whose recovery never appears, which the run drops after a few receives;
* at a time: a one-time EventBridge Scheduler schedule (deleted after it fires) sends the run
  message then; it is created before the recovery is written, for the same reason.

A run leases the recovery, then works batch by batch until its deadline: each batch replays the
deliveries it finds in the window (one way to replay: `replay.replay`, after a claim that keeps two
overlapping recoveries from sending one delivery twice) or, for `missed`, sends the events the
endpoint subscribed to but never got (it was disabled when they were written), and records where
the next batch starts and what it counted in one conditional write. A run that dies leaves its
message in flight: it comes back once the lease has expired and the next run goes on from the last
recorded batch; what the dead run had claimed and queued is counted, not sent again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from meshanics import catalog, filters
from meshanics.clock import now_iso
from meshanics.config import RecoveryBounds
from meshanics.errors import Conflict, InvalidInput, LimitExceeded, MeshanicsError, NotFound
from meshanics.jobqueue import DeliveryQueue
from meshanics.model import (
    COUNTS,
    RECOVERY_STATUSES,
    AuditRecord,
    DeliveryJob,
    Endpoint,
    Recovery,
    check_recovery_id,
    recovery_id,
)
from meshanics.replay import ServiceUnavailable, replay
from meshanics.store.audit import AuditTable
from meshanics.store.deliveries import DeliveryStore
from meshanics.store.endpoints import EndpointStore
from meshanics.store.recoveries import RecoveryStore

log = logging.getLogger("meshanics.endpoint_recovery")

STEP = 50  # items one batch examines: a few seconds of work, one progress write
LEASE_SECONDS = 150.0  # above the replay function's timeout: a live run never loses its lease
CLOCK_SKEW = 5.0  # an `until` this far ahead of the API's clock is still "now"
RUN_DELAY = 1  # the run message waits for the recovery it announces to be written
MISSING_RECEIVES = 3  # receives of a message whose recovery was never written, before it is dropped

RunResult = Literal["done", "more", "retry"]


def _iso(moment: datetime) -> str:
    return now_iso(moment.timestamp())


class RecoveryNotReady(RuntimeError):
    """A run message arrived before its recovery was written (or the recovery never will be)."""


class RunQueue:
    """The replay queue: one message per run of a recovery (`{"tenant_id", "replay_id"}`)."""

    def __init__(self, client: Callable[[], Any], queue_url: str) -> None:
        self._client = client
        self.url = queue_url

    @staticmethod
    def message(tenant_id: str, replay_id: str) -> str:
        return json.dumps({"tenant_id": tenant_id, "replay_id": replay_id}, separators=(",", ":"))

    @staticmethod
    def parse(body: str) -> tuple[str, str]:
        """(tenant, recovery id) of a run message; ValueError if it is not one."""
        try:
            values = json.loads(body)
            return str(values["tenant_id"]), check_recovery_id(str(values["replay_id"]))
        except (TypeError, KeyError, json.JSONDecodeError, NotFound) as error:
            raise ValueError(f"not a replay run message: {error}") from None

    def send(self, tenant_id: str, replay_id: str, *, delay: int = 0) -> None:
        self._client().send_message(
            QueueUrl=self.url, MessageBody=self.message(tenant_id, replay_id), DelaySeconds=delay
        )


class RecoverySchedules:
    """One-time EventBridge Scheduler schedules that send a scheduled recovery's run message."""

    def __init__(self, client: Callable[[], Any], *, group: str, target: Callable[[], tuple[str, str]]) -> None:
        self._client = client
        self._group = group
        self._target = target  # (queue ARN, role ARN): only creating a schedule needs them

    def create(self, tenant_id: str, replay_id: str, at: datetime) -> None:
        queue_arn, role_arn = self._target()
        self._client().create_schedule(
            Name=replay_id,
            GroupName=self._group,
            ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Description=f"replay {replay_id} of tenant {tenant_id}",
            Target={
                "Arn": queue_arn,
                "RoleArn": role_arn,
                "Input": RunQueue.message(tenant_id, replay_id),
                "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600},
            },
        )

    def delete(self, replay_id: str) -> None:
        try:
            self._client().delete_schedule(Name=replay_id, GroupName=self._group)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":  # it fired already
                raise


@dataclass
class _Batch:
    phase: Any
    shard: int
    cursor: int
    added: dict[str, int]
    finished: bool


class EndpointRecovery:
    def __init__(
        self,
        *,
        recoveries: RecoveryStore,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        audit: AuditTable,
        queue: Callable[[], DeliveryQueue],
        runs: Callable[[], RunQueue],
        schedules: Callable[[], RecoverySchedules],
        bounds: RecoveryBounds,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._recoveries = recoveries
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._audit = audit
        self._queue = queue
        self._runs = runs
        self._schedules = schedules
        self.bounds = bounds
        self._clock = clock

    # -- requests (the API) --------------------------------------------------------------------
    def request(
        self,
        tenant_id: str,
        actor: str,
        webhook_id: str,
        *,
        since: datetime,
        until: datetime | None = None,
        status: str = "failed",
        missed: bool = False,
        at: datetime | None = None,
    ) -> Recovery:
        """Check a recovery and start it (or schedule it); the replay resource, status queued or
        scheduled. Every refusal is a 4xx and leaves nothing behind."""
        endpoint = self._endpoints.get(tenant_id, webhook_id)
        if status not in RECOVERY_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(RECOVERY_STATUSES)}", field="status")
        start, stop = self.check_window(since, until, at)
        if not endpoint.enabled and at is None:
            raise Conflict("the endpoint is disabled: enable it first (PATCH enabled: true, with recover_since)")
        statuses = RECOVERY_STATUSES[status]
        found = self._deliveries.count_in_window(
            tenant_id, webhook_id, since=start, until=stop, statuses=statuses, cap=self.bounds.max_deliveries
        )
        if found > self.bounds.max_deliveries:
            raise LimitExceeded(
                f"the window holds more than {self.bounds.max_deliveries} deliveries to replay; narrow it",
                field="since",
            )
        now = self._clock()
        created = now_iso(now)
        recovery = Recovery(
            tenant_id=tenant_id,
            id=recovery_id(now),
            webhook_id=webhook_id,
            actor=actor,
            since=start,
            until=stop,
            statuses=statuses,
            missed=missed,
            status="scheduled" if at is not None else "queued",
            created_at=created,
            updated_at=created,
            at=now_iso(at.timestamp()) if at is not None else None,
        )
        try:
            if at is not None:
                self._schedules().create(tenant_id, recovery.id, at)
            else:
                self._runs().send(tenant_id, recovery.id, delay=RUN_DELAY)
        except ClientError as error:
            log.exception("could not start replay %s", recovery.id)
            raise ServiceUnavailable("the replay could not be started; retry the request") from error
        self._recoveries.create(recovery)
        return recovery

    def check_window(self, since: datetime, until: datetime | None, at: datetime | None) -> tuple[str, str]:
        """The window's bounds as stored (since, until), or the 4xx that refuses it."""
        now = self._clock()
        if at is not None:
            ahead = at.timestamp() - now
            if ahead <= 0:
                raise InvalidInput("at must be in the future", field="at")
            if ahead > self.bounds.max_schedule_hours * 3600:
                raise LimitExceeded(f"at may be at most {self.bounds.max_schedule_hours} hours ahead", field="at")
        # A scheduled recovery's window may reach up to the time it runs.
        latest = at.timestamp() if at is not None else now + CLOCK_SKEW
        end = until.timestamp() if until is not None else (at.timestamp() if at is not None else now)
        if since.timestamp() > latest:
            raise InvalidInput("since is in the future", field="since")
        if end > latest:
            raise InvalidInput("until is in the future" + (" (after at)" if at else ""), field="until")
        if end <= since.timestamp():
            raise InvalidInput("until must be after since", field="until")
        if end - since.timestamp() > self.bounds.max_window_hours * 3600:
            raise LimitExceeded(f"the window may span at most {self.bounds.max_window_hours} hours", field="since")
        if since.timestamp() < now - self.bounds.max_age_days * 86_400:
            raise LimitExceeded(
                f"since is older than the {self.bounds.max_age_days} days deliveries are kept", field="since"
            )
        return _iso(since), now_iso(end)

    def get(self, tenant_id: str, replay_id: str) -> Recovery:
        return self._recoveries.get(tenant_id, check_recovery_id(replay_id))

    def page(
        self, tenant_id: str, *, webhook_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Recovery], str | None]:
        return self._recoveries.page(tenant_id, webhook_id=webhook_id, limit=limit, cursor=cursor)

    def cancel(self, tenant_id: str, replay_id: str) -> Recovery:
        """Stop a scheduled, queued or running recovery (a running one stops after its batch)."""
        current = self.get(tenant_id, replay_id)
        if current.status == "cancelled":
            return current
        cancelled = self._recoveries.switch(
            current, "cancelled", when=("scheduled", "queued", "running"), now=now_iso(self._clock())
        )
        if cancelled is None:
            latest = self.get(tenant_id, replay_id)
            if latest.status == "cancelled":
                return latest
            raise Conflict(f"this replay is {latest.status}; only a scheduled, queued or running one can be cancelled")
        if current.status == "scheduled":
            self._schedules().delete(replay_id)
        return cancelled

    # -- runs (the replay function) --------------------------------------------------------------
    def handle(self, body: str, *, owner: str, deadline: float, receive_count: int) -> None:
        """One run message: work until `deadline`, then hand the rest to the next run message.
        Raises (the message comes back later) if the recovery is not written yet or a call failed."""
        tenant_id, replay_id = RunQueue.parse(body)
        result = self.run(tenant_id, replay_id, owner=owner, deadline=deadline, receive_count=receive_count)
        if result == "retry":
            raise RecoveryNotReady(f"replay {replay_id} is not written yet")
        if result == "more":
            self._runs().send(tenant_id, replay_id)

    def run(self, tenant_id: str, replay_id: str, *, owner: str, deadline: float, receive_count: int = 1) -> RunResult:
        """Work on a recovery until `deadline` (a clock time): "done" (finished, settled, or another
        run holds it), "more" (send the next run message), "retry" (not written yet: later)."""
        recovery = self._recoveries.find(tenant_id, replay_id)
        if recovery is None:
            if receive_count < MISSING_RECEIVES:
                return "retry"
            log.warning("replay %s of %s was never written; its run message is dropped", replay_id, tenant_id)
            return "done"
        if recovery.status == "scheduled":  # its schedule fired
            recovery = self._recoveries.switch(
                recovery, "queued", when=("scheduled",), now=now_iso(self._clock())
            ) or self._recoveries.get(tenant_id, replay_id)
        if recovery.settled:
            return "done"
        leased = self._recoveries.lease(recovery, owner, seconds=LEASE_SECONDS, now=self._clock())
        if leased is None:  # another run holds it; its own message comes back if it dies
            return "done"
        try:
            endpoint = self._endpoints.get(tenant_id, leased.webhook_id)
        except NotFound:
            self._settle(leased, owner, "failed", error="the endpoint was deleted")
            return "done"
        if not endpoint.enabled:  # its jobs would only be refused, each costing an attempt
            self._settle(leased, owner, "failed", error="the endpoint is disabled; enable it and recover again")
            return "done"
        while True:
            batch = self._batch(leased, endpoint)
            total = leased.counts.get("queued", 0) + batch.added["queued"]
            error = None
            if not batch.finished and total >= self.bounds.max_deliveries:
                batch.finished, error = True, f"stopped at the bound of {self.bounds.max_deliveries} deliveries"
            more_time = self._clock() < deadline
            advanced = self._recoveries.advance(
                leased,
                owner,
                phase="done" if batch.finished else batch.phase,
                shard=batch.shard,
                cursor=batch.cursor,
                added=batch.added,
                status="completed" if batch.finished else "running",
                now=now_iso(self._clock()),
                lease_until=0.0 if batch.finished or not more_time else self._clock() + LEASE_SECONDS,
                error=error,
            )
            if not advanced:  # cancelled meanwhile (or, impossibly, the lease lost): stop here
                return "done"
            if batch.finished:
                return "done"
            counts = {name: leased.counts.get(name, 0) + batch.added[name] for name in COUNTS}
            leased = replace(leased, phase=batch.phase, shard=batch.shard, cursor=batch.cursor, counts=counts)
            if not more_time:
                return "more"

    def _settle(self, recovery: Recovery, owner: str, status: Any, *, error: str) -> None:
        self._recoveries.advance(
            recovery,
            owner,
            phase="done",
            shard=recovery.shard,
            cursor=recovery.cursor,
            added={},
            status=status,
            now=now_iso(self._clock()),
            lease_until=0.0,
            error=error,
        )

    def _batch(self, recovery: Recovery, endpoint: Endpoint) -> _Batch:
        added = dict.fromkeys(COUNTS, 0)
        if recovery.phase == "deliveries":
            found, after = self._deliveries.in_window(
                recovery.tenant_id,
                recovery.webhook_id,
                after=recovery.cursor,
                since=recovery.since,
                until=recovery.until,
                # Pending ones too: on their way already (sent by this recovery in a run that died, or not).
                statuses=(*recovery.statuses, "pending"),
                budget=STEP,
            )
            for delivery in found:
                added["queued"] += 1
                if delivery.status == "pending":
                    added["sent" if delivery.recovery_id == recovery.id else "skipped"] += 1
                else:
                    added[self._replay_one(recovery, delivery)] += 1
            if after is not None:
                return _Batch("deliveries", 0, after, added, False)
            if not recovery.missed:
                return _Batch("done", 0, 0, added, True)
            return _Batch("missed", 0, 0, added, False)
        shard = recovery.shard
        partition = self._audit.partitions(recovery.tenant_id)[shard]
        records, after = self._audit.recorded_between(
            partition, after=recovery.cursor, since=recovery.since, until=recovery.until, budget=STEP
        )
        self._send_missed([r for r in records if self._missed(r, endpoint)], endpoint, added)
        if after is not None:
            return _Batch("missed", shard, after, added, False)
        if shard + 1 < self._audit.shards:
            return _Batch("missed", shard + 1, 0, added, False)
        return _Batch("done", shard, 0, added, True)

    def _replay_one(self, recovery: Recovery, delivery: Any) -> str:
        """Claim and replay one delivery: the count it adds to (sent, failed or skipped)."""
        if not self._deliveries.claim(
            delivery, recovery.id, requested_at=recovery.requested_at, now=now_iso(self._clock())
        ):
            latest = self._deliveries.find(delivery.tenant_id, delivery.endpoint_id, delivery.sequence)
            # Claimed by this recovery in a run that died after queueing it: already sent.
            ours = (
                latest is not None and latest.recovery_id == recovery.id and latest.updated_at > recovery.requested_at
            )
            return "sent" if ours else "skipped"
        try:
            replay(self._deliveries, self._audit, self._queue(), delivery)
        except ServiceUnavailable:
            raise  # the queue refused: the batch is redone by the next run
        except MeshanicsError as refused:
            log.info("replay %s could not replay %s: %s", recovery.id, delivery.id, refused.message)
            return "failed"
        return "sent"

    @staticmethod
    def _missed(record: AuditRecord, endpoint: Endpoint) -> bool:
        """An event the endpoint subscribes to, written after it was created, not addressed to it."""
        event_type = catalog.CATALOG.get(record.type)
        return (
            event_type is not None
            and event_type.subscribable
            and endpoint.id not in record.endpoints
            and record.recorded_at >= endpoint.created_at
            and filters.matches(endpoint.events, record.type)
            and not (event_type.operational and record.data.get("webhook_id") == endpoint.id)
        )

    def _send_missed(self, records: list[AuditRecord], endpoint: Endpoint, added: dict[str, int]) -> None:
        if not records:
            return
        attempted = self._deliveries.attempted(endpoint.tenant_id, endpoint.id, [r.sequence for r in records])
        jobs = [DeliveryJob.of(r, endpoint.id) for r in records if r.sequence not in attempted]
        if self._queue().send(jobs):
            raise ServiceUnavailable("the delivery queue did not accept every job")
        added["queued"] += len(records)
        added["sent"] += len(jobs)
        added["skipped"] += len(records) - len(jobs)

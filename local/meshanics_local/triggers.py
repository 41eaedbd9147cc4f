"""Lambda's event sources, played from the template: the DynamoDB stream poller, the SQS poller and
scheduled rules, each in background threads (`Loop`).

The stream poller honours what the mapping configures: StartingPosition, FilterCriteria (records that do not match
are dropped), BatchSize within MaximumBatchingWindowInSeconds, ReportBatchItemFailures (retry from
the lowest failed sequence number; earlier records are done), BisectBatchOnFunctionError (a raised
error halves the batch; splitting does not count as a retry), MaximumRetryAttempts,
MaximumRecordAgeInSeconds and the OnFailure destination, which receives an invocation record that
describes the batch (Lambda's shape, plus an `error` member with the last error). Shards are read
in order, one batch in flight per shard (ParallelizationFactor 1).

The SQS poller receives up to BatchSize messages (AttributeNames All, a short long-poll) and keeps collecting for
MaximumBatchingWindowInSeconds; after the invocation it deletes every message not listed in
`batchItemFailures` (ReportBatchItemFailures) or, without that setting, every message. A raised
function error (or an invalid failure report) deletes none. The visibility of failed messages is
left alone: the handler may have changed it, otherwise the queue's VisibilityTimeout applies, and
moto's own redrive moves a message to the dead-letter queue once its receive count reaches
maxReceiveCount. Up to ScalingConfig.MaximumConcurrency batches run at once (capped by the
function's worker pool). Messages that do not match FilterCriteria are deleted, as Lambda does.

Scheduled rules and the template's EventBridge Scheduler schedules invoke their target function
(with an EventBridge Scheduled Event, or the schedule's Input) on its rate:
`rate(N minute|minutes|hour|hours|day|days)` is supported; `scale` divides the period (a demo or
test can run a 15-minute sweep every few seconds). cron() expressions are not played locally.

One-time schedules the functions create at run time (`at(...)`, in the template's schedule groups)
are fired by `OneTimeSchedules`: moto stores them but never fires them. When their time has come,
their Input is sent to their target (an SQS queue or a function), and they are deleted if their
ActionAfterCompletion says so.
"""

from __future__ import annotations

import calendar
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshanics_local.awsserver import client
from meshanics_local.events import dynamodb_stream_record, scheduled_event, sqs_record
from meshanics_local.functions import EventSourceMapping, Schedule
from meshanics_local.workers import Invocation

log = logging.getLogger("meshanics_local.triggers")
Invoke = Callable[[dict[str, Any]], Invocation]
RECEIVE_WAIT_SECONDS = 1
_WHOLE_BATCH = -1
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def failed_items(result: Any, identifiers: Iterable[str]) -> set[str] | None:
    """The itemIdentifiers a partial batch response reports failed (empty: none failed), or None when
    Lambda counts the whole batch failed: batchItemFailures is not a list, or an identifier is missing,
    empty or not one of the batch's."""
    if not isinstance(result, dict) or result.get("batchItemFailures") is None:
        return set()
    failures = result["batchItemFailures"]
    failed = (
        {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
        if isinstance(failures, list)
        else {None}
    )
    return None if failed - set(identifiers) else failed  # type: ignore[return-value]


class Loop:
    """Background threads that run `step()` until `stop()`, as Lambda's pollers run: an error in a step is
    logged and the step tried again a second later."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name = name
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"{name}:{i}", daemon=True) for i in range(threads)]

    def step(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                if not self._stop.is_set():
                    log.exception("%s failed; retrying", self.name)
                    self._stop.wait(1.0)


# ------------------------------------------------------------------------------- DynamoDB streams
def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def first_failure(result: Any, batch: Sequence[dict[str, Any]]) -> int | None:
    """Index of the record to retry from, None if the batch succeeded, -1 if the whole batch failed.

    An itemIdentifier that is missing, empty or not a sequence number of the batch fails the batch.
    """
    positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
    failed = failed_items(result, positions)
    if failed is None:
        return _WHOLE_BATCH
    return min(positions[f] for f in failed) if failed else None


@dataclass
class StreamFaults:
    """Stream faults the chaos harness asks for, as Lambda can produce them.

    `duplicate_rate`: a share of batches the function processed is handed over once more (Lambda
    delivers stream records at least once). `discard_batches`: the next n batches go straight to the
    OnFailure destination, as if their retries were exhausted.
    """

    duplicate_rate: float = 0.0
    discard_batches: int = 0
    seed: int = 0
    duplicated: int = 0
    discarded: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class StreamPoller(Loop):
    def __init__(
        self,
        mapping: EventSourceMapping,
        invoke: Invoke,
        *,
        endpoint: str,
        region: str,
        function_arn: str,
        poll_interval: float = 0.25,
    ) -> None:
        self.mapping = mapping
        self._invoke = invoke
        self._endpoint = endpoint
        self._region = region
        self._function_arn = function_arn
        self._poll = poll_interval
        super().__init__(f"stream:{mapping.logical_id}")
        self._streams = client("dynamodbstreams", endpoint)
        self._done_shards: set[str] = set()
        self.invocations = 0
        self.faults = StreamFaults()

    # -- shards -------------------------------------------------------------------------------
    def _next_shard(self) -> str | None:
        description = self._streams.describe_stream(StreamArn=self.mapping.source_arn)["StreamDescription"]
        shards = description.get("Shards", [])
        known = {s["ShardId"] for s in shards}
        for shard in shards:
            shard_id = shard["ShardId"]
            parent = shard.get("ParentShardId")
            if shard_id not in self._done_shards and (not parent or parent not in known or parent in self._done_shards):
                return str(shard_id)
        return None

    def _iterator(self, shard_id: str) -> str:
        position = self.mapping.starting_position
        kind = position if position in ("TRIM_HORIZON", "LATEST") else "TRIM_HORIZON"
        response = self._streams.get_shard_iterator(
            StreamArn=self.mapping.source_arn, ShardId=shard_id, ShardIteratorType=kind
        )
        return str(response["ShardIterator"])

    # -- the loop -----------------------------------------------------------------------------
    def step(self) -> None:
        """Read the next open shard to its end (or until stopped), invoking as the mapping says."""
        shard_id = self._next_shard()
        if shard_id is None:
            self._stop.wait(self._poll)
            return
        iterator: str | None = self._iterator(shard_id)
        buffer: list[dict[str, Any]] = []
        first_seen = 0.0
        retries = 0
        attempts = 0
        size = self.mapping.batch_size
        while not self._stop.is_set():
            if iterator is not None and len(buffer) < self.mapping.batch_size:
                response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                for raw in response.get("Records", []):
                    record = dynamodb_stream_record(raw, stream_arn=self.mapping.source_arn, region=self._region)
                    if self.mapping.passes(record):
                        if not buffer:
                            first_seen = time.monotonic()
                        buffer.append(record)
                iterator = response.get("NextShardIterator")
            if not buffer:
                if iterator is None:  # the shard is closed and drained
                    self._done_shards.add(shard_id)
                    return
                self._stop.wait(self._poll)
                continue
            waited = time.monotonic() - first_seen
            if iterator is not None and len(buffer) < self.mapping.batch_size and waited < self.mapping.window_seconds:
                self._stop.wait(min(self._poll, self.mapping.window_seconds - waited))
                continue
            expired = self._expired(buffer)
            if expired:
                self._fail(shard_id, buffer[:expired], "RecordAgeExceeded", None, attempts)
                del buffer[:expired]
                retries = attempts = 0
                continue
            batch = buffer[: min(size, len(buffer))]
            if self.faults.discard_batches > 0:
                self.faults.discard_batches -= 1
                self.faults.discarded += 1
                injected = {"errorType": "Injected", "errorMessage": "discarded by the chaos harness"}
                self._fail(shard_id, batch, "RetryAttemptsExhausted", None, max(1, attempts), injected)
                del buffer[: len(batch)]
                retries = attempts = 0
                size = self.mapping.batch_size
                continue
            invocation = self._invoke({"Records": batch})
            self.invocations += 1
            attempts += 1
            retry_from = first_failure(invocation.result, batch) if invocation.ok else _WHOLE_BATCH
            if retry_from is None and self.faults.rng.random() < self.faults.duplicate_rate:
                self.faults.duplicated += 1
                self._invoke({"Records": batch})  # the same records again: at least once, not exactly once
            if retry_from is None:
                del buffer[: len(batch)]
                retries = attempts = 0
                size = self.mapping.batch_size
                first_seen = time.monotonic()
                continue
            if retry_from > 0:
                del buffer[:retry_from]  # records before the lowest failure are done
                batch = batch[retry_from:]
            error = invocation.error or {
                "errorType": "BatchItemFailure",
                "errorMessage": "the function reported failures",
            }
            if not invocation.ok and self.mapping.bisect_on_error and len(batch) > 1:
                size = max(1, len(batch) // 2)
                log.info("%s: function error; bisecting to %d records", self.mapping.logical_id, size)
                continue
            retries += 1
            if 0 <= self.mapping.max_retry_attempts < retries:
                self._fail(shard_id, batch, "RetryAttemptsExhausted", invocation, attempts, error)
                del buffer[: len(batch)]
                retries = attempts = 0
                size = self.mapping.batch_size
                continue
            log.info(
                "%s: batch of %d failed (retry %d): %s",
                self.mapping.logical_id,
                len(batch),
                retries,
                error.get("errorMessage"),
            )
            self._stop.wait(min(1.0, 0.1 * retries))

    def _expired(self, buffer: Sequence[dict[str, Any]]) -> int:
        """How many records at the head of the buffer are older than MaximumRecordAgeInSeconds."""
        limit = self.mapping.max_record_age_seconds
        if limit < 0:
            return 0
        oldest_allowed = time.time() - limit
        count = 0
        for record in buffer:
            if float(record["dynamodb"].get("ApproximateCreationDateTime", time.time())) >= oldest_allowed:
                break
            count += 1
        return count

    def _fail(
        self,
        shard_id: str,
        batch: Sequence[dict[str, Any]],
        condition: str,
        invocation: Invocation | None,
        attempts: int,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Send an invocation record for a discarded batch to the OnFailure destination."""
        arrivals = [float(r["dynamodb"].get("ApproximateCreationDateTime", 0)) for r in batch]
        record: dict[str, Any] = {
            "requestContext": {
                "requestId": invocation.request_id if invocation else "",
                "functionArn": self._function_arn,
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if invocation and not invocation.ok else "",
            },
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(min(arrivals)),
                "approximateArrivalOfLastRecord": _iso(max(arrivals)),
                "batchSize": len(batch),
                "streamArn": self.mapping.source_arn,
            },
        }
        if error:
            record["error"] = {"errorType": error.get("errorType"), "errorMessage": error.get("errorMessage")}
        log.warning(
            "%s: discarding %d record(s) (%s) to %s",
            self.mapping.logical_id,
            len(batch),
            condition,
            self.mapping.on_failure_arn or "nowhere (no OnFailure destination)",
        )
        if self.mapping.on_failure_arn:
            send_to_destination(self.mapping.on_failure_arn, record, self._endpoint)


def send_to_destination(arn: str, record: dict[str, Any], endpoint: str) -> None:
    """Deliver an invocation record to an SQS queue or SNS topic destination."""
    service = arn.split(":")[2]
    body = json.dumps(record)
    if service == "sqs":
        sqs = client("sqs", endpoint)
        url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=body)
    elif service == "sns":
        client("sns", endpoint).publish(TopicArn=arn, Message=body)
    else:
        log.error("destination %s is not supported locally", arn)


# ------------------------------------------------------------------------------- SQS
def to_delete(result: Any, batch: Sequence[dict[str, Any]], *, report_failures: bool) -> list[dict[str, Any]]:
    """The records to delete after a successful invocation (none if the failure report is invalid)."""
    if not report_failures:
        return list(batch)
    failed = failed_items(result, (r["messageId"] for r in batch))
    return [] if failed is None else [r for r in batch if r["messageId"] not in failed]


def _filter_view(record: dict[str, Any]) -> dict[str, Any]:
    """What FilterCriteria see: the record, with a JSON body parsed (as Lambda does)."""
    try:
        body = json.loads(record["body"])
    except ValueError:
        return record
    return record | {"body": body}


class QueuePoller(Loop):
    def __init__(
        self,
        mapping: EventSourceMapping,
        invoke: Invoke,
        *,
        endpoint: str,
        region: str,
        concurrency: int,
    ) -> None:
        self.mapping = mapping
        self._invoke = invoke
        self._endpoint = endpoint
        self._region = region
        super().__init__(f"sqs:{mapping.logical_id}", max(1, concurrency))
        self._sqs = client("sqs", endpoint)  # shared by the threads (boto3 clients are thread-safe)
        self.queue_url = str(self._sqs.get_queue_url(QueueName=mapping.source_arn.rsplit(":", 1)[1])["QueueUrl"])
        self.invocations = 0

    def step(self) -> None:
        batch = self._collect(self._sqs)
        if batch:
            self._process(self._sqs, batch)

    def _receive(self, sqs: Any, count: int, wait: int) -> list[dict[str, Any]]:
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        records = [
            sqs_record(m, queue_arn=self.mapping.source_arn, region=self._region) for m in response.get("Messages", [])
        ]
        if not self.mapping.filter_patterns:
            return records
        kept = [r for r in records if self.mapping.passes(_filter_view(r))]
        dropped = [r for r in records if r not in kept]
        if dropped:
            self._delete(sqs, dropped)
        return kept

    def _collect(self, sqs: Any) -> list[dict[str, Any]]:
        size = self.mapping.batch_size
        batch = self._receive(sqs, size, RECEIVE_WAIT_SECONDS)
        if not batch:
            return []
        deadline = time.monotonic() + self.mapping.window_seconds
        while len(batch) < size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(sqs, size - len(batch), 0)
            if more:
                batch.extend(more)
            else:
                self._stop.wait(min(0.1, remaining))
        return batch

    def _process(self, sqs: Any, batch: list[dict[str, Any]]) -> None:
        invocation = self._invoke({"Records": batch})
        self.invocations += 1
        if not invocation.ok:
            log.info(
                "%s: function error on a batch of %d; none deleted: %s",
                self.mapping.logical_id,
                len(batch),
                invocation.error_message,
            )
            return
        done = to_delete(invocation.result, batch, report_failures=self.mapping.report_batch_item_failures)
        if len(done) < len(batch):
            log.info("%s: %d of %d messages failed", self.mapping.logical_id, len(batch) - len(done), len(batch))
        self._delete(sqs, done)

    def _delete(self, sqs: Any, records: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(records), 10):
            chunk = records[start : start + 10]
            response = sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
            for failed in response.get("Failed", []):
                log.warning("%s: could not delete a message: %s", self.mapping.logical_id, failed.get("Message"))


# ------------------------------------------------------------------------------- schedules
def period_seconds(expression: str) -> float | None:
    """The period of a rate() expression, or None for expressions not played locally (cron)."""
    match = _RATE.fullmatch(expression.strip())
    if not match:
        return None
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    if count < 1 or (count == 1) != (match.group(2) == unit):
        raise ValueError(f"{expression!r}: use '1 {unit}' or 'N {unit}s'")
    return float(count * _UNIT_SECONDS[unit])


class ScheduleRunner(Loop):
    def __init__(
        self, schedule: Schedule, invoke: Callable[[Any], Invocation], *, region: str, scale: float = 1.0
    ) -> None:
        self.schedule = schedule
        self._invoke = invoke
        self._region = region
        period = period_seconds(schedule.expression)
        self.period = None if period is None else period / max(scale, 1e-6)
        super().__init__(f"schedule:{schedule.logical_id}")
        self._next_run = 0.0
        self.invocations = 0

    @property
    def active(self) -> bool:
        return self.schedule.enabled and self.period is not None

    def start(self) -> None:
        if not self.schedule.enabled:
            return
        if self.period is None:
            log.warning("%s: %s is not played locally", self.schedule.logical_id, self.schedule.expression)
            return
        self._next_run = time.monotonic() + self.period
        super().start()

    def event(self) -> Any:
        if self.schedule.input is not None:
            constant = self.schedule.input
            return json.loads(constant) if isinstance(constant, str) else constant
        return scheduled_event(rule_arn=self.schedule.rule_arn, region=self._region)

    def step(self) -> None:
        assert self.period is not None
        if self._stop.wait(max(0.0, self._next_run - time.monotonic())):
            return
        self._next_run += self.period
        invocation = self._invoke(self.event())
        self.invocations += 1
        if not invocation.ok:
            log.warning("%s: %s failed: %s", self.schedule.logical_id, self.schedule.function, invocation.error_message)
        self._next_run = max(self._next_run, time.monotonic())


# ------------------------------------------------------------------------------- one-time schedules
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")


def at_epoch(expression: str) -> float | None:
    """The moment of an `at(yyyy-mm-ddThh:mm:ss)` expression (UTC), None for other expressions."""
    match = _AT.fullmatch(expression.strip())
    if not match:
        return None
    return float(calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")))


class OneTimeSchedules(Loop):
    """Fires the one-time schedules of `groups` once their time has come (every `period` seconds)."""

    def __init__(
        self,
        groups: Sequence[str],
        invoke_function: Callable[[str, Any], Invocation],
        *,
        endpoint: str | None,
        period: float = 1.0,
    ) -> None:
        super().__init__("one-time schedules")
        self.groups = list(groups)
        self._invoke_function = invoke_function
        self._period = period
        self._fired: set[tuple[str, str]] = set()
        self.fired = 0
        # Made once, as the other pollers do: a client reads proxy settings from the environment
        # when it is made, and the process's environment may change while the platform runs.
        self._scheduler = client("scheduler", endpoint)
        self._sqs = client("sqs", endpoint)

    def step(self) -> None:
        if self._stop.wait(self._period):
            return
        self.fire_due(time.time())

    def fire_due(self, now: float) -> int:
        """Fire every schedule whose time is at or before `now`; how many fired."""
        scheduler = self._scheduler
        fired = 0
        for group in self.groups:
            for summary in scheduler.list_schedules(GroupName=group).get("Schedules", []):
                name = summary["Name"]
                if (group, name) in self._fired:
                    continue
                schedule = scheduler.get_schedule(Name=name, GroupName=group)
                moment = at_epoch(schedule.get("ScheduleExpression", ""))
                if moment is None or moment > now or schedule.get("State", "ENABLED") != "ENABLED":
                    continue
                self._deliver(schedule["Target"])
                self._fired.add((group, name))
                if schedule.get("ActionAfterCompletion") == "DELETE":
                    scheduler.delete_schedule(Name=name, GroupName=group)
                fired += 1
        self.fired += fired
        return fired

    def _deliver(self, target: dict[str, Any]) -> None:
        arn = str(target["Arn"])
        body = target.get("Input", "{}")
        if arn.startswith("arn:aws:sqs:"):
            account, name = arn.split(":")[4], arn.split(":")[5]
            sqs = self._sqs
            url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=body)
            return
        invocation = self._invoke_function(arn, json.loads(body))
        if not invocation.ok:
            log.warning("one-time schedule target %s failed: %s", arn, invocation.error_message)

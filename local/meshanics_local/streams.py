"""The DynamoDB stream poller: plays Lambda's event source mapping for a stream.

Honours what the mapping configures: StartingPosition, FilterCriteria (records that do not match
are dropped), BatchSize within MaximumBatchingWindowInSeconds, ReportBatchItemFailures (retry from
the lowest failed sequence number; earlier records are done), BisectBatchOnFunctionError (a raised
error halves the batch; splitting does not count as a retry), MaximumRetryAttempts,
MaximumRecordAgeInSeconds and the OnFailure destination, which receives an invocation record that
describes the batch (Lambda's shape, plus an `error` member with the last error). Shards are read
in order, one batch in flight per shard (ParallelizationFactor 1).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshanics_local.awsserver import client
from meshanics_local.events import dynamodb_stream_record
from meshanics_local.functions import EventSourceMapping
from meshanics_local.workers import Invocation, Loop

log = logging.getLogger("meshanics_local.streams")
Invoke = Callable[[dict[str, Any]], Invocation]

_WHOLE_BATCH = -1


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def first_failure(result: Any, batch: Sequence[dict[str, Any]]) -> int | None:
    """Index of the record to retry from, None if the batch succeeded, -1 if the whole batch failed.

    An itemIdentifier that is missing, empty or not a sequence number of the batch fails the batch.
    """
    if not isinstance(result, dict) or "batchItemFailures" not in result:
        return None
    failures = result["batchItemFailures"]
    if failures is None:
        return None
    if not isinstance(failures, list):
        return _WHOLE_BATCH
    positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
    indexes: list[int] = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in positions:
            return _WHOLE_BATCH
        indexes.append(positions[identifier])
    return min(indexes) if indexes else None


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

"""The local platform's fault injection behaves as Lambda and AWS do.

* Stream poller (StreamFaults): a processed batch handed over again (at least once delivery); batches
  given up to the OnFailure destination unseen, in Lambda's record shape; a batch whose worker died
  retried whole.
* SQS poller: a failed invocation deletes nothing; its messages come back after the visibility timeout.
* awscalls: requests and DynamoDB items metered per worker; injected throttles and 5xx below botocore's
  retries; ambiguous errors (made, answer lost); unprocessed batch items (run in a child process).
* LocalPlatform: extra variables per function (`function_environment`), usage per function (`take_usage`).

The stack is the session's (conftest.py), which sets the variables checked here.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from meshanics_local.awscalls import ENV as FAULTS_ENV
from meshanics_local.awscalls import FaultPlan
from meshanics_local.events import scheduled_event
from meshanics_local.functions import EventSourceMapping, local_aws_environment
from meshanics_local.stack import FunctionUsage, LocalPlatform
from meshanics_local.triggers import QueuePoller, StreamFaults, StreamPoller
from meshanics_local.workers import FunctionPool, FunctionSpec, Invocation
from tests.local.conftest import REPLAY_FAULTS
from tests.local.test_stack import ScriptedFanout, eventually

pytestmark = pytest.mark.xdist_group("local-stack")

CHILD = Path(__file__).with_name("faults_child.py")
OK = Invocation("ok", result={"batchItemFailures": []})
# What FunctionPool.invoke answers when kill_busy (or a crash) ended the worker mid-invocation.
EXITED = Invocation("killed", error={"errorType": "Runtime.ExitError", "errorMessage": "the function's runtime exited"})
RAISED = Invocation("raised", error={"errorType": "ValueError", "errorMessage": "bad batch"})
Answer = Callable[[list[dict[str, Any]]], Invocation]


def answers(*first: Invocation) -> Answer:
    """Answer with `first` in turn (one per invocation), then succeed."""
    pending = list(first)
    return lambda mine: pending.pop(0) if pending else OK


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _queue(stack: LocalPlatform, **attributes: str) -> tuple[str, str]:
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=_name("faults"), Attributes=attributes)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _queue_depth(stack: LocalPlatform, url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


class Received:
    """Every message a queue receives (each read once: received messages stay invisible for 30 s)."""

    def __init__(self, stack: LocalPlatform, url: str) -> None:
        self._sqs, self._url = stack.client("sqs"), url
        self.messages: list[dict[str, Any]] = []

    def __call__(self) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        self.messages += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
        return self.messages


# ------------------------------------------------------------------------------- the stream poller
def _stream_table(stack: LocalPlatform) -> tuple[str, str]:
    """A table shaped like the audit log (tenant_id, sequence) with a NEW_IMAGE stream, for one test."""
    name = _name("faults-stream")
    description = stack.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "tenant_id", "KeyType": "HASH"},
            {"AttributeName": "sequence", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "tenant_id", "AttributeType": "S"},
            {"AttributeName": "sequence", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]
    return name, str(description["LatestStreamArn"])


def _insert(stack: LocalPlatform, table: str, tenant: str, count: int) -> list[str]:
    """Items 1..count of `tenant` (each one stream record); their sequences, as ScriptedFanout records them."""
    dynamodb = stack.client("dynamodb")
    for sequence in range(1, count + 1):
        dynamodb.put_item(TableName=table, Item={"tenant_id": {"S": tenant}, "sequence": {"N": str(sequence)}})
    return [str(s) for s in range(1, count + 1)]


def _stream_records(stack: LocalPlatform, stream_arn: str) -> tuple[str, list[str]]:
    """The stream's shard and its records' sequence numbers, read directly (a consumer of its own)."""
    streams = stack.client("dynamodbstreams")
    [shard] = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    return str(shard["ShardId"]), [r["dynamodb"]["SequenceNumber"] for r in records]


def _stream_poller(
    stack: LocalPlatform,
    stream_arn: str,
    invoke: Callable[[dict[str, Any]], Invocation],
    *,
    on_failure_arn: str | None = None,
    max_retry_attempts: int = 2,
) -> StreamPoller:
    """Batches of 2 without waiting, no bisection: what each invocation sees is predictable."""
    mapping = EventSourceMapping(
        logical_id="FaultsMapping",
        function="FanoutFunction",
        source_arn=stream_arn,
        kind="dynamodb",
        batch_size=2,
        window_seconds=0.0,
        starting_position="TRIM_HORIZON",
        max_retry_attempts=max_retry_attempts,
        on_failure_arn=on_failure_arn,
    )
    return StreamPoller(
        mapping, invoke, endpoint=stack.aws_url, region=stack.region, function_arn="arn:test", poll_interval=0.05
    )


@pytest.fixture
def poll() -> Iterator[Callable[[StreamPoller], StreamPoller]]:
    """Start pollers; stop them when the test ends, whatever happens."""
    started: list[StreamPoller] = []

    def start(poller: StreamPoller) -> StreamPoller:
        poller.start()
        started.append(poller)
        return poller

    yield start
    for poller in started:
        poller.stop()


def test_duplicate_rate_hands_every_processed_batch_over_twice(
    stack: LocalPlatform, poll: Callable[[StreamPoller], StreamPoller]
) -> None:
    table, stream = _stream_table(stack)
    first, second, third, fourth = _insert(stack, table, "twice", 4)
    scripted = ScriptedFanout("twice", answers(RAISED), [])
    poller = _stream_poller(stack, stream, scripted)
    poller.faults = StreamFaults(duplicate_rate=1.0, seed=1)
    poll(poller)
    eventually(lambda: len(scripted.calls) >= 5)
    poller.stop()
    one, two = [first, second], [third, fourth]
    # The failed attempt is retried, not duplicated; each processed batch comes once more, before the next.
    assert scripted.calls == [one, one, one, two, two]
    assert poller.faults.duplicated == 2 and poller.faults.discarded == 0


def test_discarded_batches_go_to_the_failure_destination_unseen(
    stack: LocalPlatform, poll: Callable[[StreamPoller], StreamPoller]
) -> None:
    url, arn = _queue(stack)
    table, stream = _stream_table(stack)
    _, _, third, fourth = _insert(stack, table, "discard", 4)
    shard_id, sequence_numbers = _stream_records(stack, stream)
    scripted = ScriptedFanout("discard", answers(), [])
    poller = _stream_poller(stack, stream, scripted, on_failure_arn=arn)
    poller.faults.discard_batches = 1
    poll(poller)
    received = Received(stack, url)
    eventually(received)
    eventually(lambda: scripted.calls)
    poller.stop()
    assert scripted.calls == [[third, fourth]]  # the function never saw the discarded batch
    assert poller.faults.discarded == 1 and poller.faults.discard_batches == 0 and poller.faults.duplicated == 0
    assert poller.invocations == 1
    [record] = received()  # one batch given up: one record
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["functionArn"] == "arn:test"
    assert record["version"] == "1.0"
    info = record["DDBStreamBatchInfo"]
    assert info["shardId"] == shard_id
    assert info["startSequenceNumber"] == sequence_numbers[0] and info["endSequenceNumber"] == sequence_numbers[1]
    assert info["batchSize"] == 2 and info["streamArn"] == stream
    assert {"approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"} <= info.keys()


def test_a_batch_whose_worker_was_killed_is_retried_whole(
    stack: LocalPlatform, poll: Callable[[StreamPoller], StreamPoller]
) -> None:
    url, arn = _queue(stack)
    table, stream = _stream_table(stack)
    batch = _insert(stack, table, "killed", 2)
    scripted = ScriptedFanout("killed", answers(EXITED), [])
    poller = poll(_stream_poller(stack, stream, scripted, on_failure_arn=arn))
    eventually(lambda: len(scripted.calls) >= 2)
    poller.stop()
    assert scripted.calls == [batch, batch]  # the same records, until the function gets through them
    assert poller.invocations == 2
    assert Received(stack, url)() == []  # not given up


KILLABLE = """
import json, os, time

def lambda_handler(event, context):
    first = not os.path.exists(os.environ["SLEPT"])
    if first:
        open(os.environ["SLEPT"], "w").close()
    sequences = [r["dynamodb"]["NewImage"]["sequence"]["N"] for r in event["Records"]]
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(json.dumps(sequences) + "\\n")
    if first:
        time.sleep(60)  # the first invocation waits here to be killed
    return {"batchItemFailures": []}
"""


def test_kill_busy_during_a_stream_batch_makes_the_poller_retry_it(
    stack: LocalPlatform, poll: Callable[[StreamPoller], StreamPoller], tmp_path: Path
) -> None:
    """The chaos harness's crash end to end: a real worker killed mid-batch, the batch retried in a fresh one."""
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(KILLABLE)
    seen = tmp_path / "seen.jsonl"
    spec = FunctionSpec(
        logical_id="KillableFunction",
        name="stack-KillableFunction",
        arn="arn:aws:lambda:us-east-1:123456789012:function:stack-KillableFunction",
        code_dir=tmp_path / "fn",
        handler="app.lambda_handler",
        timeout=60.0,
        memory_mb=128,
        environment={"SEEN": str(seen), "SLEPT": str(tmp_path / "slept")},
        log_path=tmp_path / "KillableFunction.log",
    )
    pool = FunctionPool(spec, size=1)
    pool.start()
    try:
        table, stream = _stream_table(stack)
        batch = _insert(stack, table, "crash", 2)

        def handed_over() -> list[list[str]]:
            return [json.loads(line) for line in seen.read_text().splitlines()] if seen.exists() else []

        poller = poll(_stream_poller(stack, stream, pool.invoke))
        eventually(handed_over)
        eventually(pool.kill_busy)  # True once it killed the worker in the middle of the batch
        eventually(lambda: len(handed_over()) >= 2)
        poller.stop()
        assert handed_over() == [batch, batch]
        assert poller.invocations == 2
    finally:
        pool.stop()


def test_a_discarded_batch_leaves_the_next_batch_its_own_retries(
    stack: LocalPlatform, poll: Callable[[StreamPoller], StreamPoller]
) -> None:
    url, arn = _queue(stack)
    table, stream = _stream_table(stack)
    first, second, third, fourth = _insert(stack, table, "leak", 4)
    one, two = [first, second], [third, fourth]
    poller: StreamPoller | None = None

    def answer(mine: list[dict[str, Any]]) -> Invocation:
        sequences = [r["dynamodb"]["NewImage"]["sequence"]["N"] for r in mine]
        if sequences == one:
            assert poller is not None
            poller.faults.discard_batches += 1  # the harness gives the failing batch up before its retry
            return RAISED
        return RAISED if scripted.calls.count(two) == 1 else OK  # the second batch fails once

    scripted = ScriptedFanout("leak", answer, [])
    poller = poll(_stream_poller(stack, stream, scripted, on_failure_arn=arn, max_retry_attempts=1))
    received = Received(stack, url)
    eventually(lambda: len(received()) >= 2 or len(scripted.calls) >= 3)  # either way, the batches are settled
    poller.stop()
    assert scripted.calls == [one, two, two]  # MaximumRetryAttempts 1: the second batch gets its one retry
    assert [r["error"]["errorType"] for r in received()] == ["Injected"]  # only the discarded batch


# ------------------------------------------------------------------------------- the SQS poller
@pytest.mark.parametrize("failure", [EXITED, RAISED], ids=["killed-worker", "function-error"])
def test_a_failed_sqs_batch_comes_back_after_the_visibility_timeout(stack: LocalPlatform, failure: Invocation) -> None:
    url, arn = _queue(stack, VisibilityTimeout="4")  # long enough to look at it on a loaded machine
    sqs = stack.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody="job")
    handed: list[tuple[float, str, str]] = []  # (when, messageId, ApproximateReceiveCount)

    def invoke(event: dict[str, Any]) -> Invocation:
        handed.extend(
            (time.monotonic(), r["messageId"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]
        )
        return failure if len(handed) == 1 else OK

    mapping = EventSourceMapping(
        logical_id="FaultsQueueMapping",
        function="DeliverFunction",
        source_arn=arn,
        kind="sqs",
        batch_size=10,
        window_seconds=0.0,
        report_batch_item_failures=True,
    )
    poller = QueuePoller(mapping, invoke, endpoint=stack.aws_url, region=stack.region, concurrency=1)
    poller.start()
    try:
        eventually(lambda: poller.invocations >= 1, interval=0.02)
        # Not deleted, and not visible before the timeout: another receive finds nothing.
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages") is None
        assert _queue_depth(stack, url) == (0, 1)
        eventually(lambda: len(handed) >= 2)
        eventually(lambda: _queue_depth(stack, url) == (0, 0))  # the successful batch is deleted
    finally:
        poller.stop()
    (failed_at, failed_id, first_count), (retried_at, retried_id, second_count) = handed
    assert failed_id == retried_id and (first_count, second_count) == ("1", "2")
    assert retried_at - failed_at >= 3.5  # back only once its 4 s of invisibility were over


# ------------------------------------------------------------------------------- AWS calls (awscalls)
def _kv_table(stack: LocalPlatform) -> str:
    """A table keyed like the integrations table (pk, sk): the one `awscalls` reports unprocessed keys of."""
    name = _name("faults-kv")
    stack.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _sort_keys(stack: LocalPlatform, table: str, pk: str) -> list[str]:
    answer = stack.client("dynamodb").query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
    )
    return sorted(item["sk"]["S"] for item in answer["Items"])


def _in_child(
    stack: LocalPlatform, scenario: str, plan: FaultPlan | None, table: str, queue_url: str
) -> dict[str, Any]:
    """Run a scenario of faults_child.py with `plan` in its environment, as a worker gets it."""
    env = {k: v for k, v in os.environ.items() if k != FAULTS_ENV} | local_aws_environment(stack.aws_url)
    if plan is not None:
        env[FAULTS_ENV] = plan.to_env()
    done = subprocess.run(
        [sys.executable, str(CHILD), scenario, table, queue_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


NOTHING = {"requests": {}, "dynamodb_writes": 0, "dynamodb_reads": 0, "faults": {}}


def test_without_a_plan_requests_and_dynamodb_items_are_metered(stack: LocalPlatform) -> None:
    table, (url, _) = _kv_table(stack), _queue(stack)
    report = _in_child(stack, "meter", None, table, url)
    assert report["meter"] == {
        "requests": {
            "dynamodb:BatchWriteItem": 1,
            "dynamodb:TransactWriteItems": 1,
            "dynamodb:PutItem": 1,
            "dynamodb:GetItem": 1,
            "dynamodb:BatchGetItem": 1,
            "dynamodb:Query": 1,
            "sqs:SendMessage": 1,
        },
        "dynamodb_writes": 3 + 2 * 2 + 1,  # a batch's items; a transaction's items twice; one put
        "dynamodb_reads": 1 + 3 + 1,  # one get; a batch get's keys; one query page
        "faults": {},
    }
    assert report["meter_after_take"] == NOTHING  # take() hands over and starts afresh
    # Metering changes nothing: every call went through.
    assert _sort_keys(stack, table, "batch") == ["0", "1", "2"]
    assert _sort_keys(stack, table, "transaction") == ["0", "1"]
    assert _queue_depth(stack, url) == (1, 0)


# The injected errors botocore sees: a throttle (400) or a 5xx, per service.
INJECTED = {
    "sqs": {"ThrottlingException": 400, "InternalError": 500},
    "dynamodb": {"ProvisionedThroughputExceededException": 400, "InternalServerError": 500},
}


def test_injected_errors_outlast_botocores_retries_and_write_nothing(stack: LocalPlatform) -> None:
    table, (url, _) = _kv_table(stack), _queue(stack)
    report = _in_child(stack, "errors", FaultPlan(seed=11, error_rate=1.0, ambiguous_share=0.0), table, url)
    for call, service in (("send_message", "sqs"), ("put_item", "dynamodb"), ("batch_write_item", "dynamodb")):
        failure = report[call]
        assert failure != "ok", call
        assert INJECTED[service][failure["code"]] == failure["status"], failure
        assert failure["retries"] == 3  # botocore retried each one: the faults sit below its retries
    meter = report["meter"]
    assert meter["requests"] == {}  # none of them reached the service: nothing is metered as made
    assert meter["faults"] == {"sqs:error": 4, "dynamodb:error": 8}
    assert _sort_keys(stack, table, "lost") == []  # an unambiguous error: the request never happened
    assert _queue_depth(stack, url) == (0, 0)


def test_an_ambiguous_error_happened_and_each_retry_repeats_it(stack: LocalPlatform) -> None:
    table, (url, _) = _kv_table(stack), _queue(stack)
    plan = FaultPlan(seed=12, error_rate=1.0, ambiguous_share=1.0, services=frozenset({"sqs"}))
    report = _in_child(stack, "ambiguous", plan, table, url)
    assert report["send_message"] != "ok" and report["send_message"]["retries"] == 3
    assert report["meter"]["faults"] == {"sqs:ambiguous": 4}
    assert report["meter"]["requests"] == {"sqs:SendMessage": 4}  # each was made
    assert _queue_depth(stack, url) == (4, 0)  # the caller saw an error; the queue got every attempt


def test_the_core_batch_helpers_never_lose_unprocessed_items_silently(stack: LocalPlatform) -> None:
    table, (url, _) = _kv_table(stack), _queue(stack)
    rows = [f"{i:03d}" for i in range(60)]
    dynamodb = stack.client("dynamodb")
    for start in range(0, 60, 25):
        chunk = rows[start : start + 25]
        dynamodb.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "read"}, "sk": {"S": sk}}}} for sk in chunk]}
        )
    report = _in_child(stack, "unprocessed", FaultPlan(seed=13, unprocessed_rate=1.0), table, url)
    # The faults were injected, and the helpers asked again for what was left.
    assert report["meter"]["faults"]["dynamodb:unprocessed"] >= 2
    assert report["meter"]["requests"]["dynamodb:BatchWriteItem"] > 3  # 3 chunks of at most 25
    assert report["meter"]["requests"]["dynamodb:BatchGetItem"] > 1  # 1 chunk of at most 100
    # Either everything, or StoreThrottled: the caller is never told "done" for what was not done.
    assert report["batch_write"] == "throttled" or _sort_keys(stack, table, "written") == rows
    assert report["batch_get"] in ("throttled", rows)


def test_items_reported_unprocessed_were_not_written(stack: LocalPlatform) -> None:
    table, (url, _) = _kv_table(stack), _queue(stack)
    report = _in_child(stack, "raw_unprocessed", FaultPlan(seed=14, unprocessed_rate=1.0), table, url)
    assert report["unprocessed"], "nothing was reported unprocessed"
    written = set(_sort_keys(stack, table, "raw"))
    assert written.isdisjoint(report["unprocessed"])  # as DynamoDB: an unprocessed item is not written


def test_a_fault_plan_round_trips_through_the_environment() -> None:
    plan = FaultPlan(seed=7, error_rate=0.03, ambiguous_share=0.2, unprocessed_rate=0.1, services=frozenset({"kms"}))
    assert FaultPlan.from_env(plan.to_env()) == plan
    assert FaultPlan.from_env(FaultPlan().to_env()) == FaultPlan()
    assert FaultPlan.from_env(None) is None and FaultPlan.from_env("") is None  # no plan: metering only
    assert FaultPlan.from_env('{"error_rate": 0.5}') == FaultPlan(error_rate=0.5)  # the rest defaults


# ------------------------------------------------------------------------------- the stack: environment, usage
def test_function_environment_reaches_the_named_function_and_star_every_function(stack: LocalPlatform) -> None:
    for logical_id, spec in stack.functions.items():
        if logical_id == "ReplayFunction":
            assert spec.environment["MESHANICS_TEST_MARK"] == "replay only"  # the named function's value wins
            assert FaultPlan.from_env(spec.environment[FAULTS_ENV]) == REPLAY_FAULTS
        else:
            assert spec.environment["MESHANICS_TEST_MARK"] == "every function", logical_id
            assert FAULTS_ENV not in spec.environment, logical_id
        assert "MESHANICS_TEST_MARK" not in spec.declared_environment  # not the template's
    assert stack.environment("DeliverFunction")["DELIVERY_CONCURRENCY"] == "10"  # the template's variables stay
    assert "MESHANICS_TEST_MARK" not in stack.parent_environment()


def test_a_fault_plan_in_a_functions_environment_faults_its_aws_calls(stack: LocalPlatform) -> None:
    rule = "arn:aws:events:us-east-1:123456789012:rule/faults-test"
    invocation = stack.invoke("ReplayFunction", scheduled_event(rule_arn=rule, region=stack.region))
    assert not invocation.ok  # its first SQS call failed after botocore's retries
    assert invocation.aws["faults"]["sqs:error"] >= 4  # every attempt of it faulted
    assert not any(call.startswith("sqs:") for call in invocation.aws["requests"])  # none reached SQS


def test_take_usage_sums_each_functions_invocations_and_starts_afresh(stack: LocalPlatform) -> None:
    stack.take_usage()  # what earlier tests left
    unknown = "msk_0123456789abcdef_" + secrets.token_hex(22)[:43]  # never cached by the authorizer
    response = requests.get(f"{stack.api_url}/v1/webhooks", headers={"Authorization": f"Bearer {unknown}"}, timeout=60)
    assert response.status_code == 401
    usage = stack.take_usage()
    authorizer = usage["AuthorizerFunction"]
    assert (authorizer.invocations, authorizer.errors) == (1, 1)  # it raised Unauthorized
    assert authorizer.billed_ms >= 1
    assert authorizer.requests["dynamodb:GetItem"] >= 1 and authorizer.dynamodb_reads >= 1  # it looked the key up
    assert "AuthorizerFunction" not in stack.take_usage()


def test_function_usage_adds_up_invocations() -> None:
    usage = FunctionUsage()
    usage.add(
        Invocation(
            "a",
            result={},
            duration_ms=1.2,
            aws={"requests": {"dynamodb:Query": 2}, "dynamodb_writes": 0, "dynamodb_reads": 2, "faults": {}},
        )
    )
    usage.add(
        Invocation(
            "b",
            error={"errorType": "ValueError", "errorMessage": "no"},
            duration_ms=0.3,
            aws={
                "requests": {"dynamodb:Query": 1, "sqs:SendMessage": 3},
                "dynamodb_writes": 5,
                "dynamodb_reads": 1,
                "faults": {"sqs:error": 2},
            },
        )
    )
    usage.add(EXITED)  # a killed worker reports no requests
    assert usage == FunctionUsage(
        invocations=3,
        errors=2,
        billed_ms=2 + 1,  # each invocation rounded up to the millisecond
        requests=Counter({"dynamodb:Query": 3, "sqs:SendMessage": 3}),
        dynamodb_writes=5,
        dynamodb_reads=3,
        faults=Counter({"sqs:error": 2}),
    )

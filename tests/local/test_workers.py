"""Function workers (processes with the function's environment), and the poller decisions."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshanics_local.functions import Schedule
from meshanics_local.triggers import ScheduleRunner, first_failure, period_seconds, to_delete
from meshanics_local.workers import FunctionPool, FunctionSpec, Invocation

HANDLER = """
import os, sys, time
import helper

STARTS = os.environ.get("COUNT", "0")

def lambda_handler(event, context):
    for _ in range(event.get("metered", 0)):  # as awscalls' wrapped send counts a PutItem
        from meshanics_local import awscalls
        awscalls.METER.count("dynamodb", "PutItem", {})
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError(event["fail"])
    return {
        "env": os.environ.get("GREETING"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "path0": sys.path[0],
        "helper": helper.VALUE,
        "name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "request": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "pid": os.getpid(),
    }
"""


@pytest.fixture
def spec(tmp_path: Path) -> FunctionSpec:
    code = tmp_path / "fn"
    layer = tmp_path / "layer"
    code.mkdir()
    layer.mkdir()
    (code / "app.py").write_text(HANDLER)
    (layer / "helper.py").write_text("VALUE = 'from the layer'\n")
    return FunctionSpec(
        logical_id="TestFunction",
        name="stack-TestFunction",
        arn="arn:aws:lambda:us-east-1:123456789012:function:stack-TestFunction",
        code_dir=code,
        handler="app.lambda_handler",
        timeout=1.0,
        memory_mb=256,
        environment={"GREETING": "hello", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        layer_dirs=(layer,),
        log_path=tmp_path / "TestFunction.log",
    )


@pytest.fixture
def pool(spec: FunctionSpec) -> Iterator[FunctionPool]:
    pool = FunctionPool(spec, size=1)
    pool.start()
    yield pool
    pool.stop()


def test_a_worker_runs_the_handler_with_the_functions_environment(pool: FunctionPool, spec: FunctionSpec) -> None:
    first = pool.invoke({}, request_id="r-1")
    assert first.ok, first.error
    assert first.cold_start
    result = first.result
    assert result["env"] == "hello" and result["endpoint"] == "http://127.0.0.1:9"
    assert result["path0"] == str(spec.code_dir)
    assert result["helper"] == "from the layer"
    assert result["name"] == spec.name and result["arn"] == spec.arn and result["memory"] == 256
    assert result["request"] == "r-1"
    assert 0 < result["remaining"] <= 1000
    second = pool.invoke({})
    assert second.ok and not second.cold_start and second.result["pid"] == result["pid"]
    log = (spec.log_path or Path()).read_text()
    assert "START RequestId: r-1" in log and "REPORT RequestId: r-1" in log


def test_a_raised_error_is_a_function_error(pool: FunctionPool) -> None:
    invocation = pool.invoke({"fail": "bad input"})
    assert not invocation.ok
    assert invocation.error_message == "bad input"
    assert invocation.error is not None and invocation.error["errorType"] == "ValueError"
    assert pool.invoke({}).ok  # the worker survives a handler error


def test_a_timeout_kills_the_worker_and_a_fresh_one_takes_over(pool: FunctionPool) -> None:
    before = pool.invoke({}).result["pid"]
    started = time.monotonic()
    timed_out = pool.invoke({"sleep": 30})
    assert time.monotonic() - started < 10
    assert timed_out.error is not None and timed_out.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after" in timed_out.error_message
    after = pool.invoke({})
    assert after.ok and after.cold_start and after.result["pid"] != before


def test_each_invocation_reports_the_aws_requests_made_during_it(pool: FunctionPool) -> None:
    metered = pool.invoke({"metered": 2})
    assert metered.ok, metered.error
    assert metered.aws == {
        "requests": {"dynamodb:PutItem": 2},
        "dynamodb_writes": 2,
        "dynamodb_reads": 0,
        "faults": {},
    }
    quiet = pool.invoke({})  # the meter starts afresh with each invocation
    assert quiet.aws == {"requests": {}, "dynamodb_writes": 0, "dynamodb_reads": 0, "faults": {}}
    failed = pool.invoke({"metered": 1, "fail": "after a write"})  # a function error still reports its requests
    assert not failed.ok and failed.aws["requests"] == {"dynamodb:PutItem": 1}


def _started(spec: FunctionSpec, request_id: str) -> bool:
    """The worker has logged the invocation's START line: its handler is running."""
    log = spec.log_path or Path()
    return log.is_file() and f"START RequestId: {request_id}" in log.read_text()


def test_kill_busy_kills_a_worker_mid_invocation_and_a_fresh_one_takes_over(spec: FunctionSpec) -> None:
    patient = FunctionPool(dataclasses.replace(spec, timeout=60.0), size=1)  # no Sandbox.Timedout in the way
    patient.start()
    try:
        assert not patient.kill_busy()  # nothing started
        before = patient.invoke({})
        assert before.ok
        assert not patient.kill_busy()  # an idle worker is left alone
        outcome: list[Invocation] = []
        sleeper = threading.Thread(target=lambda: outcome.append(patient.invoke({"sleep": 60}, request_id="doomed")))
        started = time.monotonic()
        sleeper.start()
        deadline = time.monotonic() + 10
        while not _started(spec, "doomed"):
            assert time.monotonic() < deadline, "the invocation did not start"
            time.sleep(0.02)
        offered: list[int] = []

        def choose(busy: Sequence[Any]) -> Any:
            offered.append(len(busy))
            return busy[0]

        assert patient.kill_busy(choose)
        sleeper.join(10)
        assert not sleeper.is_alive() and time.monotonic() - started < 10  # it did not sleep its 60 s
        assert offered == [1]
        [killed] = outcome
        assert not killed.ok and killed.request_id == "doomed"
        assert killed.error is not None and killed.error["errorType"] == "Runtime.ExitError"
        assert not patient.kill_busy()  # the dead worker is gone, its replacement is idle
        after = patient.invoke({})
        assert after.ok and after.cold_start
        assert after.result["pid"] != before.result["pid"]
    finally:
        patient.stop()


def test_missing_code_is_an_import_error_until_it_is_written(tmp_path: Path, spec: FunctionSpec) -> None:
    later = tmp_path / "written-later"
    missing = FunctionPool(dataclasses.replace(spec, code_dir=later), size=1)
    missing.start()
    try:
        invocation = missing.invoke({})
        assert invocation.error is not None and invocation.error["errorType"] == "Runtime.ImportModuleError"
        later.mkdir()
        (later / "app.py").write_text("def lambda_handler(event, context):\n    return 'now here'\n")
        assert missing.invoke({}).result == "now here"
    finally:
        missing.stop()


def test_an_init_error_surfaces_on_every_invocation(spec: FunctionSpec) -> None:
    (spec.code_dir / "app.py").write_text("raise RuntimeError('no config')\n")
    broken = FunctionPool(spec, size=1)
    broken.start()
    try:
        for _ in range(2):
            invocation = broken.invoke({})
            assert not invocation.ok and "no config" in invocation.error_message
    finally:
        broken.stop()


# ------------------------------------------------------------------------------- poller decisions
STREAM_BATCH = [{"dynamodb": {"SequenceNumber": str(n)}} for n in (100, 200, 300)]


@pytest.mark.parametrize(
    ("result", "retry_from"),
    [
        (None, None),
        ({"batchItemFailures": []}, None),
        ({"batchItemFailures": [{"itemIdentifier": "300"}, {"itemIdentifier": "200"}]}, 1),
        ({"batchItemFailures": [{"itemIdentifier": "100"}]}, 0),
        ({"batchItemFailures": [{"itemIdentifier": "999"}]}, -1),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, -1),
        ({"batchItemFailures": [{}]}, -1),
        ({"batchItemFailures": "nope"}, -1),
    ],
)
def test_stream_partial_batch_response(result: Any, retry_from: int | None) -> None:
    assert first_failure(result, STREAM_BATCH) == retry_from


SQS_BATCH = [{"messageId": m, "receiptHandle": f"rh-{m}"} for m in ("a", "b", "c")]


@pytest.mark.parametrize(
    ("result", "report", "deleted"),
    [
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, True, ["a", "c"]),
        ({"batchItemFailures": []}, True, ["a", "b", "c"]),
        (None, True, ["a", "b", "c"]),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, True, []),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, True, []),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, False, ["a", "b", "c"]),
    ],
)
def test_sqs_partial_batch_response(result: Any, report: bool, deleted: list[str]) -> None:
    assert [r["messageId"] for r in to_delete(result, SQS_BATCH, report_failures=report)] == deleted


# ------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(15 minutes)", 900), ("rate(1 hour)", 3600), ("rate(2 days)", 172800)],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert period_seconds(expression) == seconds


def test_cron_is_not_played_and_bad_rates_are_refused() -> None:
    assert period_seconds("cron(0 12 * * ? *)") is None
    with pytest.raises(ValueError):
        period_seconds("rate(1 minutes)")


def test_a_schedule_invokes_its_function_with_a_scheduled_event() -> None:
    seen: list[Any] = []
    done = threading.Event()

    def invoke(event: Any) -> Invocation:
        seen.append(event)
        if len(seen) >= 2:
            done.set()
        return Invocation("r", result=None)

    rule = "arn:aws:events:us-east-1:123456789012:rule/stack-Sweep"
    runner = ScheduleRunner(
        Schedule("Sweep", "ReplayFunction", rule, "rate(1 minute)", True), invoke, region="us-east-1", scale=300
    )
    runner.start()
    try:
        assert done.wait(5)
    finally:
        runner.stop()
    shape = ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]
    assert list(seen[0]) == shape  # EventBridge's Scheduled Event
    assert seen[0]["detail-type"] == "Scheduled Event" and seen[0]["resources"] == [rule]
    assert seen[0]["id"] != seen[1]["id"]


def test_one_time_schedules_fire_once_at_their_time() -> None:
    """moto stores EventBridge Scheduler schedules and never fires them: the local platform does."""
    import boto3
    from moto import mock_aws

    from meshanics_local.triggers import OneTimeSchedules, at_epoch

    assert at_epoch("at(2026-12-01T10:00:00)") == 1796119200.0 and at_epoch("rate(1 minute)") is None
    invoked: list[tuple[str, Any]] = []
    with mock_aws():
        scheduler = boto3.client("scheduler", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        scheduler.create_schedule_group(Name="replays")
        url = sqs.create_queue(QueueName="runs")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        role = "arn:aws:iam::123456789012:role/scheduler"

        def schedule(name: str, at: str, target: str, action: str = "DELETE") -> None:
            scheduler.create_schedule(
                Name=name,
                GroupName="replays",
                ScheduleExpression=f"at({at})",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion=action,
                Target={"Arn": target, "RoleArn": role, "Input": json.dumps({"name": name})},
            )

        schedule("due", "2026-12-01T10:00:00", arn)
        schedule("kept", "2026-12-01T10:00:00", "arn:aws:lambda:us-east-1:123456789012:function:f", "NONE")
        schedule("later", "2026-12-01T11:00:00", arn)
        runner = OneTimeSchedules(
            ["replays"],
            lambda target, event: invoked.append((target, event)) or Invocation("r", result=None),
            endpoint=None,
        )
        assert runner.fire_due(at_epoch("at(2026-12-01T10:30:00)") or 0) == 2
        (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
        assert json.loads(message["Body"]) == {"name": "due"}
        assert invoked == [("arn:aws:lambda:us-east-1:123456789012:function:f", {"name": "kept"})]
        names = {s["Name"] for s in scheduler.list_schedules(GroupName="replays")["Schedules"]}
        assert names == {"kept", "later"}  # deleted after firing, as its ActionAfterCompletion says
        assert runner.fire_due(at_epoch("at(2026-12-01T10:30:00)") or 0) == 0  # a one-time schedule fires once
        assert runner.fire_due(at_epoch("at(2026-12-01T11:00:00)") or 0) == 1

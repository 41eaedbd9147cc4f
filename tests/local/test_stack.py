"""The local platform end to end, in-process on free ports: resources, API + authorizer, stream -> fan-out ->
queue -> delivery to a loopback receiver, retries into the dead-letter queue, and the stream poller.
The session's stack is the `stack` fixture of conftest.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from meshanics import ids, signing
from meshanics.audit import AuditLog, Subscriptions
from meshanics.clock import now_iso
from meshanics.model import AuditRecord, Endpoint, EventInput, delivery_id, secret_context
from meshanics.sealing import Sealer
from meshanics.store.audit import AuditTable
from meshanics.store.deliveries import DeliveryStore
from meshanics.store.endpoints import EndpointStore
from meshanics.store.tenants import TenantCounters
from meshanics_local.receiver import Behaviour, Receiver, running_receiver
from meshanics_local.stack import LocalPlatform
from meshanics_local.triggers import StreamPoller
from meshanics_local.workers import Invocation
from tests.local.conftest import EVENTS

pytestmark = pytest.mark.xdist_group("local-stack")

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(interval)


@dataclass
class Core:
    """The core's stores, pointed at the local platform's tables, queue and key (the one write path)."""

    audit: AuditLog
    endpoints: EndpointStore
    deliveries: DeliveryStore
    sealer: Sealer

    def subscribe(self, tenant: str, url: str) -> tuple[Endpoint, str]:
        endpoint_id = ids.new_id("ep")
        secret = signing.generate_secret()
        now = now_iso()
        endpoint = Endpoint(
            tenant_id=tenant,
            id=endpoint_id,
            url=url,
            events=("rollout.*",),
            description="local platform test",
            allow_private_network=True,
            enabled=True,
            disabled_reason=None,
            created_at=now,
            updated_at=now,
            sealed_secret=self.sealer.seal(secret, secret_context(tenant, endpoint_id)),
        )
        return self.endpoints.create(endpoint, max_endpoints=50), secret

    def emit(self, tenant: str, count: int = 1) -> list[AuditRecord]:
        return self.audit.append(
            tenant,
            [
                EventInput(
                    type="rollout.state_changed",
                    subject=f"rollouts/ro_{i}",
                    actor="user:test",
                    data={"rollout_id": f"ro_{i}", "state": "running"},
                )
                for i in range(count)
            ],
        )


@pytest.fixture(scope="session")
def core(stack: LocalPlatform) -> Core:
    env = stack.environment("FanoutFunction")
    dynamodb, kms = stack.client("dynamodb"), stack.client("kms")
    counters = TenantCounters(lambda: dynamodb, env["INTEGRATIONS_TABLE"])
    endpoints = EndpointStore(lambda: dynamodb, env["INTEGRATIONS_TABLE"], counters)
    table = AuditTable(lambda: dynamodb, env["AUDIT_TABLE"], shards=int(env["AUDIT_SHARDS"]), retention_days=1)
    return Core(
        audit=AuditLog(
            table=table,
            counters=counters,
            subscriptions=Subscriptions(endpoints, cache_seconds=0),
            max_record_bytes=8192,
        ),
        endpoints=endpoints,
        deliveries=DeliveryStore(lambda: dynamodb, env["INTEGRATIONS_TABLE"], retention_days=1),
        sealer=Sealer(lambda: kms, env["SEALING_KEY_ID"]),
    )


def shape(value: Any) -> Any:
    """The key structure of an event (values left out), to compare with the samples."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k not in ("NewImage", "Keys", "messageAttributes")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


# ------------------------------------------------------------------------------- resources and state
def test_resources_come_from_the_template(stack: LocalPlatform) -> None:
    state = json.loads(stack.stack_file.read_text())
    assert state["aws_endpoint"] == stack.aws_url and state["api_url"] == stack.api_url
    assert state["region"] == "us-east-1"
    resources = state["resources"]
    assert resources["AuditLogTable"]["stream_arn"].startswith("arn:aws:dynamodb:")
    assert resources["DeliveryQueue"]["queue_url"].startswith(stack.aws_url)
    assert resources["ArtifactCacheBucketPolicy"]["created_by"] == "service API"
    assert resources["FanoutFunction"]["created_by"] == "local platform"
    assert resources["AlarmTopic"]["created_by"] == "cloudformation"  # alarms are played: no CloudWatch locally
    assert resources["FanoutIteratorAgeAlarm"]["created_by"] == "local platform"

    ddb = stack.client("dynamodb")
    table = ddb.describe_table(TableName=stack.physical("IntegrationsTable"))["Table"]
    assert [g["IndexName"] for g in table["GlobalSecondaryIndexes"]] == ["failed"]
    audit = ddb.describe_table(TableName=stack.physical("AuditLogTable"))["Table"]
    assert audit["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ttl = ddb.describe_time_to_live(TableName=stack.physical("AuditLogTable"))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.physical("DeliveryQueue"), AttributeNames=["All"])
    assert attributes["Attributes"]["VisibilityTimeout"] == "180"
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 6  # the DeliveryMaxReceives override
    assert redrive["deadLetterTargetArn"] == stack.resources.get_att("DeliveryDeadLetterQueue", "Arn")
    key = stack.client("kms").describe_key(KeyId=stack.physical("SealingKey"))["KeyMetadata"]
    assert key["Arn"] == stack.environment()["SEALING_KEY_ID"]
    s3 = stack.client("s3")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=stack.physical("ArtifactCacheBucket"))["Rules"]
    assert {r["ID"] for r in rules} == {"expire-cached-artifacts", "abort-incomplete-uploads"}
    # The template's only bucket statement is the TLS-only deny, which the plain-HTTP local
    # emulation leaves out (on AWS it applies): so the bucket has no policy locally.
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=stack.physical("ArtifactCacheBucket"))


def test_functions_get_the_templates_environment_resolved(stack: LocalPlatform) -> None:
    env = stack.environment("DeliverFunction")
    assert env["AUDIT_TABLE"] == stack.physical("AuditLogTable")
    assert env["DELIVERY_QUEUE_URL"] == stack.physical("DeliveryQueue")
    assert env["DELIVERY_RETRY_SCHEDULE"] == "0,1,1" and env["DELIVERY_MAX_ATTEMPTS"] == "3"
    assert env["DELIVERY_CONCURRENCY"] == "10"  # function-level variable on top of the Globals
    assert env["AWS_ENDPOINT_URL"] == stack.aws_url
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "meshanics-DeliverFunction"
    assert stack.functions["DeliverFunction"].timeout == 30
    assert stack.functions["AuthorizerFunction"].memory_mb == 256
    mapping = next(m for m in stack.mappings if m.function == "FanoutFunction")
    assert mapping.on_failure_arn == stack.resources.get_att("FanoutFailureQueue", "Arn")


def test_demo_key_is_written_alone(stack: LocalPlatform) -> None:
    assert stack.demo_key is not None
    assert stack.demo_key_file.read_text() == stack.demo_key + "\n"


# ------------------------------------------------------------------------------- API and authorizer
def test_requests_without_a_valid_key_are_refused(stack: LocalPlatform) -> None:
    url = f"{stack.api_url}/v1/webhooks"
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="meshanics", charset="UTF-8"'
    before = len(stack.recent_events.get("AuthorizerFunction", []))
    bad = requests.get(url, headers={"Authorization": "Bearer msk_0123456789abcdef_" + "x" * 43}, timeout=30)
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "unauthorized"
    assert len(stack.recent_events["AuthorizerFunction"]) == before + 1  # the authorizer said Unauthorized
    assert requests.get(url, headers={"Authorization": "Basic !!"}, timeout=30).status_code == 401


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/webhooks"), ("GET", "/v2/")])
def test_the_demo_key_passes_the_authorizer(stack: LocalPlatform, method: str, path: str) -> None:
    assert stack.rest_api is not None
    match = stack.rest_api.match(method, path)
    assert match is not None and match.route.function is not None
    function = match.route.function
    response = requests.request(
        method, f"{stack.api_url}{path}", headers={"Authorization": f"Bearer {stack.demo_key}"}, timeout=60
    )
    if not stack.functions[function].code_present:
        # The route's function is not written yet: the gateway answers as API Gateway does for a failed invoke.
        assert response.status_code == 502
        assert response.json() == {"message": "Internal server error"}
        return
    assert response.status_code not in (401, 403), response.text
    event = stack.recent_events[function][-1]
    assert event["requestContext"]["authorizer"]["tenant_id"] == "demo"
    assert set(event["requestContext"]["authorizer"]["scopes"].split()) >= {"integrations:read", "artifacts:pull"}
    assert shape(event)["requestContext"].keys() >= {"resourcePath", "identity", "requestId", "authorizer"}


# ------------------------------------------------------------------------------- stream -> fan-out -> delivery
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def test_an_audit_event_is_fanned_out_and_delivered_signed(
    stack: LocalPlatform, core: Core, receiver: Receiver
) -> None:
    endpoint, secret = core.subscribe("acme", receiver.url)
    [record] = core.emit("acme")
    [request] = receiver.wait_for(1, timeout=30)
    timestamp = signing.verify(request.body, request.headers["X-Meshanics-Signature"], secret)
    assert abs(timestamp - time.time()) < 60
    assert request.headers["X-Meshanics-Event"] == "rollout.state_changed"
    envelope = json.loads(request.body)
    assert envelope["sequence"] == record.sequence and envelope["idempotency_key"] == record.idempotency_key
    delivery = eventually(
        lambda: (
            (d := core.deliveries.find("acme", endpoint.id, record.sequence)) is not None
            and d.status == "delivered"
            and d
        )
    )
    assert delivery.attempt_count == 1

    # The events the functions received have the samples' shapes.
    fanout_event = stack.recent_events["FanoutFunction"][-1]
    sample = json.loads((EVENTS / "fanout-stream-insert.json").read_text())
    assert shape(fanout_event) == shape(sample)
    assert fanout_event["Records"][-1]["dynamodb"]["NewImage"]["tenant_id"] == {"S": "acme"}
    deliver_event = stack.recent_events["DeliverFunction"][-1]
    assert shape(deliver_event) == shape(json.loads((EVENTS / "deliver-sqs.json").read_text()))


def test_only_inserts_reach_the_fanout(stack: LocalPlatform, core: Core) -> None:
    [record] = core.emit("filter-check")
    key = {"partition": {"S": record.partition}, "sequence": {"N": str(record.sequence)}}
    eventually(lambda: any(_tenants(e) & {"filter-check"} for e in stack.recent_events["FanoutFunction"]))
    table = stack.physical("AuditLogTable")
    stack.client("dynamodb").update_item(
        TableName=table, Key=key, UpdateExpression="SET touched = :t", ExpressionAttributeValues={":t": {"N": "1"}}
    )
    stack.client("dynamodb").delete_item(TableName=table, Key=key)
    time.sleep(2.5)  # more than the batching window and a few poll intervals
    names = {r["eventName"] for e in stack.recent_events["FanoutFunction"] for r in e["Records"]}
    assert names == {"INSERT"}


def _tenants(event: dict[str, Any]) -> set[str]:
    return {r["dynamodb"]["NewImage"]["tenant_id"]["S"] for r in event["Records"] if "NewImage" in r["dynamodb"]}


def test_failed_deliveries_retry_then_fail_for_good(stack: LocalPlatform, core: Core) -> None:
    with running_receiver(lambda r: r.behaviours.append(Behaviour(status=500))) as failing:
        endpoint, _ = core.subscribe("flaky", failing.url)
        [record] = core.emit("flaky")
        failing.wait_for(3, timeout=40)

        def failed() -> Any:
            delivery = core.deliveries.get("flaky", delivery_id(endpoint.id, record.sequence))
            return delivery if delivery.status == "failed" else None

        delivery = eventually(failed)
        assert delivery.attempt_count == 3
        assert [a.status_code for a in delivery.attempts] == [500, 500, 500]
        time.sleep(1.5)
        assert len(failing.requests) == 3  # no attempt after the last one
        # Settled: the job left the queue, and the dead-letter queue is only for crashes.
        sqs = stack.client("sqs")
        dlq = sqs.receive_message(QueueUrl=stack.physical("DeliveryDeadLetterQueue"), VisibilityTimeout=0)
        assert [m for m in dlq.get("Messages", []) if json.loads(m["Body"])["tenant"] == "flaky"] == []


# ------------------------------------------------------------------------------- the stream poller's rules
@dataclass
class ScriptedFanout:
    """Stands in for the fan-out function: records what it sees of one tenant, answers as scripted."""

    tenant: str
    answer: Callable[[list[dict[str, Any]]], Invocation]
    calls: list[list[str]]

    def __call__(self, event: dict[str, Any]) -> Invocation:
        mine = [r for r in event["Records"] if r["dynamodb"]["NewImage"]["tenant_id"]["S"] == self.tenant]
        if not mine:
            return Invocation("r", result={"batchItemFailures": []})
        self.calls.append([r["dynamodb"]["NewImage"]["sequence"]["N"] for r in mine])
        return self.answer(mine)


def _poller(stack: LocalPlatform, invoke: ScriptedFanout, failures_arn: str) -> StreamPoller:
    base = next(m for m in stack.mappings if m.function == "FanoutFunction")
    mapping = replace(
        base,
        logical_id="TestMapping",
        starting_position="TRIM_HORIZON",
        max_retry_attempts=1,
        window_seconds=0.2,
        on_failure_arn=failures_arn,
    )
    return StreamPoller(
        mapping, invoke, endpoint=stack.aws_url, region="us-east-1", function_arn="arn:test", poll_interval=0.05
    )


def _failure_queue(stack: LocalPlatform, name: str) -> tuple[str, str]:
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_a_record_that_keeps_failing_is_bisected_out_to_the_failure_destination(
    stack: LocalPlatform, core: Core
) -> None:
    url, arn = _failure_queue(stack, "bisect-failures")
    records = core.emit("bisect", count=3)
    bad = str(records[1].sequence)

    def answer(mine: list[dict[str, Any]]) -> Invocation:
        sequences = [r["dynamodb"]["NewImage"]["sequence"]["N"] for r in mine]
        if bad in sequences:
            return Invocation("r", error={"errorType": "ValueError", "errorMessage": "poison"})
        return Invocation("r", result={"batchItemFailures": []})

    scripted = ScriptedFanout("bisect", answer, [])
    good = {str(r.sequence) for r in records} - {bad}

    def succeeded() -> set[str]:
        return {s for call in scripted.calls if bad not in call for s in call}

    poller = _poller(stack, scripted, arn)
    poller.start()
    try:
        sqs = stack.client("sqs")
        messages = eventually(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"))
        eventually(lambda: good <= succeeded())  # the records after the poisoned one go on
    finally:
        poller.stop()
    failure = json.loads(messages[0]["Body"])
    info = failure["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["streamArn"] == stack.resources.get_att("AuditLogTable", "StreamArn")
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["error"]["errorMessage"] == "poison"
    assert [bad] in scripted.calls  # isolated by bisection, then retried once


def test_reported_item_failures_retry_from_the_lowest_failed_record(stack: LocalPlatform, core: Core) -> None:
    _, arn = _failure_queue(stack, "partial-failures")
    records = core.emit("partial", count=3)
    first, second, third = (str(r.sequence) for r in records)
    failed_once = threading.Event()

    def answer(mine: list[dict[str, Any]]) -> Invocation:
        for record in mine:
            if record["dynamodb"]["NewImage"]["sequence"]["N"] == second and not failed_once.is_set():
                failed_once.set()
                return Invocation(
                    "r", result={"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
                )
        return Invocation("r", result={"batchItemFailures": []})

    scripted = ScriptedFanout("partial", answer, [])
    poller = _poller(stack, scripted, arn)
    poller.start()
    try:
        eventually(lambda: failed_once.is_set() and len(scripted.calls) >= 2)
    finally:
        poller.stop()
    failing = next(i for i, call in enumerate(scripted.calls) if second in call)
    assert scripted.calls[failing + 1][0] == second  # the retry starts at the failed record
    assert all(first not in call for call in scripted.calls[failing + 1 :])  # records before it are done
    assert third in scripted.calls[failing + 1]


def test_direct_invocation_with_a_sample_event(stack: LocalPlatform) -> None:
    event = json.loads((EVENTS / "authorizer-request.json").read_text())
    invocation = stack.invoke("AuthorizerFunction", event)
    assert not invocation.ok and invocation.error_message == "Unauthorized"
    assert Path(stack.functions["AuthorizerFunction"].log_path or "").read_text().count("START RequestId") >= 1

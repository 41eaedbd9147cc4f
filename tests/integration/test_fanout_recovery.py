"""Stream batches the fan-out gave up on are recovered from the fan-out failure queue (boundary F4)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics_local.receiver import running_receiver
from tests.support.crashes import refused
from tests.support.harness import Platform
from tests.support.lambda_events import Context, delete_succeeded, sqs_event

ADMIN = ["integrations:admin", "events:write"]


def failure_record(records: list[dict[str, Any]], shard: str) -> dict[str, Any]:
    """What Lambda sends to the on-failure destination for a stream batch it discarded."""
    first, last = records[0], records[-1]
    return {
        "requestContext": {"requestId": "r", "functionArn": "arn:fanout", "condition": "RetryAttemptsExhausted"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-12-01T00:00:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": "2026-12-01T00:00:00Z",
            "approximateArrivalOfLastRecord": "2026-12-01T00:00:00Z",
            "batchSize": len(records),
            "streamArn": first["eventSourceARN"],
        },
    }


def shard_of(platform: Platform) -> str:
    streams = boto3.client("dynamodbstreams")
    return str(streams.describe_stream(StreamArn=platform.stream.arn)["StreamDescription"]["Shards"][0]["ShardId"])


def recover(platform: Platform, *, rounds: int = 10) -> list[dict[str, Any]]:
    """Run the recovery function on what is visible in the failure queue; the responses."""
    queue = platform.env["FANOUT_FAILURE_QUEUE_URL"]
    responses = []
    for _ in range(rounds):
        event = sqs_event(queue)
        if not event["Records"]:
            return responses
        response = platform.handler("fanout_recovery").lambda_handler(event, Context("fanout_recovery"))
        delete_succeeded(queue, event, response)
        responses.append(response)
        if response["batchItemFailures"]:
            return responses
    return responses


def give_up_on(platform: Platform, records: list[dict[str, Any]]) -> None:
    record = failure_record(records, shard_of(platform))
    boto3.client("sqs").send_message(QueueUrl=platform.env["FANOUT_FAILURE_QUEUE_URL"], MessageBody=json.dumps(record))


def emit(platform: Platform, tenant: str, count: int) -> list[int]:
    events = [{"type": "rollout.created", "subject": f"r/{i}", "data": {"rollout_id": f"r{i}"}} for i in range(count)]
    written = platform.api_as(tenant, ADMIN, "POST", "/v1/events", body={"events": events})
    assert written.status == 201, written.json
    return [item["sequence"] for item in written.json["items"]]


def test_a_discarded_stream_batch_is_fanned_out_from_the_audit_log(platform: Platform) -> None:
    with running_receiver() as acme, running_receiver() as globex:
        for tenant, receiver in (("acme", acme), ("globex", globex)):
            body = {"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True}
            assert platform.api_as(tenant, ADMIN, "POST", "/v1/webhooks", body=body).status == 201
        platform.fan_out()  # the webhook.created records
        acme_sequences = emit(platform, "acme", 3)
        globex_sequences = emit(platform, "globex", 2)
        # The fan-out gave up on these records: Lambda hands their coordinates to the failure queue.
        give_up_on(platform, platform.stream.event()["Records"])
        first = recover(platform)
        assert first and all(r["batchItemFailures"] == [] for r in first)
        platform.pump()
        assert sorted(json.loads(r.body)["sequence"] for r in acme.requests) == acme_sequences
        assert sorted(json.loads(r.body)["sequence"] for r in globex.requests) == globex_sequences


def test_recovering_twice_sends_nothing_twice(platform: Platform) -> None:
    with running_receiver() as receiver:
        body = {"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True}
        platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body)
        platform.fan_out()
        emitted = emit(platform, "acme", 4)
        records = platform.stream.event()["Records"]
        platform.handler("fanout").lambda_handler({"Records": records}, Context("fanout"))
        platform.pump()
        give_up_on(platform, records)  # a batch that was in fact fanned out (a late failure record)
        recover(platform)
        platform.pump()
        assert sorted(json.loads(r.body)["sequence"] for r in receiver.requests) == emitted


def test_a_batch_the_stream_no_longer_holds_stays_for_an_operator(platform: Platform) -> None:
    emit(platform, "acme", 1)
    record = failure_record(platform.stream.event()["Records"], "shardId-00000000000000000000-trimmed0")
    queue = platform.env["FANOUT_FAILURE_QUEUE_URL"]
    boto3.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(record))
    (response,) = recover(platform)
    assert len(response["batchItemFailures"]) == 1  # kept: after its receives, the unrecoverable queue


def test_a_range_that_keeps_failing_is_recorded_before_it_is_given_up(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_RECOVERY_MAX_RECEIVES", "2")
    services.reset()
    body = {"url": "http://127.0.0.1:9/hook", "events": ["rollout.*"], "allow_private_network": True}
    platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body)
    platform.fan_out()
    (sequence,) = emit(platform, "acme", 1)
    give_up_on(platform, platform.stream.event()["Records"])
    recover(platform, rounds=1)  # the stream batch becomes an audit range
    queue = platform.env["FANOUT_FAILURE_QUEUE_URL"]
    with refused("SendMessageBatch"):
        for _ in range(2):
            event = sqs_event(queue)
            (message,) = event["Records"]
            assert json.loads(message["body"])["kind"] == "audit-range"
            response = platform.handler("fanout_recovery").lambda_handler(event, Context("fanout_recovery"))
            assert len(response["batchItemFailures"]) == 1
            platform.expire(event, queue)
    written = platform.stream.event()["Records"]
    (recorded,) = [
        r["dynamodb"]["NewImage"] for r in written if r["dynamodb"]["NewImage"]["type"]["S"] == "webhook.fanout_failed"
    ]
    data = json.loads(recorded["body"]["S"])["data"]
    assert data["first_sequence"] <= sequence <= data["last_sequence"]
    # Recorded, not delivered (it names no endpoint): the operational event cannot loop.
    assert "endpoints" not in recorded
    platform.handler("fanout").lambda_handler({"Records": written}, Context("fanout"))
    assert sqs_event(platform.env["DELIVERY_QUEUE_URL"])["Records"] == []

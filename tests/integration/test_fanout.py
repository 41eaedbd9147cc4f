"""Fan-out: subscriptions by type and family, subscription points, duplicates, partial failures."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.jobqueue import DeliveryQueue
from meshanics_local.receiver import Receiver
from tests.support.harness import Platform
from tests.support.lambda_events import Context

ADMIN = ["integrations:admin", "events:write"]


def subscribe(platform: Platform, url: str, events: list[str], tenant: str = "acme") -> str:
    body = {"url": url, "events": events, "allow_private_network": True}
    created = platform.api_as(tenant, ADMIN, "POST", "/v1/webhooks", body=body)
    assert created.status == 201, created.json
    return created.json["id"]  # type: ignore[no-any-return]


def emit(platform: Platform, type_: str, tenant: str = "acme", **data: Any) -> int:
    body = {"type": type_, "subject": "s/1", "data": data}
    written = platform.api_as(tenant, ADMIN, "POST", "/v1/events", body=body)
    assert written.status == 201, written.json
    return written.json["items"][0]["sequence"]  # type: ignore[no-any-return]


def received_types(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.requests]


def test_filters_route_events_by_type_family_and_all(platform: Platform) -> None:
    from meshanics_local.receiver import running_receiver

    with running_receiver() as rollouts, running_receiver() as exact, running_receiver() as everything:
        subscribe(platform, rollouts.url, ["rollout.*"])
        subscribe(platform, exact.url, ["device.enrolled"])
        subscribe(platform, everything.url, [])
        emit(platform, "rollout.created", rollout_id="r1")
        emit(platform, "device.enrolled", device_id="d1")
        emit(platform, "artifact.published", artifact_id="a1", digest="sha256:" + "0" * 64)
        platform.pump()
        assert received_types(rollouts) == ["rollout.created"]
        assert received_types(exact) == ["device.enrolled"]
        # `everything` also hears of its own creation: that event comes after its subscription point.
        assert sorted(received_types(everything)) == [
            "artifact.published",
            "device.enrolled",
            "rollout.created",
            "webhook.created",
        ]


def test_events_before_the_subscription_point_are_never_sent(platform: Platform, receiver: Receiver) -> None:
    early = emit(platform, "rollout.created", rollout_id="early")
    subscribe(platform, receiver.url, ["rollout.*"])
    late = emit(platform, "rollout.created", rollout_id="late")
    # The stream hands over the older record only now (late), together with the newer one.
    platform.pump()
    assert [json.loads(r.body)["sequence"] for r in receiver.requests] == [late]
    assert early < late


def test_an_endpoint_only_sees_its_own_tenant(platform: Platform, receiver: Receiver) -> None:
    subscribe(platform, receiver.url, [], tenant="acme")
    emit(platform, "rollout.created", tenant="globex", rollout_id="x")
    platform.pump()
    assert received_types(receiver) == ["webhook.created"]  # its own creation, nothing of globex


def test_redelivered_stream_records_create_no_duplicate_jobs(platform: Platform, receiver: Receiver) -> None:
    subscribe(platform, receiver.url, ["rollout.*"])
    emit(platform, "rollout.created", rollout_id="r1")
    event = platform.stream.event()
    fanout = platform.handler("fanout")
    assert fanout.lambda_handler(copy.deepcopy(event), Context("fanout")) == {"batchItemFailures": []}
    assert fanout.lambda_handler(copy.deepcopy(event), Context("fanout")) == {"batchItemFailures": []}
    platform.deliver()
    platform.deliver()
    assert len(receiver.requests) == 1


def test_a_bad_record_fails_alone(platform: Platform, receiver: Receiver) -> None:
    subscribe(platform, receiver.url, ["rollout.*"])
    emit(platform, "rollout.created", rollout_id="r1")
    emit(platform, "rollout.created", rollout_id="r2")
    event = platform.stream.event()
    broken = copy.deepcopy(event["Records"][0])
    del broken["dynamodb"]["NewImage"]["type"]
    broken["dynamodb"]["SequenceNumber"] = "1"
    event["Records"].insert(0, broken)
    response = platform.handler("fanout").lambda_handler(event, Context("fanout"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    platform.deliver()
    assert sorted(json.loads(r.body)["data"]["rollout_id"] for r in receiver.requests) == ["r1", "r2"]


def test_an_unqueued_job_leaves_its_record_to_be_retried(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe(platform, receiver.url, ["rollout.*"])
    emit(platform, "rollout.created", rollout_id="r1")
    event = platform.stream.event()
    real_send = DeliveryQueue.send
    monkeypatch.setattr(DeliveryQueue, "send", lambda self, jobs: list(jobs))  # SQS refuses everything
    response = platform.handler("fanout").lambda_handler(copy.deepcopy(event), Context("fanout"))
    (sequence,) = [
        r["dynamodb"]["SequenceNumber"]
        for r in event["Records"]
        if r["dynamodb"]["NewImage"]["type"]["S"] == "rollout.created"
    ]
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    monkeypatch.setattr(DeliveryQueue, "send", real_send)
    # Lambda retries the failed record: its job is sent this time.
    assert platform.handler("fanout").lambda_handler(event, Context("fanout")) == {"batchItemFailures": []}
    platform.deliver()
    assert len(receiver.requests) == 1


def test_matching_reads_only_the_index_keys_of_the_event_type(platform: Platform, receiver: Receiver) -> None:
    """Events are matched when they are written: only the keys the type can match are read, and
    the record names its endpoints (never the tenant's other 30)."""
    for i in range(30):
        subscribe(platform, f"{receiver.url}/{i}", ["device.enrolled"])
    wanted = subscribe(platform, receiver.url, ["rollout.created"])
    store = services.endpoint_store()
    looked_up: list[str] = []
    real = store.subscribers

    def spy(tenant: str, key: str) -> list[str]:
        looked_up.append(key)
        return real(tenant, key)

    store.subscribers = spy  # type: ignore[method-assign]
    sequence = emit(platform, "rollout.created", rollout_id="r1")
    assert sorted(looked_up) == sorted(["rollout.created", "rollout.*", "*"])
    records = [
        r for r in platform.stream.event()["Records"] if r["dynamodb"]["NewImage"]["type"]["S"] == "rollout.created"
    ]
    (record,) = records
    assert int(record["dynamodb"]["NewImage"]["sequence"]["N"]) == sequence
    assert [e["S"] for e in record["dynamodb"]["NewImage"]["endpoints"]["L"]] == [wanted.removeprefix("ep_")]


def test_jobs_are_sent_in_batches(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(12):
        subscribe(platform, f"{receiver.url}/{i}", ["rollout.*"])
    emit(platform, "rollout.created", rollout_id="r1")
    calls: list[int] = []
    sqs = boto3.client("sqs")
    real = DeliveryQueue.send

    def counting(self: DeliveryQueue, jobs: Any) -> Any:
        calls.append(len(jobs))
        return real(self, jobs)

    monkeypatch.setattr(DeliveryQueue, "send", counting)
    platform.fan_out()
    assert calls == [12]
    attributes = sqs.get_queue_attributes(
        QueueUrl=platform.env["DELIVERY_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "12"

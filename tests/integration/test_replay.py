"""Replays: on demand through the API, and the scheduled sweep of unsent jobs and dead letters."""

from __future__ import annotations

import json

import boto3
import pytest

from meshanics import services
from meshanics.jobqueue import DeliveryQueue
from meshanics.replay import SweepReport
from tests.support.harness import Platform
from tests.support.lambda_events import Context
from tests.support.receiver import Behaviour, Receiver

ADMIN = ["integrations:admin", "events:write"]


def setup_failed_delivery(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> str:
    """One delivery that exhausted a one-attempt schedule: failed, its job in the DLQ."""
    monkeypatch.setenv("DELIVERY_RETRY_SCHEDULE", "0")
    monkeypatch.setenv("DELIVERY_MAX_ATTEMPTS", "1")
    sqs = boto3.client("sqs")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=platform.env["DELIVERY_DLQ_URL"], AttributeNames=["QueueArn"])
    sqs.set_queue_attributes(
        QueueUrl=platform.env["DELIVERY_QUEUE_URL"],
        Attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 1}
            )
        },
    )
    services.reset()
    receiver.behaviours = [Behaviour(status=500)]
    body = {"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True}
    webhook = platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body).json
    event = {"type": "rollout.created", "subject": "r/1", "data": {"rollout_id": "r1"}}
    platform.api_as("acme", ADMIN, "POST", "/v1/events", body=event)
    platform.fan_out()
    platform.deliver()
    platform.deliver()  # moves the job to the DLQ
    (delivery,) = platform.api_as("acme", ADMIN, "GET", f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
    assert delivery["status"] == "failed"
    return delivery["id"]  # type: ignore[no-any-return]


def dlq_depth(platform: Platform) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=platform.env["DELIVERY_DLQ_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_replay_through_the_api_sends_the_same_bytes_again(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    receiver.behaviours = [Behaviour(status=200)]
    replayed = platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay")
    assert replayed.status == 202 and replayed.json["status"] == "pending" and replayed.json["replays"] == 1
    platform.deliver()
    detail = platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json
    assert detail["status"] == "delivered"
    assert [a["attempt"] for a in detail["attempts"]] == [1, 2]  # numbering continues across the replay
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["X-Meshanics-Delivery"] == second.headers["X-Meshanics-Delivery"]
    again = platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay")
    assert again.status == 409
    # The sweep drops the dead letter the replay made stale.
    report = services.replayer().run()
    assert report.dead_letters_dropped == 1 and dlq_depth(platform) == 0


def test_sweep_keeps_dead_letters_of_a_receiver_still_down(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_failed_delivery(platform, receiver, monkeypatch)
    report = platform.handler("replay").lambda_handler({"detail-type": "Scheduled Event"}, Context("replay"))
    assert report["dead_letters_kept"] == 1 and report["dead_letters_replayed"] == 0
    assert len(receiver.requests) == 1


def test_sweep_replays_dead_letters_once_the_receiver_is_back(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    receiver.behaviours = [Behaviour(status=200)]
    webhook_id = "ep_" + delivery_id.split("_")[1]
    assert platform.api_as("acme", ADMIN, "POST", f"/v1/webhooks/{webhook_id}/test").json["status"] == "delivered"
    report = services.replayer().run()
    assert report.dead_letters_replayed == 1
    platform.deliver()
    assert platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json["status"] == "delivered"
    assert dlq_depth(platform) == 0


def test_sweep_enqueues_jobs_that_were_recorded_but_never_sent(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True}
    platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body)
    platform.api_as(
        "acme",
        ADMIN,
        "POST",
        "/v1/events",
        body={"type": "rollout.created", "subject": "r", "data": {"rollout_id": "r"}},
    )
    # The fan-out dies after writing the record: the job never reaches the queue, nothing undoes it.
    with monkeypatch.context() as patched:
        patched.setattr(DeliveryQueue, "send", lambda self, jobs: [])
        platform.fan_out()
    assert platform.deliver()[0]["Records"] == []
    report = SweepReport()
    services.replayer().requeue_unsent(report, grace=-1)
    assert report.requeued_unsent == 1
    platform.deliver()
    assert len(receiver.requests) == 1
    # Once attempted, the job leaves the sweeper's index.
    again = SweepReport()
    services.replayer().requeue_unsent(again, grace=-1)
    assert again.requeued_unsent == 0


def test_replay_failed_deliveries_of_an_endpoint(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    webhook_id = "ep_" + delivery_id.split("_")[1]
    receiver.behaviours = [Behaviour(status=204)]
    replayed = platform.api_as("acme", ADMIN, "POST", f"/v1/webhooks/{webhook_id}/replay", body={})
    assert replayed.status == 202
    assert [d["id"] for d in replayed.json["items"]] == [delivery_id]
    platform.deliver()
    assert platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json["status"] == "delivered"


def test_a_replay_the_queue_refuses_leaves_the_delivery_failed_not_pending(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(DeliveryQueue, "send", lambda self, jobs: list(jobs))
        refused = platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay")
    assert refused.status == 503
    detail = platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json
    assert detail["status"] == "failed" and detail["last_error"] == "the replay could not be enqueued; replay again"
    assert platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay").status == 202

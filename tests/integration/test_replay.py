"""Replays: on demand through the API, and the scheduled sweep of failed deliveries and dead letters."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.jobqueue import DeliveryQueue
from meshanics.store.deliveries import DeliveryStore
from meshanics_local.receiver import Behaviour, Receiver
from tests.support.harness import Platform
from tests.support.lambda_events import Context

ADMIN = ["integrations:admin", "events:write"]


def setup_failed_delivery(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> str:
    """One delivery that exhausted a one-attempt schedule: failed, its job settled."""
    monkeypatch.setenv("DELIVERY_RETRY_SCHEDULE", "0")
    monkeypatch.setenv("DELIVERY_MAX_ATTEMPTS", "1")
    services.reset()
    receiver.behaviours = [Behaviour(status=500)]
    body = {"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True}
    webhook = platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body).json
    event = {"type": "rollout.created", "subject": "r/1", "data": {"rollout_id": "r1"}}
    platform.api_as("acme", ADMIN, "POST", "/v1/events", body=event)
    platform.fan_out()
    platform.deliver()
    (delivery,) = platform.api_as("acme", ADMIN, "GET", f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
    assert delivery["status"] == "failed"
    return delivery["id"]  # type: ignore[no-any-return]


def queue_depth(url: str) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
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
    # Nothing was left behind for the sweep.
    report = services.replayer().run()
    assert report.failed_seen == 0 and report.replayed == 0
    assert queue_depth(platform.env["DELIVERY_QUEUE_URL"]) == 0


def test_a_replay_gets_the_whole_schedule_again(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    monkeypatch.setenv("DELIVERY_RETRY_SCHEDULE", "0,1")
    monkeypatch.setenv("DELIVERY_MAX_ATTEMPTS", "2")
    services.reset()
    platform.handlers.pop("deliver")  # a new container, with the new schedule
    receiver.behaviours = [Behaviour(status=500), Behaviour(status=204)]
    assert platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay").status == 202
    platform.deliver()
    detail = platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json
    assert detail["status"] == "pending" and detail["next_attempt_at"]  # attempt 2 was the replay's first
    time.sleep(1.4)
    platform.deliver()
    detail = platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json
    assert detail["status"] == "delivered" and [a["attempt"] for a in detail["attempts"]] == [1, 2, 3]


def test_sweep_leaves_failed_deliveries_of_a_receiver_still_down(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_failed_delivery(platform, receiver, monkeypatch)
    report = platform.handler("replay").lambda_handler({"detail-type": "Scheduled Event"}, Context("replay"))
    assert report["failed_seen"] == 1 and report["replayed"] == 0
    assert len(receiver.requests) == 1


def test_sweep_replays_failed_deliveries_once_the_receiver_is_back(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    receiver.behaviours = [Behaviour(status=200)]
    webhook_id = "ep_" + delivery_id.split("_")[1]
    assert platform.api_as("acme", ADMIN, "POST", f"/v1/webhooks/{webhook_id}/test").json["status"] == "delivered"
    report = services.replayer().run()
    assert report.replayed == 1
    platform.deliver()
    assert platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json["status"] == "delivered"
    # Replayed and delivered: it left the failed index, so the next sweep has nothing to do.
    assert services.replayer().run().failed_seen == 0


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


def test_a_replay_the_queue_refuses_leaves_the_delivery_failed_and_replayable(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(DeliveryQueue, "send", lambda self, jobs: list(jobs))
        refused = platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay")
    assert refused.status == 503 and refused.json["error"]["code"] == "unavailable"
    detail = platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json
    assert detail["status"] == "failed" and detail["replays"] == 0  # untouched: nothing was queued
    assert platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay").status == 202


def test_a_replay_reopened_while_its_job_is_attempted_is_recorded(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay queues its job, then shows the record pending. The delivery function may read the
    record while it is still settled and POST before that: its attempt is recorded all the same, and
    the delivery settles (it is not left pending with no job to finish it)."""
    delivery_id = setup_failed_delivery(platform, receiver, monkeypatch)
    receiver.behaviours = [Behaviour(status=200)]
    with monkeypatch.context() as patched:
        patched.setattr(DeliveryStore, "reopen", lambda self, delivery: True)  # queued, not yet shown pending
        assert platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay").status == 202
    record = DeliveryStore.record

    def reopened_meanwhile(self: DeliveryStore, result: Any, seen: Any) -> bool:
        assert seen is not None and seen.status == "failed"  # read before the replay showed it pending
        assert self.reopen(seen)  # the replay's reopen lands between this attempt's POST and its record
        return record(self, result, seen)

    monkeypatch.setattr(DeliveryStore, "record", reopened_meanwhile)
    platform.deliver()
    detail = platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json
    assert detail["status"] == "delivered" and detail["replays"] == 1
    assert [(a["attempt"], a["outcome"]) for a in detail["attempts"]] == [(1, "failed"), (2, "delivered")]
    assert len(receiver.requests) == 2

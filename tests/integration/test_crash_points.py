"""Every crash point of docs/guarantees.md: kill the function between two calls, let AWS retry as it
does (the stream re-sends the batch, SQS shows the message again after its visibility timeout, the
sweep runs), and check that every subscribed event still reaches its endpoint, or is visibly failed
and replayable. Test names carry the boundary's id from that document (A = append, F = fan-out,
D = delivery, T = test delivery, R = replay, S = sweep)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.deliver import HttpSender
from meshanics_local.receiver import Behaviour, Receiver, running_receiver
from tests.support.crashes import SimulatedCrash, answer_lost, crash_at, recorded_calls, unprocessed
from tests.support.harness import Platform
from tests.support.lambda_events import Context

ADMIN = ["integrations:admin", "events:write"]


def subscribe(platform: Platform, url: str, events: list[str] | None = None) -> str:
    body = {"url": url, "events": events or ["rollout.*"], "allow_private_network": True}
    created = platform.api_as("acme", ADMIN, "POST", "/v1/webhooks", body=body)
    assert created.status == 201, created.json
    return created.json["id"]  # type: ignore[no-any-return]


def emit(platform: Platform, count: int = 1) -> list[int]:
    events = [{"type": "rollout.created", "subject": f"r/{i}", "data": {"rollout_id": f"r{i}"}} for i in range(count)]
    written = platform.api_as("acme", ADMIN, "POST", "/v1/events", body={"events": events})
    assert written.status == 201, written.json
    return [item["sequence"] for item in written.json["items"]]


def deliveries(platform: Platform, webhook_id: str) -> list[dict[str, Any]]:
    listed = platform.api_as("acme", ADMIN, "GET", f"/v1/webhooks/{webhook_id}/deliveries", query={"limit": "100"})
    return listed.json["items"]  # type: ignore[no-any-return]


def detail(platform: Platform, delivery_id: str) -> dict[str, Any]:
    return platform.api_as("acme", ADMIN, "GET", f"/v1/deliveries/{delivery_id}").json  # type: ignore[no-any-return]


def sequences(receiver: Receiver) -> list[int]:
    return sorted(json.loads(r.body)["sequence"] for r in receiver.requests)


def drain(platform: Platform, *, rounds: int = 40, pause: float = 0.0) -> None:
    for _ in range(rounds):
        event, _ = platform.deliver()
        if not event["Records"]:
            if not pause:
                return
            time.sleep(pause)


def schedule(monkeypatch: pytest.MonkeyPatch, delays: str, *, max_receives: int = 10) -> None:
    """A short retry schedule, and the queue's maxReceiveCount backstop above its bound."""
    attempts = len(delays.split(","))
    monkeypatch.setenv("DELIVERY_RETRY_SCHEDULE", delays)
    monkeypatch.setenv("DELIVERY_MAX_ATTEMPTS", str(attempts))
    monkeypatch.setenv("DELIVERY_MAX_RECEIVES", str(max_receives))
    sqs = boto3.client("sqs")
    dlq = sqs.get_queue_attributes(QueueUrl=services.settings().delivery_dlq_url, AttributeNames=["QueueArn"])
    sqs.set_queue_attributes(
        QueueUrl=services.settings().delivery_queue_url,
        Attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq["Attributes"]["QueueArn"], "maxReceiveCount": max_receives}
            )
        },
    )
    services.reset()


def failed_delivery(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> str:
    """One delivery that used up a one-attempt schedule: failed, replayable."""
    schedule(monkeypatch, "0")
    receiver.behaviours = [Behaviour(status=500)]
    webhook = subscribe(platform, receiver.url)
    emit(platform)
    platform.fan_out()
    drain(platform)
    (delivery,) = deliveries(platform, webhook)
    assert delivery["status"] == "failed"
    receiver.behaviours = [Behaviour(status=200)]
    return delivery["id"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------- append
def test_A1_append_killed_before_writing_leaves_a_gap_and_nothing_else(platform: Platform) -> None:
    with running_receiver() as receiver:
        subscribe(platform, receiver.url)
        event = {"type": "rollout.created", "subject": "r/1", "data": {"rollout_id": "r1"}}
        platform.fan_out()  # the endpoint's own webhook.created
        with crash_at("PutItem"), pytest.raises(SimulatedCrash):
            platform.api_as("acme", ADMIN, "POST", "/v1/events", body=event)
        assert platform.stream.event()["Records"] == []  # nothing was written: the producer retries
        (sequence,) = emit(platform)
        platform.pump()
        assert sequences(receiver) == [sequence]


def test_A2_append_killed_after_writing_delivers_the_event(platform: Platform) -> None:
    with running_receiver() as receiver:
        subscribe(platform, receiver.url)
        event = {"type": "rollout.created", "subject": "r/1", "data": {"rollout_id": "r1"}}
        with crash_at("PutItem", when="after"), pytest.raises(SimulatedCrash):
            platform.api_as("acme", ADMIN, "POST", "/v1/events", body=event)
        platform.pump()
        assert len(receiver.requests) == 1  # written is written: the caller saw an error, though


def test_A_subscription_lookups_read_consistently(platform: Platform) -> None:
    """An event written just after an endpoint subscribed must find it (matching happens on append)."""
    subscribe(platform, "http://127.0.0.1:9/hook")
    with recorded_calls() as calls:
        emit(platform)
    lookups = [params for name, params in calls if name == "Query" and "#SUB#" in json.dumps(params)]
    assert lookups, "the append made no subscription lookup"
    assert all(params.get("ConsistentRead") is True for params in lookups)


# ------------------------------------------------------------------------------------------ fan-out
def test_F1_fanout_killed_before_enqueueing_is_sent_by_the_streams_retry(platform: Platform) -> None:
    with running_receiver() as first, running_receiver() as second:
        subscribe(platform, first.url)
        subscribe(platform, second.url)
        emitted = emit(platform, 3)
        event = platform.stream.event()
        fanout = platform.handler("fanout")
        with crash_at("SendMessageBatch"), pytest.raises(SimulatedCrash):
            fanout.lambda_handler(event, Context("fanout"))
        # The stream hands the same batch to the next invocation, which sends the jobs.
        assert fanout.lambda_handler(event, Context("fanout"))["batchItemFailures"] == []
        drain(platform)
        assert sequences(first) == emitted
        assert sequences(second) == emitted


def test_F2_fanout_killed_after_enqueueing_sends_each_event_once(platform: Platform) -> None:
    with running_receiver() as receiver:
        subscribe(platform, receiver.url)
        emitted = emit(platform, 3)
        event = platform.stream.event()
        fanout = platform.handler("fanout")
        with crash_at("SendMessageBatch", when="after"), pytest.raises(SimulatedCrash):
            fanout.lambda_handler(event, Context("fanout"))
        fanout.lambda_handler(event, Context("fanout"))
        drain(platform)
        assert sequences(receiver) == emitted  # a copy of a job that ran is dropped, not POSTed again


# ----------------------------------------------------------------------------------------- delivery
def test_D1_crashes_before_a_post_charge_no_attempt(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attempt bound counts POSTs made, not times the function received the job (hole 6)."""
    schedule(monkeypatch, "0,1,1", max_receives=10)
    with running_receiver() as receiver:
        receiver.behaviours = [Behaviour(status=500)]
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        for _ in range(2):
            with crash_at("BatchGetItem"), pytest.raises(SimulatedCrash):
                platform.deliver()
            platform.expire(platform.last_delivery_event)
        drain(platform, rounds=60, pause=0.1)
        (delivery,) = deliveries(platform, webhook)
        assert len(receiver.requests) == 3
        assert [a["attempt"] for a in detail(platform, delivery["id"])["attempts"]] == [1, 2, 3]
        assert delivery["status"] == "failed"


def test_D2_killed_after_the_post_before_recording_delivers_again_with_the_same_key(platform: Platform) -> None:
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        with crash_at("PutItem"), pytest.raises(SimulatedCrash):  # a first attempt creates the item
            platform.deliver()
        platform.expire(platform.last_delivery_event)
        drain(platform)
        first, second = receiver.requests  # at least once: the receiver de-duplicates on the key
        assert first.headers["X-Meshanics-Delivery"] == second.headers["X-Meshanics-Delivery"]
        assert first.body == second.body
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "delivered"


def test_D3_killed_after_recording_a_failure_retries_from_the_recorded_count(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(monkeypatch, "0,1,1")
    with running_receiver() as receiver:
        receiver.behaviours = [Behaviour(status=500), Behaviour(status=200)]
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        with crash_at("ChangeMessageVisibilityBatch"), pytest.raises(SimulatedCrash):
            platform.deliver()
        platform.expire(platform.last_delivery_event)
        drain(platform)
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "delivered"
        assert [a["attempt"] for a in detail(platform, delivery["id"])["attempts"]] == [1, 2]


@pytest.mark.parametrize(("lost", "answers"), [("PutItem", [500, 200]), ("UpdateItem", [500, 500, 200])])
def test_D4_a_lost_answer_to_recording_a_retry_is_not_mistaken_for_another_copy(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, lost: str, answers: list[int]
) -> None:
    """The SDK repeats a write whose answer was lost; its condition then fails on the first write's
    own effect. That is success: the retry must still be scheduled, or the delivery stays pending.
    (A first attempt creates the item with a put, later ones update it.)"""
    schedule(monkeypatch, "0,1,1")
    with running_receiver() as receiver:
        receiver.behaviours = [Behaviour(status=code) for code in answers]
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        if lost == "UpdateItem":
            platform.deliver()  # the first attempt, recorded normally
            time.sleep(1.3)
        with answer_lost(lost):
            _, response = platform.deliver()
        assert len(response["batchItemFailures"]) == 1  # kept for its retry, not dropped
        drain(platform, rounds=40, pause=0.1)
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "delivered"
        assert [a["attempt"] for a in detail(platform, delivery["id"])["attempts"]] == list(range(1, len(answers) + 1))


def test_D5_killed_after_recording_delivered_does_not_post_again(platform: Platform) -> None:
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        with crash_at("PutItem", when="after"), pytest.raises(SimulatedCrash):
            platform.deliver()
        platform.expire(platform.last_delivery_event)
        drain(platform)
        assert len(receiver.requests) == 1
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "delivered" and delivery["attempt_count"] == 1


def test_D6_a_job_that_kills_the_function_every_time_ends_failed_and_replayable(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(monkeypatch, "0,1", max_receives=3)
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        for _ in range(3):
            with crash_at("BatchGetItem"), pytest.raises(SimulatedCrash):
                platform.deliver()
            platform.expire(platform.last_delivery_event)
        platform.deliver()  # the receive past maxReceiveCount moves it to the dead-letter queue
        assert receiver.requests == []
        services.replayer().run()
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "failed" and "failed repeatedly" in delivery["last_error"]
        assert platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery['id']}/replay").status == 202
        drain(platform)
        assert len(receiver.requests) == 1
        assert detail(platform, delivery["id"])["status"] == "delivered"


def test_D_a_throttled_lookup_leaves_the_job_queued_not_settled(platform: Platform) -> None:
    """UnprocessedKeys after every retry is a throttle, never a deleted webhook (hole 2)."""
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        with unprocessed("BatchGetItem"):
            event, response = platform.deliver()
        assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [event["Records"][0]["messageId"]]
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "pending" and delivery["attempt_count"] == 0
        platform.expire(event)
        drain(platform)
        assert len(receiver.requests) == 1
        assert deliveries(platform, webhook)[0]["status"] == "delivered"


def test_D_a_receiver_that_drips_its_answer_is_cut_at_the_attempt_deadline(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3's read timeout is per socket read; the whole attempt has its own deadline (hole 5)."""
    monkeypatch.setenv("DELIVERY_READ_TIMEOUT_MS", "1000")
    monkeypatch.setenv("DELIVERY_DEADLINE_MS", "1500")
    services.reset()
    with running_receiver() as receiver:
        receiver.behaviours = [Behaviour(status=200, drip_head=0.25)]  # about 10 s for the head
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        started = time.monotonic()
        platform.deliver()
        assert time.monotonic() - started < 4
        (delivery,) = deliveries(platform, webhook)
        (attempt,) = detail(platform, delivery["id"])["attempts"]
        assert attempt["outcome"] == "failed" and "deadline" in attempt["error"]


def test_D_jobs_not_started_before_the_batch_deadline_are_released_unattempted(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch ends before the function's timeout; what it could not attempt goes back at once."""
    monkeypatch.setenv("DELIVERY_DEADLINE_MS", "1500")
    monkeypatch.setenv("DELIVERY_CONCURRENCY", "1")
    services.reset()
    with running_receiver() as receiver:
        receiver.behaviours = [Behaviour(delay=1.8)]
        webhook = subscribe(platform, receiver.url)
        emit(platform, 2)
        platform.fan_out()
        # 30 s remain for Lambda; the batch keeps a margin, so only the first POST fits.
        from meshanics.deliver import BATCH_MARGIN_SECONDS

        remaining = int((BATCH_MARGIN_SECONDS + 2.5) * 1000)
        _, response = platform.deliver(context=Context("deliver", remaining_ms=remaining))
        assert len(receiver.requests) == 1
        assert len(response["batchItemFailures"]) == 2  # one retry scheduled, one released
        states = {d["attempt_count"] for d in deliveries(platform, webhook)}
        assert states == {0, 1}
        visible = boto3.client("sqs").get_queue_attributes(
            QueueUrl=platform.env["DELIVERY_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        assert visible == "1"  # released at once, not after the visibility timeout


def test_D_no_job_starts_when_the_invocation_is_nearly_out_of_time(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        emit(platform, 3)
        platform.fan_out()
        _, response = platform.deliver(context=Context("deliver", remaining_ms=1000))
        assert receiver.requests == []
        assert len(response["batchItemFailures"]) == 3
        assert {d["attempt_count"] for d in deliveries(platform, webhook)} == {0}
        drain(platform)
        assert len(receiver.requests) == 3


# ----------------------------------------------------------------------------------- test delivery
def test_T_test_delivery_killed_mid_post_leaves_nothing_pending(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        real = HttpSender.__call__

        def dies_after_posting(self: HttpSender, *args: Any, **kwargs: Any) -> Any:
            real(self, *args, **kwargs)
            raise SimulatedCrash("killed during the test delivery")

        monkeypatch.setattr(HttpSender, "__call__", dies_after_posting)
        with pytest.raises(SimulatedCrash):
            platform.api_as("acme", ADMIN, "POST", f"/v1/webhooks/{webhook}/test")
        monkeypatch.setattr(HttpSender, "__call__", real)
        services.replayer().run()
        assert len(receiver.requests) == 1
        assert all(d["status"] != "pending" for d in deliveries(platform, webhook))
        again = platform.api_as("acme", ADMIN, "POST", f"/v1/webhooks/{webhook}/test")
        assert again.status == 200 and again.json["status"] == "delivered"


# ------------------------------------------------------------------------------------------ replays
def test_R1_replay_killed_before_enqueueing_can_be_replayed_again(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = failed_delivery(platform, receiver, monkeypatch)
    with crash_at("SendMessageBatch"), pytest.raises(SimulatedCrash):
        platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay")
    services.replayer().run()
    assert detail(platform, delivery_id)["status"] == "failed"  # never stranded as pending
    assert platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay").status == 202
    drain(platform)
    replayed = detail(platform, delivery_id)
    assert replayed["status"] == "delivered" and replayed["replays"] == 1
    assert [a["attempt"] for a in replayed["attempts"]] == [1, 2]


def test_R2_replay_killed_after_enqueueing_is_delivered_as_the_replay(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = failed_delivery(platform, receiver, monkeypatch)
    with crash_at("SendMessageBatch", when="after"), pytest.raises(SimulatedCrash):
        platform.api_as("acme", ADMIN, "POST", f"/v1/deliveries/{delivery_id}/replay")
    drain(platform)
    replayed = detail(platform, delivery_id)
    assert replayed["status"] == "delivered" and replayed["replays"] == 1
    assert [a["attempt"] for a in replayed["attempts"]] == [1, 2]
    assert len(receiver.requests) == 2


# -------------------------------------------------------------------------------------------- sweep
def test_S_a_malformed_dead_letter_does_not_stop_the_sweep(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """One poison message in the dead-letter queue must not abort every later sweep (hole 4)."""
    schedule(monkeypatch, "0", max_receives=2)
    with running_receiver() as receiver:
        webhook = subscribe(platform, receiver.url)
        emit(platform)
        platform.fan_out()
        for _ in range(2):
            with crash_at("BatchGetItem"), pytest.raises(SimulatedCrash):
                platform.deliver()
            platform.expire(platform.last_delivery_event)
        platform.deliver()  # past maxReceiveCount: into the dead-letter queue
        sqs = boto3.client("sqs")
        for body in ("not json", '{"v": 1}', "[]", '{"tenant": 5}'):
            sqs.send_message(QueueUrl=platform.env["DELIVERY_DLQ_URL"], MessageBody=body)
        report = services.replayer().run()
        assert report.dead_letters_malformed == 4
        (delivery,) = deliveries(platform, webhook)
        assert delivery["status"] == "failed"
        # The next sweep neither stops on them nor counts them again while they are set aside.
        assert services.replayer().run().dead_letters_malformed == 0

"""Recovering an endpoint's window (POST /v1/webhooks/{id}/recover) and the replay resource.

Through the real handlers with loopback receivers: a receiver down for a while then back gets every
missed event once per idempotency key; overlapping recoveries do not double-send; a run that dies
mid-way loses nothing; scheduled recoveries are one-time EventBridge Scheduler schedules; bad input
is a clear 4xx and queues nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from meshanics import endpoint_recovery, services
from meshanics.store.recoveries import RecoveryStore
from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import (
    ADMIN,
    OTHER,
    READ,
    TENANT,
    assert_error,
    deliveries,
    receiver_webhook,
    rollout_created,
    write_events,
)
from tests.integration.test_crash_points import schedule
from tests.support.harness import Platform
from tests.support.lambda_events import Context, delete_succeeded, sqs_event


@pytest.fixture(autouse=True)
def runs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production delays a run message a second behind the recovery it announces; tests run it at once.
    monkeypatch.setattr(endpoint_recovery, "RUN_DELAY", 0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


def ahead(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


def recover(platform: Platform, webhook_id: str, tenant: str = TENANT, **body: Any) -> Any:
    return platform.api_as(tenant, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/recover", body=body)


def replay_queue() -> str:
    return services.settings().replay_queue_url


def run_replays(platform: Platform, *, only: int | None = None, context: Context | None = None) -> int:
    """Invoke the replay function on the replay queue's messages (one each, as its mapping does)
    until none is visible, or `only` times; the number of invocations."""
    invocations = 0
    while only is None or invocations < only:
        event = sqs_event(replay_queue(), max_messages=1)
        if not event["Records"]:
            return invocations
        response = platform.handler("replay").lambda_handler(event, context or Context("replay"))
        delete_succeeded(replay_queue(), event, response)
        invocations += 1
        assert invocations < 50, "the replay queue never empties"
    return invocations


def get_replay(platform: Platform, replay_id: str, tenant: str = TENANT) -> dict[str, Any]:
    response = platform.api_as(tenant, [READ], "GET", f"/v1/replays/{replay_id}")
    assert response.status == 200, response.json
    return response.json  # type: ignore[no-any-return]


def delivered_keys(receiver: Receiver) -> Counter[str]:
    """Idempotency keys the receiver got since it came back (it answers 200 then), with how often."""
    return Counter(json.loads(r.body)["idempotency_key"] for r in receiver.requests)


def queued_runs() -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=replay_queue(), AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"])


def failing_endpoint(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, events: int) -> str:
    """An endpoint whose receiver was down for `events` events: every delivery failed for good."""
    schedule(monkeypatch, "0")  # one attempt: a 503 fails it for good
    services.reset()
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    receiver.behaviours = [Behaviour(status=503)]
    write_events(platform, [rollout_created(f"r{i}") for i in range(events)])
    platform.pump(rounds=10)
    assert {d["status"] for d in deliveries(platform, created["id"])} == {"failed"}
    receiver.behaviours = []  # back: it answers 200 from now on
    receiver.requests.clear()
    return str(created["id"])


# -- the receiver comes back ----------------------------------------------------------------------
def test_receiver_down_then_back_gets_every_missed_event_once(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = ago(minutes=5)
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=4)
    # Disabled for a while: those events are never addressed to it.
    path = f"/v1/webhooks/{webhook_id}"
    assert platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"enabled": False}).status == 200
    missed = write_events(platform, [rollout_created(f"m{i}") for i in range(3)])
    write_events(platform, [{"type": "device.enrolled", "subject": "device/d1", "data": {"device_id": "d1"}}])
    platform.pump()
    assert len(deliveries(platform, webhook_id)) == 4

    enabled = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"enabled": True, "recover_since": since})
    assert enabled.status == 200, enabled.json
    recovery = enabled.json["recovery"]
    assert recovery["status"] == "queued" and recovery["missed"] is True and recovery["statuses"] == ["failed"]
    run_replays(platform)
    platform.pump()

    finished = get_replay(platform, recovery["id"])
    assert finished["status"] == "completed", finished
    assert finished["counts"] == {"queued": 7, "sent": 7, "failed": 0, "skipped": 0}
    accepted = delivered_keys(receiver)
    assert len(accepted) == 7 and set(accepted.values()) == {1}  # every failed and missed event, once
    assert {m["idempotency_key"] for m in missed} <= set(accepted)
    assert {d["status"] for d in deliveries(platform, webhook_id)} == {"delivered"}
    # The catch-up is told with the enabling: webhook.enabled carries the recovery's id.
    audit = services.audit_table().of_tenant(TENANT)
    enabled_events = [r for r in audit if r.type == "webhook.enabled"]
    assert [r.data["recovery_id"] for r in enabled_events] == [recovery["id"]]

    # Nothing is left: a second run of the same recovery, and a new one, send nothing twice.
    again = recover(platform, webhook_id, since=since, missed=True)
    assert again.status == 202, again.json
    run_replays(platform)
    platform.pump()
    # (the missed events are found again, and skipped: they have deliveries now)
    assert get_replay(platform, again.json["id"])["counts"] == {"queued": 3, "sent": 0, "failed": 0, "skipped": 3}
    assert set(delivered_keys(receiver).values()) == {1}


def test_recover_delivered_and_all(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=2)
    write_events(platform, [rollout_created("ok")])
    platform.pump()
    only_delivered = recover(platform, webhook_id, since=ago(minutes=5), status="delivered")
    assert only_delivered.status == 202 and only_delivered.json["statuses"] == ["delivered"]
    run_replays(platform)
    platform.pump()
    assert get_replay(platform, only_delivered.json["id"])["counts"]["sent"] == 1
    everything = recover(platform, webhook_id, since=ago(minutes=5), status="all")
    run_replays(platform)
    platform.pump()
    assert get_replay(platform, everything.json["id"])["counts"] == {"queued": 3, "sent": 3, "failed": 0, "skipped": 0}
    replays = {d["id"]: d["replays"] for d in deliveries(platform, webhook_id)}
    assert sorted(replays.values()) == [1, 1, 2]


# -- overlapping recoveries, and a run that dies ------------------------------------------------------
def test_overlapping_recoveries_do_not_double_send(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=5)
    first = recover(platform, webhook_id, since=ago(minutes=5), status="all")
    second = recover(platform, webhook_id, since=ago(minutes=10), until=ago(seconds=0), status="all")
    assert first.status == second.status == 202
    # The first runs and its replays are delivered before the second runs: the second finds them
    # settled again, but they changed after it was requested, so they are not its to send.
    run_replays(platform, only=1)
    platform.pump()
    run_replays(platform)
    platform.pump()
    assert get_replay(platform, first.json["id"])["counts"] == {"queued": 5, "sent": 5, "failed": 0, "skipped": 0}
    assert get_replay(platform, second.json["id"])["counts"] == {"queued": 5, "sent": 0, "failed": 0, "skipped": 5}
    accepted = delivered_keys(receiver)
    assert len(accepted) == 5 and set(accepted.values()) == {1}
    # Run side by side (neither delivered yet), the second finds them on their way: none twice.
    third = recover(platform, webhook_id, since=ago(minutes=5), status="all")
    fourth = recover(platform, webhook_id, since=ago(minutes=5), status="all")
    run_replays(platform)
    platform.pump()
    counts = [get_replay(platform, r.json["id"])["counts"] for r in (third, fourth)]
    assert [c["sent"] for c in counts] == [5, 0]
    assert set(delivered_keys(receiver).values()) == {2}  # the third's replay, once each


def test_a_run_that_dies_mid_way_loses_nothing(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=5)
    monkeypatch.setattr(endpoint_recovery, "STEP", 2)
    monkeypatch.setattr(endpoint_recovery, "LEASE_SECONDS", 0.0)  # the dead run's lease is over at once
    advance = RecoveryStore.advance
    calls = {"n": 0}

    def dies_on_the_second_batch(self: RecoveryStore, *args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:  # after the batch's claims and jobs, before its progress is written
            raise RuntimeError("the function died")
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(RecoveryStore, "advance", dies_on_the_second_batch)
    started = recover(platform, webhook_id, since=ago(minutes=5))
    event = sqs_event(replay_queue(), max_messages=1)
    with pytest.raises(BatchProcessingError, match="All records failed"):
        platform.handler("replay").lambda_handler(event, Context("replay"))
    assert get_replay(platform, started.json["id"])["counts"]["sent"] == 2  # the first batch was recorded
    platform.expire(event, replay_queue())  # the dead invocation's message comes back
    run_replays(platform)
    platform.pump()
    finished = get_replay(platform, started.json["id"])
    assert finished["status"] == "completed"
    assert finished["counts"] == {"queued": 5, "sent": 5, "failed": 0, "skipped": 0}
    accepted = delivered_keys(receiver)
    assert len(accepted) == 5 and set(accepted.values()) == {1}


def test_a_run_out_of_time_hands_over_to_the_next(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=5)
    monkeypatch.setattr(endpoint_recovery, "STEP", 2)
    started = recover(platform, webhook_id, since=ago(minutes=5))
    # Each invocation has no time past its first batch: three runs, each handing over to the next.
    invocations = run_replays(platform, context=Context("replay", remaining_ms=1))
    assert invocations == 3
    platform.pump()
    assert get_replay(platform, started.json["id"])["counts"] == {"queued": 5, "sent": 5, "failed": 0, "skipped": 0}
    assert set(delivered_keys(receiver).values()) == {1}


def test_cancel_stops_a_recovery(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=3)
    started = recover(platform, webhook_id, since=ago(minutes=5))
    cancelled = platform.api_as(TENANT, [ADMIN], "DELETE", f"/v1/replays/{started.json['id']}")
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled"
    run_replays(platform)
    platform.pump()
    assert get_replay(platform, started.json["id"])["counts"]["sent"] == 0
    assert not delivered_keys(receiver)
    again = platform.api_as(TENANT, [ADMIN], "DELETE", f"/v1/replays/{started.json['id']}")
    assert again.status == 200 and again.json["status"] == "cancelled"
    finished = recover(platform, webhook_id, since=ago(minutes=5))
    run_replays(platform)
    refused = platform.api_as(TENANT, [ADMIN], "DELETE", f"/v1/replays/{finished.json['id']}")
    assert_error(refused, 409, "conflict")


# -- scheduled recoveries -------------------------------------------------------------------------------
def test_scheduled_recovery_is_a_one_time_schedule(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=2)
    at = datetime.now(UTC) + timedelta(hours=1)
    scheduled = recover(platform, webhook_id, since=ago(minutes=5), at=iso(at))
    assert scheduled.status == 202, scheduled.json
    replay = scheduled.json
    assert replay["status"] == "scheduled" and replay["at"] == iso(
        at.replace(microsecond=at.microsecond // 1000 * 1000)
    )
    assert replay["until"] == replay["at"]  # the window reaches up to the time it runs
    assert queued_runs() == 0

    settings = services.settings()
    group = settings.replay_schedule_group
    queue_arn, role_arn = settings.replay_schedule_target
    found = boto3.client("scheduler").get_schedule(Name=replay["id"], GroupName=group)
    assert found["ScheduleExpression"] == f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert found["ScheduleExpressionTimezone"] == "UTC" and found["ActionAfterCompletion"] == "DELETE"
    assert found["Target"]["Arn"] == queue_arn and found["Target"]["RoleArn"] == role_arn
    assert json.loads(found["Target"]["Input"]) == {"tenant_id": TENANT, "replay_id": replay["id"]}

    # It fires: EventBridge Scheduler sends its input to the replay queue.
    boto3.client("sqs").send_message(QueueUrl=replay_queue(), MessageBody=found["Target"]["Input"])
    run_replays(platform)
    platform.pump()
    assert get_replay(platform, replay["id"])["status"] == "completed"
    assert len(delivered_keys(receiver)) == 2

    # A scheduled one can be cancelled: its schedule goes with it.
    other = recover(platform, webhook_id, since=ago(minutes=5), at=ahead(minutes=30)).json
    assert platform.api_as(TENANT, [ADMIN], "DELETE", f"/v1/replays/{other['id']}").json["status"] == "cancelled"
    with pytest.raises(boto3.client("scheduler").exceptions.ResourceNotFoundException):
        boto3.client("scheduler").get_schedule(Name=other["id"], GroupName=group)


# -- listing, reading, isolation -------------------------------------------------------------------------
def test_replays_are_listed_newest_first_per_tenant(platform: Platform, receiver: Receiver) -> None:
    one = receiver_webhook(platform, receiver)["id"]
    two = receiver_webhook(platform, receiver)["id"]
    made = [recover(platform, w, since=ago(minutes=5)).json["id"] for w in (one, two, one)]
    listed = platform.api_as(TENANT, [READ], "GET", "/v1/replays").json
    assert [r["id"] for r in listed["items"]] == made[::-1] and listed["next_cursor"] is None
    only = platform.api_as(TENANT, [READ], "GET", "/v1/replays", query={"webhook_id": one}).json
    assert [r["id"] for r in only["items"]] == [made[2], made[0]]
    first = platform.api_as(TENANT, [READ], "GET", "/v1/replays", query={"limit": "2"}).json
    rest = platform.api_as(TENANT, [READ], "GET", "/v1/replays", query={"cursor": first["next_cursor"]}).json
    assert [r["id"] for r in first["items"] + rest["items"]] == made[::-1]
    assert platform.api_as(OTHER, [READ], "GET", "/v1/replays").json["items"] == []
    assert_error(platform.api_as(OTHER, [READ], "GET", f"/v1/replays/{made[0]}"), 404, "not_found")
    assert_error(platform.api_as(OTHER, [ADMIN], "DELETE", f"/v1/replays/{made[0]}"), 404, "not_found")
    assert_error(platform.api_as(TENANT, [READ], "GET", "/v1/replays/rpl_nope"), 404, "not_found")
    assert_error(platform.api_as(TENANT, [READ], "GET", "/v1/replays", query={"cursor": "!!"}), 400, "invalid_cursor")
    assert_error(platform.api_as(TENANT, [READ], "DELETE", f"/v1/replays/{made[0]}"), 403, "missing_scope")


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_windows_are_refused_and_queue_nothing(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_id = receiver_webhook(platform, receiver)["id"]
    bounds = services.settings().recovery_bounds
    for body, status, field in [
        ({"since": ahead(minutes=5)}, 400, "since"),
        ({"since": ago(minutes=5), "until": ago(minutes=10)}, 400, "until"),
        ({"since": ago(minutes=5), "until": ahead(minutes=5)}, 400, "until"),
        ({"since": ago(hours=bounds.max_window_hours + 1)}, 422, "since"),
        ({"since": ago(days=bounds.max_age_days + 1), "until": ago(days=bounds.max_age_days)}, 422, "since"),
        ({"since": ago(minutes=5), "at": ago(minutes=1)}, 400, "at"),
        ({"since": ago(minutes=5), "at": ahead(hours=bounds.max_schedule_hours + 1)}, 422, "at"),
        ({"since": ago(minutes=5), "until": ahead(minutes=10), "at": ahead(minutes=5)}, 400, "until"),
        ({"since": ago(minutes=5), "status": "pending"}, 400, "status"),
        ({"since": "yesterday"}, 400, "since"),
        ({"since": ago(minutes=5), "extra": 1}, 400, "extra"),
        ({}, 400, "since"),
    ]:
        response = recover(platform, webhook_id, **body)
        assert response.status == status, (body, response.json)
        assert response.json["error"]["field"].endswith(field), (body, response.json)
    assert_error(recover(platform, webhook_id, OTHER, since=ago(minutes=5)), 404, "not_found")
    assert_error(recover(platform, "ep_0123456789abcdef01234567", since=ago(minutes=5)), 404, "not_found")
    disabled = platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{webhook_id}", body={"enabled": False})
    assert disabled.status == 200
    assert_error(recover(platform, webhook_id, since=ago(minutes=5)), 409, "conflict")
    lone = platform.api_as(TENANT, [ADMIN], "PATCH", f"/v1/webhooks/{webhook_id}", body={"recover_since": ago(hours=1)})
    assert_error(lone, 400, "invalid_request")
    assert platform.api_as(TENANT, [READ], "GET", "/v1/replays").json["items"] == []
    assert queued_runs() == 0


def test_a_window_holding_too_many_deliveries_is_refused(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_id = failing_endpoint(platform, receiver, monkeypatch, events=3)
    monkeypatch.setenv("RECOVERY_MAX_DELIVERIES", "2")
    services.reset()
    platform.handlers.clear()
    refused = recover(platform, webhook_id, since=ago(minutes=5))
    assert_error(refused, 422, "limit_exceeded")
    assert "more than 2 deliveries" in refused.json["error"]["message"]
    assert recover(platform, webhook_id, since=ago(minutes=5), status="delivered").status == 202


def test_replay_resource_in_the_openapi_document(platform: Platform) -> None:
    document = platform.api_as(TENANT, [READ], "GET", "/v1/openapi.json").json
    for path, method in [
        ("/v1/webhooks/{webhook_id}/recover", "post"),
        ("/v1/replays", "get"),
        ("/v1/replays/{replay_id}", "get"),
        ("/v1/replays/{replay_id}", "delete"),
    ]:
        assert method in document["paths"][path], path

"""Endpoint health: kept with the attempts, shown on the endpoint and in its stats; 410 Gone and a
long enough failing period disable the endpoint; operational events reach the tenant's other
endpoints, never the one they are about, and never loop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshanics import health as health_module
from meshanics import services
from meshanics_local.receiver import Behaviour, Receiver, running_receiver
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


@pytest.fixture(autouse=True)
def every_batch_writes_health(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production writes an endpoint's tally at most every few seconds; the tests read it at once.
    monkeypatch.setattr(health_module, "FLUSH_SECONDS", 0.0)


@pytest.fixture
def watcher() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def received(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def webhook(platform: Platform, webhook_id: str, tenant: str = TENANT) -> dict[str, Any]:
    response = platform.api_as(tenant, [READ], "GET", f"/v1/webhooks/{webhook_id}")
    assert response.status == 200, response.json
    return response.json  # type: ignore[no-any-return]


def stats(platform: Platform, webhook_id: str, window: str = "24h") -> dict[str, Any]:
    response = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{webhook_id}/stats", query={"window": window})
    assert response.status == 200, response.json
    return response.json  # type: ignore[no-any-return]


def test_health_follows_the_attempts(platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    schedule(monkeypatch, "0,1")
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    fresh = webhook(platform, created["id"])["health"]
    assert fresh == {
        "consecutive_failures": 0,
        "failing_since": None,
        "last_success_at": None,
        "last_failure_at": None,
        "last_status_code": None,
        "attempts_24h": 0,
        "success_rate_24h": None,
    }
    write_events(platform, [rollout_created(f"r{i}") for i in range(3)])
    platform.pump()
    healthy = webhook(platform, created["id"])["health"]
    assert healthy["consecutive_failures"] == 0 and healthy["failing_since"] is None
    assert healthy["last_success_at"] and healthy["last_status_code"] == 200
    assert healthy["attempts_24h"] == 3 and healthy["success_rate_24h"] == 1.0

    receiver.behaviours = [Behaviour(status=500)]
    write_events(platform, [rollout_created("r9")])
    platform.pump(rounds=1)  # one failed attempt; the retry waits
    failing = webhook(platform, created["id"])["health"]
    assert failing["consecutive_failures"] == 1 and failing["last_status_code"] == 500
    assert failing["failing_since"] == failing["last_failure_at"]
    assert failing["last_success_at"] == healthy["last_success_at"]
    assert failing["attempts_24h"] == 4 and failing["success_rate_24h"] == 0.75

    window = stats(platform, created["id"])
    assert window["window"] == "24h" and window["from"] < window["to"]
    assert (window["attempts"], window["delivered"], window["retried"], window["failed"]) == (4, 3, 1, 0)
    assert window["success_rate"] == 0.75
    assert window["top_errors"] == [{"error": "HTTP 500", "count": 1}]
    assert 0 <= window["latency_ms"]["p50"] <= window["latency_ms"]["p95"]
    assert stats(platform, created["id"], "7d")["attempts"] == 4

    receiver.behaviours = []
    time.sleep(1.3)  # the retry is due
    platform.pump()
    back = webhook(platform, created["id"])["health"]
    assert back["consecutive_failures"] == 0 and back["failing_since"] is None
    assert back["last_success_at"] > failing["last_failure_at"]


def test_stats_bad_window_and_other_tenants(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver)
    path = f"/v1/webhooks/{created['id']}/stats"
    assert_error(platform.api_as(TENANT, [READ], "GET", path, query={"window": "1h"}), 400)
    assert_error(platform.api_as(OTHER, [READ], "GET", path), 404, "not_found")
    assert_error(platform.api_as(OTHER, [READ], "GET", f"/v1/webhooks/{created['id']}"), 404, "not_found")


def test_410_gone_disables_the_endpoint_at_once(platform: Platform, receiver: Receiver, watcher: Receiver) -> None:
    gone = receiver_webhook(platform, receiver, events=["rollout.*"])
    watching = receiver_webhook(platform, watcher, events=["webhook.*"])
    receiver.behaviours = [Behaviour(status=410)]
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    assert len(receiver.requests) == 1  # no retry after a 410
    after = webhook(platform, gone["id"])
    assert after["enabled"] is False and after["disabled_reason"] == "gone"
    (delivery,) = deliveries(platform, gone["id"])
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 410

    disabled = [e for e in received(watcher) if e["type"] == "webhook.disabled"]
    assert [e["data"] for e in disabled] == [{"webhook_id": gone["id"], "reason": "gone", "last_status_code": 410}]
    # The 410 said it all: no delivery_exhausted besides webhook.disabled.
    assert not [e for e in received(watcher) if e["type"] == "webhook.delivery_exhausted"]

    write_events(platform, [rollout_created("r2")])
    platform.pump()
    assert len(receiver.requests) == 1  # a disabled endpoint gets no new deliveries
    operational = {"webhook.disabled", "webhook.enabled", "webhook.delivery_exhausted"}
    about = {e["data"]["webhook_id"] for e in received(watcher) if e["type"] in operational}
    assert about == {gone["id"]} and watching["id"] not in about


def test_an_endpoint_failing_past_the_period_is_disabled_and_the_tenant_told(
    platform: Platform, receiver: Receiver, watcher: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(monkeypatch, "0,1,1,1,1")  # five attempts a second apart
    monkeypatch.setenv("ENDPOINT_DISABLE_AFTER_SECONDS", "1")
    services.reset()
    platform.handlers.clear()
    failing = receiver_webhook(platform, receiver, events=["rollout.*", "webhook.*"])
    receiver_webhook(platform, watcher, events=["webhook.*"])
    receiver.behaviours = [Behaviour(status=503)]
    write_events(platform, [rollout_created("r1")])
    deadline = time.monotonic() + 30
    while webhook(platform, failing["id"])["enabled"] and time.monotonic() < deadline:
        platform.pump(rounds=1)
        time.sleep(0.3)
    after = webhook(platform, failing["id"])
    assert after["enabled"] is False and after["disabled_reason"] == "failing"
    assert after["health"]["consecutive_failures"] >= 2
    platform.pump(rounds=2)  # webhook.disabled: fanned out and delivered
    (disabled,) = [e for e in received(watcher) if e["type"] == "webhook.disabled"]
    assert disabled["data"]["webhook_id"] == failing["id"] and disabled["data"]["reason"] == "failing"
    assert disabled["data"]["failing_since"] == after["health"]["failing_since"]
    assert disabled["data"]["last_status_code"] == 503
    # The operational event is never addressed to the endpoint it is about (it subscribes to webhook.*).
    assert "webhook.disabled" not in {e["type"] for e in received(receiver)}

    # Its retry finds it disabled: failed without a POST, no delivery_exhausted for that.
    time.sleep(1.2)
    platform.pump()
    delivery_list = deliveries(platform, failing["id"])
    (rollout,) = [d for d in delivery_list if d["event_type"] == "rollout.created"]
    assert rollout["status"] == "failed" and rollout["last_error"] == "webhook is disabled"
    assert not [e for e in received(watcher) if e["type"] == "webhook.delivery_exhausted"]


def test_exhausted_deliveries_are_told_to_the_other_endpoints_and_never_loop(
    platform: Platform, receiver: Receiver, watcher: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(monkeypatch, "0")  # one attempt: failing once is failing for good
    services.reset()
    platform.handlers.clear()
    # Two endpoints that fail everything, each subscribed to the other's operational events.
    a = receiver_webhook(platform, receiver, events=["rollout.*", "webhook.delivery_exhausted"])
    b = receiver_webhook(platform, watcher, events=["rollout.*", "webhook.delivery_exhausted"])
    receiver.behaviours = [Behaviour(status=500)]
    watcher.behaviours = [Behaviour(status=500)]
    (written,) = write_events(platform, [rollout_created("r1")])
    platform.pump(rounds=10)
    # Each endpoint got the event, then the other one's exhausted notice (which failed too: no more).
    for mine, theirs, got in ((a, b, receiver), (b, a, watcher)):
        events = received(got)
        assert [e["type"] for e in events] == ["rollout.created", "webhook.delivery_exhausted"]
        notice = events[1]["data"]
        assert notice == {
            "webhook_id": theirs["id"],
            "delivery_id": f"dlv_{theirs['id'].removeprefix('ep_')}_{written['sequence']}",
            "sequence": written["sequence"],
            "event_type": "rollout.created",
            "attempts": 1,
            "last_status_code": 500,
        }
        statuses = sorted(d["status"] for d in deliveries(platform, mine["id"]))
        assert statuses == ["failed", "failed"]
    platform.pump(rounds=3)
    assert len(receiver.requests) == 2 and len(watcher.requests) == 2


def test_the_api_switch_writes_operational_events(platform: Platform, receiver: Receiver, watcher: Receiver) -> None:
    subject = receiver_webhook(platform, receiver, events=["webhook.*"])
    receiver_webhook(platform, watcher, events=["webhook.disabled", "webhook.enabled"])
    path = f"/v1/webhooks/{subject['id']}"
    off = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"enabled": False})
    assert off.status == 200 and off.json["disabled_reason"] == "api"
    on = platform.api_as(TENANT, [ADMIN], "PATCH", path, body={"enabled": True})
    assert on.status == 200 and on.json["disabled_reason"] is None
    platform.pump()
    got = sorted(received(watcher), key=lambda e: e["sequence"])  # deliveries are not ordered
    assert [(e["type"], e["data"]) for e in got] == [
        ("webhook.disabled", {"webhook_id": subject["id"], "reason": "api"}),
        ("webhook.enabled", {"webhook_id": subject["id"]}),
    ]
    # The endpoint itself hears of changes (its own webhook.updated included), never of its own switch.
    assert {e["type"] for e in received(receiver)} == {"webhook.created", "webhook.updated"}

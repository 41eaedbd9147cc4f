"""Matching on append: producers reuse what they read of the subscription index for a short while,
and a subscription change waits that out before it answers."""

from __future__ import annotations

import time

import pytest

from meshanics import services
from meshanics.audit import AuditLog, Subscriptions
from meshanics.model import EventInput
from tests.support.harness import Platform

ADMIN = ["integrations:admin", "events:write"]
CACHE = 0.3


def event() -> EventInput:
    return EventInput("rollout.created", subject="rollout/r", actor="test", data={"rollout_id": "r"})


@pytest.fixture
def cached(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    monkeypatch.setenv("SUBSCRIPTION_CACHE_MS", str(int(CACHE * 1000)))
    services.reset()
    return platform


def other_producer() -> AuditLog:
    """A second producer process: its own copy of the index, its own sequence blocks."""
    return AuditLog(
        table=services.audit_table(),
        counters=services.tenant_counters(),
        subscriptions=Subscriptions(services.endpoint_store(), cache_seconds=CACHE),
        max_record_bytes=8192,
    )


def test_an_event_written_after_the_create_answered_is_matched(cached: Platform) -> None:
    producer = other_producer()
    producer.append("acme", [event()])  # reads (and keeps) the index: no endpoint yet
    started = time.monotonic()
    created = cached.api_as(
        "acme", ADMIN, "POST", "/v1/webhooks", body={"url": "http://127.0.0.1:9/h", "allow_private_network": True}
    )
    assert created.status == 201
    assert time.monotonic() - started >= CACHE  # the create waited out every producer's copy
    (record,) = producer.append("acme", [event()])
    assert record.endpoints == (created.json["id"],)


def test_without_the_wait_a_producer_would_still_use_its_copy(cached: Platform) -> None:
    """What the wait is for: a copy read before the change is reused until it is too old."""
    producer = other_producer()
    producer.append("acme", [event()])
    services.webhooks().create("acme", "test", url="http://127.0.0.1:9/h", events=[], allow_private_network=True)
    # The create above waited `CACHE`: the producer's copy is stale now, and it reads again.
    (fresh,) = producer.append("acme", [event()])
    assert len(fresh.endpoints) == 1
    # A copy read just now is kept: an endpoint written behind the API's back is not seen yet.
    store = services.endpoint_store()
    endpoint = store.get("acme", fresh.endpoints[0])
    from dataclasses import replace

    from meshanics.ids import new_id

    store.create(replace(endpoint, id=new_id("ep")), max_endpoints=50)
    (stale,) = producer.append("acme", [event()])
    assert len(stale.endpoints) == 1
    time.sleep(CACHE)
    (later,) = producer.append("acme", [event()])
    assert len(later.endpoints) == 2

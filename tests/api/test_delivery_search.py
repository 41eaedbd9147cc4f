"""Searching an endpoint's delivery history: status, event type, time window and last status code,
alone and together, newest first, paginated with cursors bound to the filters; read by sequence
(Query, never Scan), a window read without reading the history outside it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from meshanics import aws
from meshanics_local.receiver import Behaviour, Receiver
from tests.api.support import (
    READ,
    TENANT,
    assert_error,
    deliveries,
    receiver_webhook,
    rollout_created,
    send_test,
    write_events,
)
from tests.support.harness import Platform


def _path(webhook_id: str) -> str:
    return f"/v1/webhooks/{webhook_id}/deliveries"


def _search(platform: Platform, webhook_id: str, **query: str) -> dict[str, Any]:
    response = platform.api_as(TENANT, [READ], "GET", _path(webhook_id), query=query or None)
    assert response.status == 200, (query, response.json)
    return response.json  # type: ignore[no-any-return]


def _everything(platform: Platform, webhook_id: str, **query: str) -> tuple[list[str], int]:
    """Every delivery a search finds, following next_cursor with the same filters; and the pages."""
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = _search(platform, webhook_id, **query, **({"cursor": cursor} if cursor else {}))
        found += [d["id"] for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return found, pages
        assert pages < 100


def _ping(platform: Platform, receiver: Receiver, webhook_id: str, status: int) -> str:
    receiver.behaviours = [Behaviour(status=status)]
    tested = send_test(platform, webhook_id)
    receiver.behaviours = []
    time.sleep(0.003)  # distinct milliseconds: the window bounds below are other deliveries' times
    return str(tested["delivery_id"])


def _shift(moment: str, seconds: float) -> str:
    shifted = datetime.fromisoformat(moment.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return shifted.isoformat().replace("+00:00", "Z")


@pytest.fixture
def timeline(platform: Platform, receiver: Receiver) -> dict[str, Any]:
    """Six deliveries of one endpoint, in this order: a ping answered 200, a ping answered 503
    (failed), a rollout.created delivered (200), a ping answered 202, a ping answered 503, and a
    rollout.created fanned out but not attempted yet (pending, no status code)."""
    webhook = receiver_webhook(platform, receiver, events=["rollout.*"])
    webhook_id = webhook["id"]
    ids = [_ping(platform, receiver, webhook_id, 200), _ping(platform, receiver, webhook_id, 503)]
    write_events(platform, [rollout_created("r1")])
    platform.pump()
    time.sleep(0.003)
    ids += [d["id"] for d in deliveries(platform, webhook_id, event_type="rollout.created")]
    ids += [_ping(platform, receiver, webhook_id, 202), _ping(platform, receiver, webhook_id, 503)]
    write_events(platform, [rollout_created("r2")])
    platform.fan_out()  # recorded and queued, not attempted
    listed = {d["id"]: d for d in deliveries(platform, webhook_id)}
    assert len(listed) == 6
    ids.append(next(i for i in listed if i not in ids))
    times = [listed[i]["created_at"] for i in ids]
    assert times == sorted(times) and len(set(times)) == 6, times
    assert [listed[i]["status"] for i in ids] == ["delivered", "failed", "delivered", "delivered", "failed", "pending"]
    assert [listed[i]["last_status_code"] for i in ids] == [200, 503, 200, 202, 503, None]
    return {"webhook": webhook_id, "ids": ids, "times": times}


def _expect(timeline: dict[str, Any], *positions: int) -> list[str]:
    """The deliveries at these positions of the timeline, newest first (as the history lists them)."""
    return [timeline["ids"][p] for p in sorted(positions, reverse=True)]


def test_each_filter_alone_and_combined(platform: Platform, timeline: dict[str, Any]) -> None:
    t = timeline["times"]
    cases: list[tuple[dict[str, str], tuple[int, ...]]] = [
        ({}, (0, 1, 2, 3, 4, 5)),
        ({"since": t[2]}, (2, 3, 4, 5)),  # since is inclusive
        ({"until": t[2]}, (0, 1)),  # until is exclusive
        ({"since": t[1], "until": t[4]}, (1, 2, 3)),
        ({"since": t[5]}, (5,)),
        ({"since": _shift(t[5], 0.001)}, ()),
        ({"until": t[0]}, ()),
        ({"status_code": "503"}, (1, 4)),
        ({"status_code": "200"}, (0, 2)),
        ({"status_code": "202"}, (3,)),
        ({"status_code": "404"}, ()),
        ({"status": "delivered"}, (0, 2, 3)),
        ({"status": "pending"}, (5,)),
        ({"event_type": "test.ping"}, (0, 1, 3, 4)),
        ({"event_type": "rollout.*"}, (2, 5)),
        ({"status_code": "503", "since": t[2]}, (4,)),
        ({"status_code": "200", "event_type": "rollout.created"}, (2,)),
        ({"status": "delivered", "until": t[3]}, (0, 2)),
        ({"status": "pending", "since": t[1]}, (5,)),
        ({"status": "failed", "status_code": "200"}, ()),
        ({"event_type": "test.ping", "since": t[1], "until": t[4]}, (1, 3)),
        ({"event_type": "rollout.*", "since": t[2], "until": t[5]}, (2,)),
        ({"status": "failed", "event_type": "test.ping", "since": t[0], "until": t[5], "status_code": "503"}, (1, 4)),
    ]
    for query, positions in cases:
        page = _search(platform, timeline["webhook"], **query)
        assert [d["id"] for d in page["items"]] == _expect(timeline, *positions), query
        assert page["next_cursor"] is None, query


def test_a_window_is_exact_to_the_millisecond_in_any_time_zone(platform: Platform, timeline: dict[str, Any]) -> None:
    t = timeline["times"]
    webhook_id = timeline["webhook"]
    third = datetime.fromisoformat(t[2].replace("Z", "+00:00"))
    # The same instants written with another offset.
    east = (third.astimezone(UTC) + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    assert [d["id"] for d in _search(platform, webhook_id, since=east)["items"]] == _expect(timeline, 2, 3, 4, 5)
    # Half a millisecond after a delivery's time: it is before `since`, and before `until`.
    half = (third + timedelta(microseconds=500)).isoformat().replace("+00:00", "Z")
    assert [d["id"] for d in _search(platform, webhook_id, since=half)["items"]] == _expect(timeline, 3, 4, 5)
    assert [d["id"] for d in _search(platform, webhook_id, until=half)["items"]] == _expect(timeline, 0, 1, 2)


def test_times_with_and_without_milliseconds_compare_exactly(platform: Platform, timeline: dict[str, Any]) -> None:
    """Stored times are written with milliseconds, or without when there are none (`...:05Z`): as
    text, `...:05Z` sorts after `...:05.250Z`. The window still compares them as instants."""
    webhook_id, ids = timeline["webhook"], timeline["ids"]
    second = _shift(timeline["times"][0], -2)[:19]  # a second before every delivery of the timeline
    table = boto3.client("dynamodb")
    for delivery_id, stored in ((ids[0], f"{second}Z"), (ids[1], f"{second}.250Z")):
        table.update_item(
            TableName=os.environ["INTEGRATIONS_TABLE"],
            Key={"pk": {"S": f"T#{TENANT}#EP#{webhook_id}"}, "sk": {"S": f"D#{int(delivery_id.split('_')[-1]):020d}"}},
            UpdateExpression="SET created_at = :t",
            ExpressionAttributeValues={":t": {"S": stored}},
        )
    cases = [
        ({"since": f"{second}Z", "until": f"{second}.250Z"}, [ids[0]]),
        ({"since": f"{second}.001Z", "until": f"{second}.251Z"}, [ids[1]]),
        ({"since": f"{second}.250Z", "until": f"{second}.251Z"}, [ids[1]]),
        ({"since": f"{second}Z", "until": f"{second}.999Z"}, [ids[1], ids[0]]),
        ({"until": f"{second}Z"}, []),
        ({"until": f"{second}.000001Z"}, [ids[0]]),
    ]
    for query, expected in cases:
        assert [d["id"] for d in _search(platform, webhook_id, **query)["items"]] == expected, query


def test_pages_of_a_search_and_cursors_bound_to_its_filters(platform: Platform, receiver: Receiver) -> None:
    webhook_id = receiver_webhook(platform, receiver, events=["rollout.*"])["id"]
    answered = [_ping(platform, receiver, webhook_id, status) for status in (503, 200, 503, 503, 200, 503, 503)]
    failed = [i for i, status in zip(answered, (503, 200, 503, 503, 200, 503, 503), strict=True) if status == 503]
    middle = deliveries(platform, webhook_id)[3]["created_at"]
    for query, expected in [
        ({"status_code": "503"}, failed[::-1]),
        ({"status_code": "503", "since": middle}, [i for i in failed[::-1] if answered.index(i) >= 3]),
        ({"status": "delivered", "until": middle}, [answered[1]]),
        ({}, answered[::-1]),
    ]:
        for limit in ("1", "2", "3"):
            found, pages = _everything(platform, webhook_id, limit=limit, **query)
            assert found == expected, (query, limit)
            assert pages >= -(-len(expected) // int(limit))

    first = _search(platform, webhook_id, status_code="503", limit="2")
    assert len(first["items"]) == 2 and first["next_cursor"]
    cursor = first["next_cursor"]
    # The same filters (any page size): the next page. Other filters: refused, naming the cursor.
    same = _search(platform, webhook_id, status_code="503", limit="3", cursor=cursor)
    assert [d["id"] for d in same["items"]] == failed[::-1][2:]
    for other in (
        {},
        {"status_code": "200"},
        {"status_code": "503", "status": "failed"},
        {"status_code": "503", "since": middle},
        {"status_code": "503", "until": middle},
        {"status_code": "503", "event_type": "test.ping"},
    ):
        response = platform.api_as(TENANT, [READ], "GET", _path(webhook_id), query={**other, "cursor": cursor})
        error = assert_error(response, 400, "cursor_mismatch", "cursor")
        assert "other filters" in error["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no time zone
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"until": ""}, "until"),
        ({"since": "1"}, "since"),
        ({"status_code": "99"}, "status_code"),
        ({"status_code": "600"}, "status_code"),
        ({"status_code": "2xx"}, "status_code"),
        ({"status_code": "200.5"}, "status_code"),
    ],
)
def test_bad_filters_are_a_clear_400(platform: Platform, receiver: Receiver, query: dict[str, str], field: str) -> None:
    webhook_id = receiver_webhook(platform, receiver)["id"]
    assert_error(platform.api_as(TENANT, [READ], "GET", _path(webhook_id), query=query), 400, field=field)


@pytest.mark.parametrize(
    "window",
    [
        {"since": "2026-06-16T10:00:00Z", "until": "2026-06-16T09:00:00Z"},
        {"since": "2026-06-16T10:00:00Z", "until": "2026-06-16T10:00:00Z"},
        {"since": "2026-06-16T10:00:00Z", "until": "2026-06-16T11:59:00+02:00"},
    ],
)
def test_a_reversed_or_empty_window_is_refused(platform: Platform, receiver: Receiver, window: dict[str, str]) -> None:
    webhook_id = receiver_webhook(platform, receiver)["id"]
    response = platform.api_as(TENANT, [READ], "GET", _path(webhook_id), query=window)
    error = assert_error(response, 400, "invalid_request", "since")
    assert "must be before until" in error["message"]


def test_the_document_describes_the_search(platform: Platform) -> None:
    spec = platform.api("GET", "/v1/openapi.json", context={}).json
    operation = spec["paths"]["/v1/webhooks/{webhook_id}/deliveries"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert {"status", "event_type", "since", "until", "status_code", "limit", "cursor"} <= set(parameters)
    code = parameters["status_code"]["schema"]
    assert "anyOf" in code or "minimum" in code
    assert "cursor_mismatch" in operation["description"]


# -- reading by sequence, never outside the window -------------------------------------------------
@contextmanager
def _reads() -> Iterator[list[dict[str, Any]]]:
    """The Query calls the core makes, with the items each read; a Scan fails the test."""
    client = aws.client("dynamodb")
    calls: list[dict[str, Any]] = []
    query: Callable[..., Any] = client.query

    def counted(**kwargs: Any) -> Any:
        response = query(**kwargs)
        calls.append({"table": kwargs["TableName"], "limit": kwargs.get("Limit"), "read": response["ScannedCount"]})
        return response

    def refused(**kwargs: Any) -> Any:
        raise AssertionError(f"a Scan of {kwargs.get('TableName')}")

    client.query, client.scan = counted, refused
    try:
        yield calls
    finally:
        del client.query, client.scan


def _age(webhook_id: str, delivery_ids: list[str], hours: float) -> None:
    """Move these deliveries (and their audit records) back in time, as if written `hours` ago."""
    table = boto3.client("dynamodb")
    sequences = {int(i.split("_")[-1]) for i in delivery_ids}
    records = [
        item
        for item in table.scan(TableName=os.environ["AUDIT_TABLE"])["Items"]
        if int(item["sequence"]["N"]) in sequences
    ]
    assert len(records) == len(sequences)
    for record in records:
        then = datetime.fromisoformat(record["recorded_at"]["S"].replace("Z", "+00:00")) - timedelta(hours=hours)
        stored = then.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        table.update_item(
            TableName=os.environ["AUDIT_TABLE"],
            Key={"partition": record["partition"], "sequence": record["sequence"]},
            UpdateExpression="SET recorded_at = :t",
            ExpressionAttributeValues={":t": {"S": stored}},
        )
        table.update_item(
            TableName=os.environ["INTEGRATIONS_TABLE"],
            Key={"pk": {"S": f"T#{TENANT}#EP#{webhook_id}"}, "sk": {"S": f"D#{int(record['sequence']['N']):020d}"}},
            UpdateExpression="SET created_at = :t",
            ExpressionAttributeValues={":t": {"S": stored}},
        )


@pytest.fixture
def old_and_new(platform: Platform, receiver: Receiver) -> dict[str, Any]:
    """40 deliveries written two hours ago, then 40 written now (one endpoint)."""
    webhook_id = receiver_webhook(platform, receiver, events=["rollout.*"])["id"]
    write_events(platform, [rollout_created(f"old-{i}") for i in range(40)])
    platform.pump()
    old = [d["id"] for d in deliveries(platform, webhook_id, limit="100")]
    _age(webhook_id, old, hours=2)
    write_events(platform, [rollout_created(f"new-{i}") for i in range(40)])
    platform.pump()
    every = [d["id"] for d in deliveries(platform, webhook_id, limit="100")]
    assert len(every) == 80 and set(old) < set(every)
    return {"webhook": webhook_id, "old": old, "new": [i for i in every if i not in old]}


def _items_read(calls: list[dict[str, Any]]) -> tuple[int, int]:
    """(delivery items read by the searches' Queries, one-item reads that find the window's sequences)."""
    mine = [c for c in calls if c["table"] == os.environ["INTEGRATIONS_TABLE"]]
    return sum(c["read"] for c in mine if c["limit"] != 1), len([c for c in mine if c["limit"] == 1])


def test_a_window_is_read_by_sequence_never_outside_it(platform: Platform, old_and_new: dict[str, Any]) -> None:
    webhook_id, old, new = old_and_new["webhook"], old_and_new["old"], old_and_new["new"]
    now = datetime.now(UTC)

    def ago(hours: float) -> str:
        return (now - timedelta(hours=hours)).isoformat()

    for query, expected in [
        ({"since": ago(1)}, new),
        ({"since": ago(1), "status_code": "200"}, new),
        ({"until": ago(1)}, old),
        ({"until": ago(1), "status": "delivered"}, old),
        ({"since": ago(3), "until": ago(1)}, old),
        ({"since": ago(3), "until": ago(1), "event_type": "rollout.created"}, old),
        ({"since": ago(6), "until": ago(5)}, []),
        ({"since": ago(-1)}, []),
    ]:
        with _reads() as calls:
            found, _ = _everything(platform, webhook_id, limit="100", **query)
        assert sorted(found) == sorted(expected), query
        read, probes = _items_read(calls)
        # Only the window's deliveries are read (and one more at most, where a page stops), found
        # in a few one-item reads bisecting the sequences: never the 40 outside it.
        assert read <= len(expected) + 1, (query, read)
        assert probes <= 2 * 8, (query, probes)


def test_a_selective_search_reads_a_bounded_part_per_page(
    platform: Platform, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page reads at most READ_BUDGET delivery items: a rare match far down is reached by
    following next_cursor (pages may be empty on the way), never by one unbounded read."""
    from meshanics import history

    monkeypatch.setattr(history, "READ_BUDGET", 10)
    webhook_id = receiver_webhook(platform, receiver, events=["rollout.*"])["id"]
    rare = _ping(platform, receiver, webhook_id, 418)
    write_events(platform, [rollout_created(f"r{i}") for i in range(35)])
    platform.pump()
    with _reads() as calls:
        found, pages = _everything(platform, webhook_id, status_code="418")
    assert found == [rare]
    assert pages >= 3
    per_page = [c["read"] for c in calls if c["table"] == os.environ["INTEGRATIONS_TABLE"] and c["limit"] != 1]
    assert max(per_page) <= 10

"""Secret rotation: during the overlap every delivery carries both signatures, so a receiver holding
only the old secret and one holding only the new one both verify; after it, only the new one signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from meshanics.clock import parse_iso
from meshanics.signing import SignatureVerificationError, verify
from meshanics_local.receiver import Received, Receiver
from tests.api.support import ADMIN, READ, TENANT, assert_error, receiver_webhook, rollout_created, write_events
from tests.support.harness import Platform


def rotate(platform: Platform, webhook_id: str, **body: Any) -> dict[str, Any]:
    response = platform.api_as(
        TENANT, [ADMIN], "POST", f"/v1/webhooks/{webhook_id}/rotate-secret", body=body if body else None
    )
    assert response.status == 200, response.json
    return response.json  # type: ignore[no-any-return]


def deliver_one(platform: Platform, receiver: Receiver, rollout_id: str) -> Received:
    before = len(receiver.requests)
    write_events(platform, [rollout_created(rollout_id)])
    platform.pump()
    assert len(receiver.requests) == before + 1
    return receiver.requests[-1]


def signatures(request: Received) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures of X-Meshanics-Signature, in order."""
    parts = [p.split("=", 1) for p in request.headers["X-Meshanics-Signature"].split(",")]
    assert parts[0][0] == "t"
    assert all(name == "v1" for name, _ in parts[1:])
    return int(parts[0][1]), [value for _, value in parts[1:]]


def expected(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def standard(secret: str, request: Received) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def holds_only(secret: str, request: Received) -> bool:
    """What a receiver that knows only `secret` concludes about the request."""
    try:
        verify(request.body, request.headers["X-Meshanics-Signature"], secret)
    except SignatureVerificationError:
        return False
    return True


def test_during_the_overlap_old_and_new_secret_both_verify(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    old = created["secret"]
    before = deliver_one(platform, receiver, "r0")
    assert holds_only(old, before)
    assert len(signatures(before)[1]) == 1

    rotated = rotate(platform, created["id"])
    new = rotated["secret"]
    assert new != old
    request = deliver_one(platform, receiver, "r1")
    # A receiver still holding only the old secret keeps verifying ...
    assert holds_only(old, request)
    # ... and one already switched to only the new secret verifies too.
    assert holds_only(new, request)
    # The header carries t=..., v1=<new>, v1=<old>, in that order.
    timestamp, values = signatures(request)
    assert values == [expected(new, timestamp, request.body), expected(old, timestamp, request.body)]
    assert abs(timestamp - time.time()) < 60
    # The Standard Webhooks header carries both as well, newest first.
    assert request.headers["webhook-signature"] == f"{standard(new, request)} {standard(old, request)}"
    # Test deliveries go through the same signing path.
    tested = platform.api_as(TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/test").json
    assert tested["status"] == "delivered"
    assert holds_only(old, receiver.requests[-1]) and holds_only(new, receiver.requests[-1])
    # What was sent before the rotation was signed with the old secret alone.
    assert holds_only(old, before) and not holds_only(new, before)


def test_without_overlap_the_old_secret_stops_at_once(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    rotated = rotate(platform, created["id"], overlap_seconds=0)
    assert rotated["secret_rotation_overlap_until"] is None
    request = deliver_one(platform, receiver, "r1")
    assert not holds_only(created["secret"], request)
    assert holds_only(rotated["secret"], request)
    timestamp, values = signatures(request)
    assert values == [expected(rotated["secret"], timestamp, request.body)]
    assert request.headers["webhook-signature"] == standard(rotated["secret"], request)


def test_after_the_overlap_window_only_the_new_secret_signs(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    rotated = rotate(platform, created["id"], overlap_seconds=2)
    until = parse_iso(rotated["secret_rotation_overlap_until"])
    assert 1 <= until - time.time() <= 2.1
    during = deliver_one(platform, receiver, "r1")
    assert holds_only(created["secret"], during) and holds_only(rotated["secret"], during)

    time.sleep(max(0.0, until - time.time()) + 0.05)
    after = deliver_one(platform, receiver, "r2")
    assert not holds_only(created["secret"], after)
    assert holds_only(rotated["secret"], after)
    assert len(signatures(after)[1]) == 1
    shown = platform.api_as(TENANT, [READ], "GET", f"/v1/webhooks/{created['id']}").json
    assert shown["secret_rotation_overlap_until"] is None


def test_a_second_rotation_keeps_only_the_latest_two(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    second = rotate(platform, created["id"])["secret"]
    third = rotate(platform, created["id"], overlap_seconds=300)["secret"]
    request = deliver_one(platform, receiver, "r1")
    timestamp, values = signatures(request)
    assert values == [expected(third, timestamp, request.body), expected(second, timestamp, request.body)]
    assert not holds_only(created["secret"], request)
    assert holds_only(second, request) and holds_only(third, request)


def test_rotation_applies_to_deliveries_already_queued(platform: Platform, receiver: Receiver) -> None:
    """A job queued before the rotation is signed when it is sent: with the secrets live then."""
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    write_events(platform, [rollout_created("r1")])
    platform.fan_out()
    rotated = rotate(platform, created["id"], overlap_seconds=0)
    platform.pump()
    (request,) = receiver.requests
    assert holds_only(rotated["secret"], request)
    assert not holds_only(created["secret"], request)


def test_the_rotation_event_tells_when_the_old_secret_stops(platform: Platform, receiver: Receiver) -> None:
    watcher = receiver_webhook(platform, receiver, url=receiver.url + "/watch", events=["webhook.secret_rotated"])
    rotated = rotate(platform, watcher["id"], overlap_seconds=3600)
    platform.pump()
    (request,) = receiver.requests
    envelope = json.loads(request.body)
    assert envelope["type"] == "webhook.secret_rotated"
    assert envelope["data"]["webhook_id"] == watcher["id"]
    assert parse_iso(envelope["data"]["previous_secret_expires_at"]) == parse_iso(
        rotated["secret_rotation_overlap_until"]
    )
    # Sent during the overlap it announces: verifiable with either secret.
    assert holds_only(watcher["secret"], request) and holds_only(rotated["secret"], request)


@pytest.mark.parametrize("overlap", [-1, 604_801, 1.5, "1h", None])
def test_overlap_must_be_whole_seconds_within_a_week(platform: Platform, receiver: Receiver, overlap: Any) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    response = platform.api_as(
        TENANT, [ADMIN], "POST", f"/v1/webhooks/{created['id']}/rotate-secret", body={"overlap_seconds": overlap}
    )
    if overlap is None:  # null means the default overlap
        assert response.status == 200
        assert abs(parse_iso(response.json["secret_rotation_overlap_until"]) - time.time() - 86_400) < 60
        return
    assert_error(response, 400, "invalid_request", "overlap_seconds")
    request = deliver_one(platform, receiver, "r1")
    assert holds_only(created["secret"], request)
    assert len(signatures(request)[1]) == 1


def test_a_full_week_of_overlap_is_allowed(platform: Platform, receiver: Receiver) -> None:
    created = receiver_webhook(platform, receiver, events=["rollout.*"])
    rotated = rotate(platform, created["id"], overlap_seconds=604_800)
    assert abs(parse_iso(rotated["secret_rotation_overlap_until"]) - time.time() - 604_800) < 60

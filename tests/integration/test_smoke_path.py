from __future__ import annotations

from meshanics.signing import verify
from meshanics_local.receiver import Receiver
from tests.support.harness import Platform


def test_event_reaches_a_subscribed_receiver_signed(platform: Platform, receiver: Receiver) -> None:
    key = platform.key("acme", ["integrations:admin", "events:write"])
    created = platform.api(
        "POST",
        "/v1/webhooks",
        key=key,
        body={"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True},
    )
    assert created.status == 201, created.json
    written = platform.api(
        "POST",
        "/v1/events",
        key=key,
        body={"type": "rollout.created", "subject": "rollout/r1", "data": {"rollout_id": "r1"}},
    )
    assert written.status == 201, written.json
    platform.pump()
    (request,) = receiver.requests
    verify(request.body, request.headers["X-Meshanics-Signature"], created.json["secret"])

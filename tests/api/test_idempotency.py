"""`Idempotency-Key` on POST /v1/events, /v1/webhooks and /v1/registries: a retry answers the first
response without writing again, per tenant and route; a reused key with another body is a 422, one
still in progress a 409; bad keys a 400; a created endpoint's secret is never at rest in the clear."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.sealing import Sealer
from meshanics_api.idempotency import KEY_PREFIX, Request
from meshanics_local.receiver import Receiver
from tests.api.support import (
    ADMIN,
    EVENTS,
    OPERATOR,
    OTHER,
    PUBLIC_URL,
    READ,
    TENANT,
    UPSTREAM,
    assert_error,
    receiver_webhook,
    rollout_created,
)
from tests.conftest import load_handler
from tests.support.harness import Platform
from tests.support.lambda_events import Context, api_event, authorizer_context

KEY = "7f9c2d1e-4b6a-4c1e-9d3f-0a5b8c7e6d21"
EVENT = rollout_created("r-1") | {"data": {"rollout_id": "r-1", "device_count": 25}}
WEBHOOK = {"url": PUBLIC_URL, "events": ["rollout.*"], "description": "ops"}
REGISTRY = {"name": "corp", "upstream_url": "https://hooks.example.com", "credentials": UPSTREAM}
# The three routes that create, each with a body and the scope that opens it.
CREATING = [
    ("/v1/events", EVENTS, EVENT),
    ("/v1/webhooks", ADMIN, WEBHOOK),
    ("/v1/registries", OPERATOR, REGISTRY),
]


def _scan(table: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _audit(platform: Platform) -> list[dict[str, Any]]:
    return _scan(platform.env["AUDIT_TABLE"])


def _records(platform: Platform) -> list[dict[str, Any]]:
    return _scan(platform.env["IDEMPOTENCY_TABLE"])


def post(platform: Platform, path: str, scope: str, body: Any, key: str | None = KEY, tenant: str = TENANT) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return platform.api_as(tenant, [scope], "POST", path, body=body, headers=headers)


# -- a retry answers the first response ----------------------------------------------------------
def test_an_event_retried_with_its_key_keeps_its_sequence_and_is_written_once(
    platform: Platform, receiver: Receiver
) -> None:
    receiver_webhook(platform, receiver, events=["rollout.*"])
    audited = len(_audit(platform))
    first = post(platform, "/v1/events", EVENTS, EVENT)
    assert first.status == 201, first.json
    # A retry: same key (in any case, header names are case-insensitive), the same JSON document
    # with its keys in another order.
    reordered = dict(reversed(list(EVENT.items())))
    again = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=reordered, headers={"idempotency-key": KEY})
    assert (again.status, again.json) == (201, first.json)
    assert len(_audit(platform)) == audited + 1  # one event, not two
    platform.pump()
    (delivered,) = receiver.wait_for(1)
    time.sleep(0.2)
    assert len(receiver.requests) == 1
    envelope = json.loads(delivered.body)
    assert envelope["sequence"] == first.json["items"][0]["sequence"]
    assert envelope["idempotency_key"] == first.json["items"][0]["idempotency_key"]
    # Without a key, the same body is a new event.
    fresh = post(platform, "/v1/events", EVENTS, EVENT, key=None)
    assert fresh.status == 201 and fresh.json["items"][0]["sequence"] > first.json["items"][0]["sequence"]


def test_a_batch_retried_keeps_every_sequence(platform: Platform) -> None:
    batch = {"events": [rollout_created(f"r{i}") for i in range(5)]}
    first = post(platform, "/v1/events", EVENTS, batch)
    assert first.status == 201
    again = post(platform, "/v1/events", EVENTS, batch)
    assert again.json == first.json and len(again.json["items"]) == 5
    assert len(_audit(platform)) == 5


def test_an_endpoint_created_twice_with_one_key_is_one_endpoint_with_one_secret(platform: Platform) -> None:
    first = post(platform, "/v1/webhooks", ADMIN, WEBHOOK)
    assert first.status == 201, first.json
    secret = first.json["secret"]
    assert secret.startswith("whsec_")
    again = post(platform, "/v1/webhooks", ADMIN, WEBHOOK)
    assert (again.status, again.json) == (201, first.json)  # the same id and the same secret
    listed = platform.api_as(TENANT, [READ], "GET", "/v1/webhooks").json["items"]
    assert [w["id"] for w in listed] == [first.json["id"]]
    created = [i for i in _audit(platform) if i["type"]["S"] == "webhook.created"]
    assert len(created) == 1

    # At rest: no secret in the clear anywhere in the record, only its KMS envelope.
    (record,) = _records(platform)
    assert secret not in json.dumps(record)
    assert secret.removeprefix("whsec_") not in json.dumps(record)
    stored = json.loads(record["data"]["S"])
    assert set(stored["secret"]) == {"sealed"}
    assert {k: v for k, v in stored.items() if k != "secret"} == {k: v for k, v in first.json.items() if k != "secret"}
    assert record["status"]["S"] == "COMPLETED"
    assert record["id"]["S"].startswith(f"{KEY_PREFIX}#") and KEY not in record["id"]["S"]


def test_a_sealed_answer_opens_only_for_its_own_tenant_and_request(platform: Platform) -> None:
    post(platform, "/v1/webhooks", ADMIN, WEBHOOK)
    (record,) = _records(platform)
    sealed = base64.b64decode(json.loads(record["data"]["S"])["secret"]["sealed"])
    sealer: Sealer = services.sealer()

    def context(tenant: str, key: str) -> dict[str, str]:
        request = Request(tenant, "POST /v1/webhooks", key, WEBHOOK)
        return {"tenant": tenant, "request": request.digest, "field": "secret", "purpose": "idempotent-response"}

    assert sealer.unseal(sealed, context(TENANT, KEY)).startswith("whsec_")
    for tenant, key in ((OTHER, KEY), (TENANT, "another-key")):
        with pytest.raises(Exception, match=r"InvalidCiphertext|InvalidTag|Invalid"):
            sealer.unseal(sealed, context(tenant, key))


def test_a_registry_connected_twice_with_one_key_is_one_connection(platform: Platform) -> None:
    first = post(platform, "/v1/registries", OPERATOR, REGISTRY)
    assert first.status == 201, first.json
    again = post(platform, "/v1/registries", OPERATOR, REGISTRY)
    assert (again.status, again.json) == (201, first.json)
    listed = platform.api_as(TENANT, [OPERATOR], "GET", "/v1/registries").json["items"]
    assert [r["id"] for r in listed] == [first.json["id"]]
    assert [i["type"]["S"] for i in _audit(platform)].count("registry.connected") == 1
    # The record keeps a hash of the body, never the upstream password.
    (record,) = _records(platform)
    assert UPSTREAM["password"] not in json.dumps(record)


# -- the same key with another body ---------------------------------------------------------------
@pytest.mark.parametrize(("path", "scope", "body"), CREATING, ids=[c[0] for c in CREATING])
def test_the_same_key_with_another_body_is_a_422_and_writes_nothing(
    platform: Platform, path: str, scope: str, body: dict[str, Any]
) -> None:
    first = post(platform, path, scope, body)
    assert first.status == 201, first.json
    audited = len(_audit(platform))
    changed = body | ({"subject": "rollout/r-2"} if path == "/v1/events" else {})
    changed |= {"description": "another"} if path == "/v1/webhooks" else {}
    changed |= {"name": "other"} if path == "/v1/registries" else {}
    assert changed != body
    assert_error(post(platform, path, scope, changed), 422, "idempotency_key_reused", "Idempotency-Key")
    assert len(_audit(platform)) == audited
    assert post(platform, path, scope, body).json == first.json  # the first answer stands


# -- keys are per tenant and per route ------------------------------------------------------------
def test_another_tenants_same_key_is_another_request(platform: Platform) -> None:
    mine = post(platform, "/v1/events", EVENTS, EVENT)
    theirs = post(platform, "/v1/events", EVENTS, EVENT, tenant=OTHER)
    assert mine.status == theirs.status == 201
    assert mine.json["items"][0]["idempotency_key"] != theirs.json["items"][0]["idempotency_key"]
    assert {i["tenant_id"]["S"] for i in _audit(platform)} == {TENANT, OTHER}
    # And with another body: not a 422 either (the key is theirs to use).
    other_body = post(platform, "/v1/webhooks", ADMIN, WEBHOOK, tenant=OTHER)
    mine_hook = post(platform, "/v1/webhooks", ADMIN, WEBHOOK)
    assert other_body.status == mine_hook.status == 201
    assert other_body.json["id"] != mine_hook.json["id"] and other_body.json["secret"] != mine_hook.json["secret"]
    assert len(_records(platform)) == 4  # two tenants x two routes


def test_the_same_key_on_another_route_is_another_request(platform: Platform) -> None:
    hook = post(platform, "/v1/webhooks", ADMIN, WEBHOOK)
    event = post(platform, "/v1/events", EVENTS, EVENT)
    registry = post(platform, "/v1/registries", OPERATOR, REGISTRY)
    assert hook.status == event.status == registry.status == 201
    assert len(_records(platform)) == 3


# -- what is kept, and for how long ---------------------------------------------------------------
def test_a_failed_request_is_not_kept_so_its_key_can_be_retried(platform: Platform) -> None:
    refused = post(platform, "/v1/webhooks", ADMIN, WEBHOOK | {"url": "http://hooks.example.com/x"})
    assert_error(refused, 400, "egress.scheme")
    assert _records(platform) == []
    fixed = post(platform, "/v1/webhooks", ADMIN, WEBHOOK)
    assert fixed.status == 201  # not a 422: nothing was kept for the failed attempt


def test_a_key_is_kept_24_hours_then_is_new(platform: Platform) -> None:
    before = int(time.time())
    first = post(platform, "/v1/events", EVENTS, EVENT)
    (record,) = _records(platform)
    expires = int(record["expires_at"]["N"])
    assert before + 24 * 3600 <= expires <= int(time.time()) + 24 * 3600 + 1
    # Past that, the record is expired (DynamoDB's TTL deletes it within days; until then it is ignored).
    boto3.client("dynamodb").update_item(
        TableName=platform.env["IDEMPOTENCY_TABLE"],
        Key={"id": record["id"]},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    later = post(platform, "/v1/events", EVENTS, EVENT)
    assert later.status == 201
    assert later.json["items"][0]["sequence"] > first.json["items"][0]["sequence"]


# -- bad keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "tab\tinside", "line\nbreak", "caf\u00e9", "\x7f", " leading", "trailing "],
    ids=["empty", "256-chars", "tab", "newline", "non-ascii", "del", "leading-space", "trailing-space"],
)
@pytest.mark.parametrize(("path", "scope", "body"), CREATING, ids=[c[0] for c in CREATING])
def test_an_invalid_key_is_a_400_and_writes_nothing(
    platform: Platform, path: str, scope: str, body: dict[str, Any], key: str
) -> None:
    assert_error(post(platform, path, scope, body, key=key), 400, "invalid_request", "Idempotency-Key")
    assert _audit(platform) == [] and _records(platform) == []


def test_the_longest_and_oddest_valid_keys_work(platform: Platform) -> None:
    for key in ("k" * 255, "a b!~{}", "x"):
        assert post(platform, "/v1/events", EVENTS, EVENT, key=key).status == 201
    assert len(_records(platform)) == 3


@pytest.mark.parametrize("second_name", ["Idempotency-Key", "idempotency-key"])
def test_a_key_given_twice_is_a_400(platform: Platform, second_name: str) -> None:
    pairs = [("Idempotency-Key", KEY), (second_name, "another")]
    answer = platform.api_as(TENANT, [EVENTS], "POST", "/v1/events", body=EVENT, headers=pairs)
    assert_error(answer, 400, "invalid_request", "Idempotency-Key")
    assert _audit(platform) == [] and _records(platform) == []


def test_the_scope_is_checked_before_the_key(platform: Platform) -> None:
    assert_error(post(platform, "/v1/events", READ, EVENT, key=""), 403, "missing_scope")


# -- a request still in progress ------------------------------------------------------------------
def test_the_same_key_while_the_first_is_in_progress_is_a_409(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two invocations (two Lambda containers: two loads of the function) with one key: the second
    arrives while the first is writing."""
    audit_log = services.audit_log()
    real_append = audit_log.append
    writing, release = threading.Event(), threading.Event()

    def slow_append(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        assert release.wait(30)
        return real_append(*args, **kwargs)

    monkeypatch.setattr(audit_log, "append", slow_append)
    first_container = platform.handler("api")
    answers: list[Any] = []

    def first() -> None:
        event = api_event(
            "POST",
            "/v1/events",
            body=EVENT,
            headers={"Idempotency-Key": KEY},
            authorizer=authorizer_context(TENANT, [EVENTS]),
        )
        answers.append(first_container.lambda_handler(event, Context("api")))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert writing.wait(30)
        second_container = load_handler("api")

        def second(body: Any) -> dict[str, Any]:
            event = api_event(
                "POST",
                "/v1/events",
                body=body,
                headers={"Idempotency-Key": KEY},
                authorizer=authorizer_context(TENANT, [EVENTS]),
            )
            answer: dict[str, Any] = second_container.lambda_handler(event, Context("api"))
            return answer

        busy = second(EVENT)
        assert busy["statusCode"] == 409
        assert json.loads(busy["body"])["error"] == {
            "code": "idempotency_in_progress",
            "message": "a request with this Idempotency-Key is still in progress; retry once it has answered",
            "field": "Idempotency-Key",
        }
        reused = second(rollout_created("r-2"))  # another body: refused as such even while in progress
        assert reused["statusCode"] == 422
    finally:
        release.set()
        thread.join(30)
    (done,) = answers
    assert done["statusCode"] == 201
    assert len(_audit(platform)) == 1
    monkeypatch.setattr(audit_log, "append", real_append)
    replayed = post(platform, "/v1/events", EVENTS, EVENT)
    assert replayed.status == 201 and replayed.json == json.loads(done["body"])


def test_a_crashed_request_frees_its_key_when_its_invocation_would_have_timed_out(platform: Platform) -> None:
    """The record in progress expires with its invocation (Lambda's remaining time), not after 24 h."""
    first_container = platform.handler("api")
    event = api_event(
        "POST",
        "/v1/events",
        body=EVENT,
        headers={"Idempotency-Key": KEY},
        authorizer=authorizer_context(TENANT, [EVENTS]),
    )
    started = time.time()
    answer = first_container.lambda_handler(event, Context("api", remaining_ms=29_000))
    assert answer["statusCode"] == 201
    (record,) = _records(platform)
    in_progress_until = int(record["in_progress_expiration"]["N"]) / 1000
    assert started + 28 <= in_progress_until <= time.time() + 29
    # A crash between the two writes leaves the record in progress: simulate it, already timed out.
    boto3.client("dynamodb").update_item(
        TableName=platform.env["IDEMPOTENCY_TABLE"],
        Key={"id": record["id"]},
        UpdateExpression="SET #s = :p, in_progress_expiration = :past REMOVE #d",
        ExpressionAttributeNames={"#s": "status", "#d": "data"},
        ExpressionAttributeValues={
            ":p": {"S": "INPROGRESS"},
            ":past": {"N": str(int((time.time() - 1) * 1000))},
        },
    )
    retried = post(platform, "/v1/events", EVENTS, EVENT)
    assert retried.status == 201  # ran again: the crashed attempt answered nobody


# -- the document ----------------------------------------------------------------------------------
def test_the_document_states_the_header_on_the_three_routes(platform: Platform) -> None:
    spec = platform.api("GET", "/v1/openapi.json", context={}).json
    taking = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header" and parameter["name"].lower() == "idempotency-key":
                    taking.add(f"{method.upper()} {path}")
                    assert parameter.get("required") is not True
                    (string,) = [
                        s for s in parameter["schema"].get("anyOf", [parameter["schema"]]) if s["type"] == "string"
                    ]
                    assert (string["minLength"], string["maxLength"]) == (1, 255)
                    assert string["pattern"] == "^[!-~]([ -~]*[!-~])?$"
                    assert "24 hours" in parameter["description"]
                    responses = operation["responses"]
                    assert "idempotency_in_progress" in responses["409"]["description"]
                    assert "idempotency_key_reused" in responses["422"]["description"]
    assert taking == {"POST /v1/events", "POST /v1/webhooks", "POST /v1/registries"}

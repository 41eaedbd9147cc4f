"""Sample events for `events/`, built with the same builders the pollers and the API front use.

`python -m meshanics_local.samples` rewrites `events/*.json`; a test checks the files still equal
what the builders produce. Inputs are fixed (ids, times, names) so the output is stable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshanics_local.events import (
    ApiContext,
    HttpRequest,
    authorizer_request_event,
    dynamodb_stream_record,
    forwarded_headers,
    proxy_event,
    scheduled_event,
    sqs_record,
)
from meshanics_local.resources import rest_api_id
from meshanics_local.template import ACCOUNT_ID, REGION

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = REPO_ROOT / "events"

STACK = "meshanics"
STAGE = "dev"
API_ID = rest_api_id(STACK, "IntegrationsApi")
AUDIT_TABLE = f"{STACK}-AuditLogTable-EXAMPLE"
STREAM_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{AUDIT_TABLE}/stream/2026-06-16T09:00:00.000000"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{STACK}-DeliveryQueue-EXAMPLE"
RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{STACK}-ReplayFunctionSweep"
AT = datetime(2026, 6, 16, 9, 30, tzinfo=UTC).timestamp()
EXAMPLE_KEY = "msk_0123456789abcdef_" + "A" * 43
TENANT = "demo"
ENDPOINT_ID = "ep_" + "0" * 23 + "1"
DIGEST = "sha256:" + "ab" * 32


def _audit_item() -> dict[str, Any]:
    """An audit-log item as DynamoDB JSON (what AuditLog.append writes)."""
    return {
        "tenant_id": {"S": TENANT},
        "sequence": {"N": "42"},
        "event_id": {"S": "7f3a9c1e2b4d6f8a0c1e"},
        "type": {"S": "rollout.state_changed"},
        "occurred_at": {"S": "2026-06-16T09:30:00Z"},
        "recorded_at": {"S": "2026-06-16T09:30:00Z"},
        "subject": {"S": "rollouts/ro_42"},
        "actor": {"S": "user:alice"},
        "data": {"M": {"rollout_id": {"S": "ro_42"}, "previous_state": {"S": "pending"}, "state": {"S": "running"}}},
        "expires_at": {"N": "1816504200"},
    }


def fanout_stream_insert() -> dict[str, Any]:
    item = _audit_item()
    raw = {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": datetime.fromtimestamp(AT, UTC),
            "Keys": {"tenant_id": item["tenant_id"], "sequence": item["sequence"]},
            "NewImage": item,
            "SequenceNumber": "1100000000017454423009",
            "SizeBytes": 412,
            "StreamViewType": "NEW_IMAGE",
        },
    }
    return {"Records": [dynamodb_stream_record(raw, stream_arn=STREAM_ARN, region=REGION)]}


def _delivery_body() -> str:
    envelope = {
        "specversion": "1.0",
        "type": "rollout.state_changed",
        "occurred_at": "2026-06-16T09:30:00Z",
        "subject": "rollouts/ro_42",
        "actor": "user:alice",
        "sequence": 42,
        "idempotency_key": "42-7f3a9c1e2b4d6f8a0c1e",
        "data": {"rollout_id": "ro_42", "previous_state": "pending", "state": "running"},
    }
    job = {
        "v": 1,
        "tenant": TENANT,
        "endpoint": ENDPOINT_ID,
        "sequence": 42,
        "type": "rollout.state_changed",
        "key": "42-7f3a9c1e2b4d6f8a0c1e",
        "attempt_base": 0,
        "body": json.dumps(envelope, separators=(",", ":")),
    }
    return json.dumps(job, separators=(",", ":"))


def deliver_sqs() -> dict[str, Any]:
    body = _delivery_body()
    message = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "Body": body,
        "Attributes": {
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "SentTimestamp": str(int(AT * 1000)),
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": str(int(AT * 1000) + 12),
        },
    }
    return {"Records": [sqs_record(message, queue_arn=QUEUE_ARN, region=REGION)]}


def fanout_recovery_sqs() -> dict[str, Any]:
    """Lambda's on-failure record for a stream batch, as the fan-out failure queue delivers it."""
    failure = {
        "requestContext": {
            "requestId": "316aa6d0-8154-4d9b-9d8b-0e5a3e2c1f00",
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK}-FanoutFunction-EXAMPLE",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 11,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-06-16T09:31:00.000Z",
        "DDBStreamBatchInfo": {
            "shardId": "shardId-00000001781600000000-0a1b2c3d",
            "startSequenceNumber": "1100000000017454423009",
            "endSequenceNumber": "1100000000017454423009",
            "approximateArrivalOfFirstRecord": "2026-06-16T09:30:00Z",
            "approximateArrivalOfLastRecord": "2026-06-16T09:30:00Z",
            "batchSize": 1,
            "streamArn": STREAM_ARN,
        },
    }
    body = json.dumps(failure, separators=(",", ":"))
    message = {
        "MessageId": "5c0e9b9e-3f3c-4a8e-9a51-7d3c1a0f2b11",
        "ReceiptHandle": "AQEBz9Xf0mEXAMPLErecovery",
        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "Body": body,
        "Attributes": {
            "SenderId": "AROAEXAMPLELAMBDA:awslambda",
            "SentTimestamp": str(int(AT * 1000) + 60_000),
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": str(int(AT * 1000) + 60_012),
        },
    }
    failure_queue = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{STACK}-FanoutFailureQueue-EXAMPLE"
    return {"Records": [sqs_record(message, queue_arn=failure_queue, region=REGION)]}


def replay_schedule() -> dict[str, Any]:
    return scheduled_event(rule_arn=RULE_ARN, region=REGION, event_id="53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", at=AT)


def _api(resource_path: str, request_id: str, **path_parameters: str) -> ApiContext:
    return ApiContext(
        api_id=API_ID,
        stage=STAGE,
        resource_path=resource_path,
        path_parameters=path_parameters,
        request_id=request_id,
        request_time=AT,
        domain_name="127.0.0.1:3000",
    )


def _headers(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("Host", "127.0.0.1:3000"),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "*/*"),
        *extra,
        *forwarded_headers("127.0.0.1", 3000),
    ]


_AUTHORIZER = {
    "tenant_id": TENANT,
    "scopes": "integrations:read integrations:admin events:write registries:operator artifacts:pull",
    "key_id": "0123456789abcdef",
    "principalId": f"{TENANT}/0123456789abcdef",
    "integrationLatency": 12,
}


def authorizer_request() -> dict[str, Any]:
    request = HttpRequest("GET", "/v1/webhooks?limit=20", _headers(("Authorization", f"Bearer {EXAMPLE_KEY}")))
    return authorizer_request_event(
        request, _api("/v1/webhooks", "a1b2c3d4-0000-4000-8000-000000000001"), region=REGION
    )


def api_list_webhooks() -> dict[str, Any]:
    request = HttpRequest("GET", "/v1/webhooks?limit=20", _headers(("Authorization", f"Bearer {EXAMPLE_KEY}")))
    return proxy_event(request, _api("/v1/webhooks", "a1b2c3d4-0000-4000-8000-000000000002"), authorizer=_AUTHORIZER)


def api_create_webhook() -> dict[str, Any]:
    body = json.dumps(
        {"url": "https://receiver.example.com/hooks/meshanics", "events": ["rollout.*"], "description": "rollouts"}
    ).encode()
    request = HttpRequest(
        "POST",
        "/v1/webhooks",
        _headers(
            ("Authorization", f"Bearer {EXAMPLE_KEY}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ),
        body,
    )
    # The API's binary media type is */*: API Gateway passes every request body base64-encoded.
    return proxy_event(
        request, _api("/v1/webhooks", "a1b2c3d4-0000-4000-8000-000000000003"), authorizer=_AUTHORIZER, binary=True
    )


def api_connect_registry() -> dict[str, Any]:
    body = json.dumps(
        {
            "name": "acme",
            "upstream_url": "https://registry.example.com",
            "credentials": {"type": "token", "token": "EXAMPLE-UPSTREAM-TOKEN"},
        }
    ).encode()
    request = HttpRequest(
        "POST",
        "/v1/registries",
        _headers(
            ("Authorization", f"Bearer {EXAMPLE_KEY}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ),
        body,
    )
    return proxy_event(
        request, _api("/v1/registries", "a1b2c3d4-0000-4000-8000-000000000005"), authorizer=_AUTHORIZER, binary=True
    )


def registry_pull_manifest() -> dict[str, Any]:
    basic = base64.b64encode(f"token:{EXAMPLE_KEY}".encode()).decode()
    proxy = f"acme/edge-agent/manifests/{DIGEST}"
    request = HttpRequest(
        "GET",
        f"/v2/{proxy}",
        [
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "containerd/v2.0.0"),
            ("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"),
            ("Authorization", f"Basic {basic}"),
            *forwarded_headers("127.0.0.1", 3000),
        ],
    )
    return proxy_event(
        request, _api("/v2/{proxy+}", "a1b2c3d4-0000-4000-8000-000000000004", proxy=proxy), authorizer=_AUTHORIZER
    )


SAMPLES = {
    "fanout-stream-insert.json": fanout_stream_insert,
    "deliver-sqs.json": deliver_sqs,
    "fanout_recovery-sqs.json": fanout_recovery_sqs,
    "replay-schedule.json": replay_schedule,
    "authorizer-request.json": authorizer_request,
    "api-list-webhooks.json": api_list_webhooks,
    "api-create-webhook.json": api_create_webhook,
    "api-connect-registry.json": api_connect_registry,
    "registry-pull-manifest.json": registry_pull_manifest,
}


def render(event: Any) -> str:
    return json.dumps(event, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    target = Path((argv or sys.argv[1:] or [str(EVENTS_DIR)])[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, build in SAMPLES.items():
        (target / name).write_text(render(build()), encoding="utf-8")
        print(target / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

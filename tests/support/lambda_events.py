"""Lambda events and context for calling handlers in-process against moto, built by the local
platform's own builders (meshanics_local.events, .workers, .sqs), so they are what the functions get there."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import boto3

from meshanics_local.events import ApiContext, HttpRequest, dynamodb_stream_record, proxy_event, sqs_record
from meshanics_local.triggers import to_delete
from meshanics_local.workers import FunctionSpec, LambdaContext


def Context(function: str = "test-function", remaining_ms: int = 30_000) -> LambdaContext:
    """The context object of an invocation of `function` with `remaining_ms` left, as a local worker makes it."""
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
    spec = FunctionSpec(function, function, arn, Path(), "app.lambda_handler", 30.0, 512, {})
    return LambdaContext(spec, str(uuid.uuid4()), time.time() + remaining_ms / 1000)


class StreamReader:
    """Reads a table's stream like the Lambda poller: from the start, only new records each call."""

    def __init__(self, table: str) -> None:
        ddb = boto3.client("dynamodb")
        self.client = boto3.client("dynamodbstreams")
        self.arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.client.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def records(self) -> list[dict[str, Any]]:
        response = self.client.get_records(ShardIterator=self.iterator, Limit=1000)
        self.iterator = response["NextShardIterator"]
        return [dynamodb_stream_record(r, stream_arn=self.arn, region="us-east-1") for r in response["Records"]]

    def event(self) -> dict[str, Any]:
        """New INSERT records as the fan-out's event source delivers them (its filter keeps INSERTs)."""
        return {"Records": [r for r in self.records() if r["eventName"] == "INSERT"]}


def sqs_event(queue_url: str, *, max_messages: int = 10) -> dict[str, Any]:
    sqs = boto3.client("sqs")
    response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=max_messages, AttributeNames=["All"])
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"Records": [sqs_record(m, queue_arn=arn, region="us-east-1") for m in response.get("Messages", [])]}


def delete_succeeded(queue_url: str, event: dict[str, Any], response: dict[str, Any]) -> None:
    """What Lambda does after a partial batch response: delete every message not reported failed."""
    sqs = boto3.client("sqs")
    for record in to_delete(response, event["Records"], report_failures=True):
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])


def api_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    authorizer: dict[str, Any] | None = None,
    raw_body: bytes | None = None,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event as the API front sends it (binary media types */*)."""
    payload = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    if content_type and not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.insert(0, ("Content-Type", content_type))
    target = quote(path) + (f"?{urlencode(query)}" if query else "")
    api = ApiContext("local", "dev", path, request_id=str(uuid.uuid4()), request_time=time.time())
    return proxy_event(HttpRequest(method, target, pairs, payload), api, authorizer=authorizer or {}, binary=True)


def authorizer_context(tenant: str, scopes: list[str], key_id: str = "0123456789abcdef") -> dict[str, Any]:
    return {"tenant_id": tenant, "scopes": " ".join(scopes), "key_id": key_id, "principalId": f"{tenant}/{key_id}"}

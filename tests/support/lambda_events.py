"""Lambda events as AWS builds them, for calling handlers in-process against moto."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from meshanics_local.events import dynamodb_stream_record, sqs_record


@dataclass
class Context:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "test"
    remaining_ms: int = 30_000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


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


def sqs_event(queue_url: str, *, max_messages: int = 10, wait: int = 0) -> dict[str, Any]:
    sqs = boto3.client("sqs")
    response = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=max_messages, AttributeNames=["All"], WaitTimeSeconds=wait
    )
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"Records": [sqs_record(m, queue_arn=arn, region="us-east-1") for m in response.get("Messages", [])]}


def delete_succeeded(queue_url: str, event: dict[str, Any], response: dict[str, Any]) -> None:
    """What Lambda does after a partial batch response: delete every message not reported failed."""
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    sqs = boto3.client("sqs")
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])


def api_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    authorizer: dict[str, Any] | None = None,
    raw_body: bytes | None = None,
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event as API Gateway sends it (binary media types */*)."""
    payload = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "local",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "tests"},
            "authorizer": authorizer or {},
        },
        "body": base64.b64encode(payload).decode() if payload is not None else None,
        "isBase64Encoded": payload is not None,
    }


def authorizer_context(tenant: str, scopes: list[str], key_id: str = "0123456789abcdef") -> dict[str, Any]:
    return {"tenant_id": tenant, "scopes": " ".join(scopes), "key_id": key_id, "principalId": f"{tenant}/{key_id}"}

"""Run by test_faults.py in a child process, so that botocore's wrapped send never leaks into the tests.

    python tests/local/faults_child.py SCENARIO TABLE QUEUE_URL

Installs `awscalls` the way a function worker does (the plan comes from MESHANICS_FAULTS), runs one
scenario against AWS_ENDPOINT_URL and prints a JSON report: what each call answered, and the meter.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from meshanics.store import batch
from meshanics_local import awscalls

# botocore's standard retries, as the core configures them (meshanics.aws): 3 retries, 4 attempts.
CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
Report = dict[str, Any]


def without_pauses() -> None:
    """The same attempts without the waits between them (up to 7 s a call for throttles): the tests count
    attempts, not time. botocore's backoff, and the core's pauses before re-sending unprocessed items."""
    from botocore.retries.standard import ExponentialBackoff

    ExponentialBackoff.delay_amount = lambda self, context: 0.0  # type: ignore[method-assign]
    batch.BATCH_PAUSES = (0.0,) * len(batch.BATCH_PAUSES)  # type: ignore[assignment]  # as many re-sends


def outcome(call: Callable[[], Any]) -> Any:
    """The call's outcome: "ok", or the ClientError botocore raised once its retries were spent."""
    try:
        call()
    except ClientError as error:
        return {
            "code": error.response["Error"]["Code"],
            "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
            "retries": error.response["ResponseMetadata"].get("RetryAttempts"),
        }
    return "ok"


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def put(pk: str, sk: str) -> dict[str, Any]:
    return {"PutRequest": {"Item": key(pk, sk) | {"value": {"S": f"{pk}/{sk}"}}}}


def meter(dynamodb: Any, sqs: Any, table: str, queue_url: str) -> Report:
    """One of each metered call, without faults."""
    dynamodb.batch_write_item(RequestItems={table: [put("batch", str(i)) for i in range(3)]})
    dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": key("transaction", str(i))}} for i in range(2)]
    )
    dynamodb.put_item(TableName=table, Item=key("single", "0"))
    dynamodb.get_item(TableName=table, Key=key("single", "0"))
    dynamodb.batch_get_item(RequestItems={table: {"Keys": [key("batch", str(i)) for i in range(3)]}})
    dynamodb.query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "batch"}}
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody="metered")
    return {}


def errors(dynamodb: Any, sqs: Any, table: str, queue_url: str) -> Report:
    return {
        "send_message": outcome(lambda: sqs.send_message(QueueUrl=queue_url, MessageBody="lost")),
        "put_item": outcome(lambda: dynamodb.put_item(TableName=table, Item=key("lost", "0"))),
        "batch_write_item": outcome(
            lambda: dynamodb.batch_write_item(RequestItems={table: [put("lost", str(i)) for i in range(1, 3)]})
        ),
    }


def ambiguous(dynamodb: Any, sqs: Any, table: str, queue_url: str) -> Report:
    return {"send_message": outcome(lambda: sqs.send_message(QueueUrl=queue_url, MessageBody="sent, answer lost"))}


def unprocessed(dynamodb: Any, sqs: Any, table: str, queue_url: str) -> Report:
    """The core's batch helpers (their retry loop) under unprocessed items; the table holds rows "read"/000-059."""
    report: Report = {}
    try:
        batch.batch_write(dynamodb, table, [put("written", f"{i:03d}") for i in range(60)])
        report["batch_write"] = "ok"
    except batch.StoreThrottled:
        report["batch_write"] = "throttled"
    try:
        found = batch.batch_get(dynamodb, table, [key("read", f"{i:03d}") for i in range(60)])
        report["batch_get"] = sorted(sk for _, sk in found)
    except batch.StoreThrottled:
        report["batch_get"] = "throttled"
    return report


def raw_unprocessed(dynamodb: Any, sqs: Any, table: str, queue_url: str) -> Report:
    """A plain BatchWriteItem: which items the answer reports unprocessed."""
    answer = dynamodb.batch_write_item(RequestItems={table: [put("raw", f"{i:03d}") for i in range(25)]})
    left = answer.get("UnprocessedItems", {}).get(table, [])
    return {"unprocessed": [r["PutRequest"]["Item"]["sk"]["S"] for r in left]}


SCENARIOS: dict[str, Callable[[Any, Any, str, str], Report]] = {
    f.__name__: f for f in (meter, errors, ambiguous, unprocessed, raw_unprocessed)
}


def main(argv: list[str]) -> None:
    scenario, table, queue_url = argv[1:4]
    without_pauses()
    awscalls.install(awscalls.FaultPlan.from_env(os.environ.get(awscalls.ENV)))
    dynamodb = boto3.client("dynamodb", config=CONFIG)
    sqs = boto3.client("sqs", config=CONFIG)
    report = SCENARIOS[scenario](dynamodb, sqs, table, queue_url)
    report["meter"] = awscalls.METER.take()
    report["meter_after_take"] = awscalls.METER.take()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv)

"""AWS API calls per delivered event per endpoint, fan-out and delivery together.

The fan-out and delivery handlers run on the events Lambda would hand them (stream batches of up
to 100 records, SQS batches of 10) against the real store in moto; every AWS call they make is
counted. Receiving from the stream and the queue is Lambda's own work and is not counted.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import botocore.client

from bench.support import Context, aws_resources, load_handler, receiver

SCENARIOS = ((1, 1), (10, 1), (1, 10), (100, 10))


@contextlib.contextmanager
def counting() -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]

    def counted(self: Any, operation: str, params: Any) -> Any:
        calls[operation] += 1
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[attr-defined]
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[attr-defined]


def _stream_events(stack: Any, tenant: str, *, after: int) -> list[dict[str, Any]]:
    """The tenant's new rollout records as stream batches of up to 100 (what the poller sends)."""
    from meshanics_local.events import dynamodb_stream_record

    streams = stack.client("dynamodbstreams")
    arn = stack.resources.get_att("AuditLogTable", "StreamArn")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records += page["Records"]
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
    mine = [
        dynamodb_stream_record(r, stream_arn=arn, region="us-east-1")
        for r in records
        if r["dynamodb"]["NewImage"]["tenant_id"]["S"] == tenant
        and r["dynamodb"]["NewImage"]["type"]["S"] == "rollout.created"
        and int(r["dynamodb"]["NewImage"]["sequence"]["N"]) > after
    ]
    return [{"Records": mine[i : i + 100]} for i in range(0, len(mine), 100)]


def _round(stack: Any, tenant: str, events: int, endpoints: int, first_sequence: int) -> tuple[int, Counter[str]]:
    """Write `events` events, fan them out and deliver them; (fan-out calls, delivery calls)."""
    from meshanics import services
    from meshanics.audit import EventInput
    from meshanics_local.events import sqs_record

    services.audit_log().append(
        tenant,
        [EventInput("rollout.created", f"rollout/r{i}", "bench", {"rollout_id": f"r{i}"}) for i in range(events)],
    )
    fanout, deliver = load_handler("fanout"), load_handler("deliver")
    sqs = stack.client("sqs")
    queue = services.delivery_queue().url
    arn = stack.resources.get_att("DeliveryQueue", "Arn")
    stream_batches = _stream_events(stack, tenant, after=first_sequence)
    with counting() as calls:
        for batch in stream_batches:
            response = fanout.lambda_handler(batch, Context())
            assert response["batchItemFailures"] == [], response
    fanout_calls = sum(calls.values())
    delivered = 0
    delivery_calls: Counter[str] = Counter()
    while delivered < events * endpoints:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        event = {"Records": [sqs_record(m, queue_arn=arn, region="us-east-1") for m in messages]}
        with counting() as calls:
            assert deliver.lambda_handler(event, Context())["batchItemFailures"] == []
        delivery_calls.update(calls)
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        delivered += len(messages)
    return fanout_calls, delivery_calls


def scenario(stack: Any, url: str, events: int, endpoints: int) -> list[dict[str, Any]]:
    """Two rounds: the first finds cold caches (KMS data keys), the second is the steady state."""
    from meshanics import services

    tenant = f"cost-{events}x{endpoints}"
    for _ in range(endpoints):
        services.webhooks().create(tenant, "bench", url=url, events=["rollout.*"], allow_private_network=True)
    rows = []
    for label in ("first (cold caches)", "steady state"):
        sequence = services.audit_log().current_sequence(tenant)
        fanout_calls, delivery_calls = _round(stack, tenant, events, endpoints, sequence)
        total = fanout_calls + sum(delivery_calls.values())
        per_delivery = total / (events * endpoints)
        rows.append(
            {
                "events x endpoints": f"{events} x {endpoints}",
                "round": label,
                "fan-out calls": fanout_calls,
                "delivery calls": sum(delivery_calls.values()),
                "calls per delivery": per_delivery,
                "target": 2,
                "ok": "yes" if per_delivery <= 2 else "NO",
                "delivery calls by type": ", ".join(f"{k} {v}" for k, v in sorted(delivery_calls.items())),
            }
        )
    return rows


def run() -> list[dict[str, Any]]:
    with aws_resources() as stack, receiver(0) as url:
        return [row for events, endpoints in SCENARIOS for row in scenario(stack, url, events, endpoints)]


if __name__ == "__main__":
    from bench.table import print_table

    print_table("Cost: AWS API calls per delivered event per endpoint (fan-out + delivery)", run())

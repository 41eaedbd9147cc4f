"""Fan-out throughput of one tenant against its audit shards: 1, 4 and 16.

A tenant's events go to the shard its subject picks (`AuditTable.partition`); the stream keeps each
partition key's records in order, so Lambda fans out one shard's records one batch after the other
and different shards side by side, each on its own function instance. The events are written by
`AuditLog.append` into the audit table (moto) and read back per shard as the stream hands them over
(DynamoDB JSON images, in batches of the trigger's BatchSize); the real fan-out function
(functions/fanout/app.py) is invoked on them, in two ways:

* a shard per instance (the figure): every batch is timed in one process, one after the other, and
  each shard's chain of batches takes the sum of its batches' times; the shards run side by side on
  Lambda, so the tenant's throughput is its events over the slowest shard's chain. This is the
  concurrency simulated: on Lambda each shard has an instance (and CPU) of its own.
* side by side on this machine: one process per shard, all at once, from the first invocation to
  the last. It stops growing once the processes want more CPU than the machine's cores.

SQS is the one service not emulated by moto here: moto would put its own CPU time (on the same
cores) in the path of every send. `SendMessageBatch` is answered inside botocore after a fixed
SQS_LATENCY_MS, as SQS answers inside a region; the request is still built, signed and its answer
parsed by botocore, so the fan-out's own CPU time is all there.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.support import SPAWN, CannedAws, Context, aws_resources, load_handler, median, pointed_at, quiet_child

SHARDS = (1, 4, 16)
BATCHES_PER_SHARD_AT_MOST = 2  # at 16 shards: every shard gets a few batches
EVENTS = 16 * 100 * BATCHES_PER_SHARD_AT_MOST
ENDPOINTS = 2  # endpoints subscribed to every event: two jobs per event
BATCH_SIZE = 100  # the stream trigger's BatchSize (template.yaml)
SQS_LATENCY_MS = 15  # one SendMessageBatch inside a region (the README's capacity arithmetic)
TENANT = "bench-fanout"
TITLE = "Fan-out throughput of one tenant against audit shards"
NOTE = (
    f"{EVENTS:,} events of one tenant (subjects spread over the shards by crc32), {ENDPOINTS} endpoints each, "
    f"through the fan-out function in the stream's batches of {BATCH_SIZE}; SendMessageBatch answered after "
    f"{SQS_LATENCY_MS} ms. A shard per instance: events over the slowest shard's chain of measured batch times "
    "(shards run side by side on Lambda, each on its own instance). Side by side: one process per shard at once "
    "on this machine, bounded by its cores."
)


def sqs_sends_answered(latency_s: float) -> None:
    """In this process: SendMessageBatch answered as SQS would, after `latency_s`."""

    def sent(request: dict[str, Any]) -> dict[str, Any]:
        return {
            "Successful": [
                {
                    "Id": e["Id"],
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": hashlib.md5(e["MessageBody"].encode()).hexdigest(),
                }
                for e in request["Entries"]
            ],
            "Failed": [],
        }

    canned = CannedAws().install()
    canned.latency = latency_s
    canned.answers["AmazonSQS.SendMessageBatch"] = sent


def _instance(env: dict[str, str], shards: list[list[dict[str, Any]]], results: Any, go: Any) -> None:
    """One Lambda instance of the fan-out function: each shard's batches in order, one after the
    other; reports each batch's wall time, per shard, and the CPU time used."""
    os.environ.clear()
    os.environ.update(env)
    quiet_child()
    sqs_sends_answered(SQS_LATENCY_MS / 1000)
    fanout = load_handler("fanout")  # the cold start happens before the clock starts
    results.put("ready")
    go.wait()
    cpu, first = time.process_time(), time.time()
    durations: list[list[float]] = []
    for batches in shards:
        durations.append([])
        for event in batches:
            started = time.perf_counter()
            response = fanout.lambda_handler(event, Context())
            durations[-1].append(time.perf_counter() - started)
            assert response["batchItemFailures"] == [], response
    events = sum(len(event["Records"]) for batches in shards for event in batches)
    results.put((events, time.process_time() - cpu, first, time.time(), durations))


def _stream_batches(stack: Any, shards: int) -> list[list[dict[str, Any]]]:
    """Write the tenant's events; per shard, its records as the stream hands them over, in batches."""
    from meshanics import services

    with pointed_at(stack, {"AUDIT_SHARDS": str(shards)}) as env:
        log = services.audit_log()
        tenant = f"{TENANT}-{shards}"
        for _ in range(ENDPOINTS):
            services.webhooks().create(
                tenant, "bench", url="http://127.0.0.1:9/hook", events=["device.*"], allow_private_network=True
            )
        # One event per append, as a single producer call writes it (several at once would be a
        # transaction, which moto answers by copying every table).
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: log.append(tenant, [_event(i)]), range(EVENTS)))
        client = stack.client("dynamodb")
        per_shard = []
        for partition in log.table.partitions(tenant):
            records, start = [], None
            while True:
                page = client.query(
                    TableName=env["AUDIT_TABLE"],
                    KeyConditionExpression="#p = :p",
                    ExpressionAttributeNames={"#p": "partition"},
                    ExpressionAttributeValues={":p": {"S": partition}},
                    Limit=BATCH_SIZE,
                    **({"ExclusiveStartKey": start} if start else {}),
                )
                records += [_stream_record(item) for item in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    break
            per_shard.append([{"Records": records[i : i + BATCH_SIZE]} for i in range(0, len(records), BATCH_SIZE)])
    return per_shard


def _event(index: int) -> Any:
    from meshanics.model import EventInput

    data = {"device_id": f"d-{index}", "group": "fleet"}
    return EventInput("device.enrolled", subject=f"device/d-{index}", actor="bench", data=data)


def _stream_record(item: dict[str, Any]) -> dict[str, Any]:
    sequence = item["sequence"]["N"]
    return {
        "eventID": sequence,
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {}, "NewImage": item, "SequenceNumber": sequence, "StreamViewType": "NEW_IMAGE"},
    }


def fan_out(env: dict[str, str], instances: list[list[list[dict[str, Any]]]]) -> list[Any]:
    """Run the instances (each a list of shards' batches) side by side; their reports."""
    results = SPAWN.Queue()
    go = SPAWN.Event()
    workers = [SPAWN.Process(target=_instance, args=(env, shards, results, go), daemon=True) for shards in instances]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            if results.get(timeout=180) != "ready":
                raise RuntimeError("a fan-out instance failed to start")
        go.set()
        return [results.get(timeout=600) for _ in workers]
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()


def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base_rate = None
    with aws_resources() as stack:
        for shards in SHARDS:
            per_shard = [b for b in _stream_batches(stack, shards) if b]
            written = sum(len(e["Records"]) for b in per_shard for e in b)  # with the endpoints' own events
            with pointed_at(stack, {"AUDIT_SHARDS": str(shards)}) as env:
                # Each shard as its own instance (as on Lambda): every batch timed in one process,
                # one at a time, so the shards do not compete for this machine's cores.
                ((events, cpu, _, _, durations),) = fan_out(env, [per_shard])
                # All shards side by side on this machine, one process each.
                side_by_side = fan_out(env, [[b] for b in per_shard])
            if events != written or sum(r[0] for r in side_by_side) != written:
                raise RuntimeError(f"{shards} shards: not every one of the {written} events was fanned out")
            rate = events / max(sum(d) for d in durations)  # the slowest shard's chain of batches
            base_rate = base_rate or rate
            wall = max(r[3] for r in side_by_side) - min(r[2] for r in side_by_side)
            rows.append(
                {
                    "audit shards": shards,
                    "events": events,
                    "largest shard": max(sum(len(e["Records"]) for e in b) for b in per_shard),
                    "ms per batch of 100 (p50)": median([d for shard in durations for d in shard]) * 1000,
                    "events/s, a shard per instance": rate,
                    "x 1 shard": rate / base_rate,
                    "CPU ms/event": cpu / events * 1000,
                    f"events/s, side by side on {os.cpu_count()} cores": events / wall,
                }
            )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

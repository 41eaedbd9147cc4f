"""Delivery throughput and CPU: a raw keep-alive loop (the floor), a naive sender, the real handler.

(a) raw: one keep-alive `http.client` connection, sequential POSTs of a signed-size body.
(b) naive: `requests.post` per delivery, sequential, a new connection each time.
(c) handler: the delivery function on SQS batches of 10 (concurrent POSTs over its shared pool),
    with its real store (DynamoDB, SQS and KMS in a moto server in another process). Only the
    handler invocations are timed; receiving and deleting messages is Lambda's poller's work.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from bench.support import Context, aws_resources, load_handler, receiver

BODY = json.dumps(
    {
        "specversion": "1.0",
        "type": "rollout.created",
        "occurred_at": "2026-06-16T09:30:00Z",
        "subject": "rollout/r-1",
        "actor": "user:alice",
        "sequence": 1,
        "idempotency_key": "1-0123456789abcdef0123",
        "data": {"rollout_id": "r-1", "name": "canary", "device_count": 250},
    },
    separators=(",", ":"),
).encode()
HEADERS = {"Content-Type": "application/json", "X-Meshanics-Signature": "t=1,v1=" + "0" * 64}


def raw_loop(url: str, n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for n sequential POSTs on one kept-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        conn.request("POST", parts.path, body=BODY, headers=HEADERS)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    result = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    return result


def naive_loop(url: str, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        response = requests.post(url, data=BODY, headers=HEADERS, timeout=10)
        assert response.status_code == 200
    return time.perf_counter() - wall, time.process_time() - cpu


def _prepare_batches(url: str, n: int) -> list[dict[str, Any]]:
    """An endpoint for the receiver, n pending delivery records (as fan-out leaves them), and their
    jobs as the SQS events Lambda's poller hands the function, 10 per batch."""
    import hashlib

    from meshanics import envelope, services
    from meshanics.deliveries import DeliveryJob

    endpoint, _ = services.webhooks().create(
        "bench", "bench", url=url, events=["rollout.*"], allow_private_network=True
    )
    data = {"rollout_id": "r-1", "name": "canary", "device_count": 250}
    jobs = []
    for sequence in range(1, n + 1):
        record = envelope.AuditRecord(
            "bench",
            sequence,
            "0123456789abcdef0123",
            "rollout.created",
            "2026-06-16T09:30:00Z",
            "rollout/r-1",
            "user:alice",
            data,
        )
        jobs.append(
            DeliveryJob("bench", endpoint.id, sequence, record.type, record.idempotency_key, envelope.serialize(record))
        )
    for start in range(0, n, 100):
        services.delivery_store().create_pending(jobs[start : start + 100])
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    records = [
        {
            "messageId": f"m-{job.sequence}",
            "receiptHandle": f"r-{job.sequence}",
            "body": job.to_message(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1",
                "SenderId": "bench",
                "ApproximateFirstReceiveTimestamp": "1",
            },
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(job.to_message().encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": "us-east-1",
        }
        for job in jobs
    ]
    return [{"Records": records[i : i + 10]} for i in range(0, n, 10)]


def _instance(env: dict[str, str], events: list[dict[str, Any]], results: Any, go: Any) -> None:
    """One Lambda instance of the delivery function invoked on its share of the batches."""
    import contextlib
    import io
    import os

    os.environ.update(env)
    deliver = load_handler("deliver")  # the cold start happens before the clock starts
    results.put("ready")
    go.wait()
    cpu, first = 0.0, time.time()
    for event in events:
        started = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):  # the EMF metrics lines Lambda would ship
            response = deliver.lambda_handler(event, Context())
        cpu += time.process_time() - started
        assert response["batchItemFailures"] == [], response
    results.put((sum(len(e["Records"]) for e in events), cpu, first, time.time()))


def handler_run(url: str, n: int, instances: int) -> tuple[float, float]:
    """(wall seconds from the first invocation to the last, handler CPU seconds) over `instances`.

    Lambda's poller (receive, delete) is not the function's work and not measured: the function is
    invoked with SQS events of its jobs, as Lambda would; its store is the real one in moto.
    """
    import multiprocessing
    import os

    batches = _prepare_batches(url, n)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    go = context.Event()
    env = dict(os.environ)
    shares = [batches[i::instances] for i in range(instances)]
    workers = [context.Process(target=_instance, args=(env, share, results, go)) for share in shares]
    for worker in workers:
        worker.start()
    assert all(results.get(timeout=120) == "ready" for _ in workers)
    go.set()
    reports = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    assert sum(r[0] for r in reports) == n, reports
    wall = max(r[3] for r in reports) - min(r[2] for r in reports)
    return wall, sum(r[1] for r in reports)


def run(counts: dict[int, int] | None = None) -> list[dict[str, Any]]:
    counts = counts or {0: 500, 50: 300}
    rows: list[dict[str, Any]] = []
    with aws_resources():
        for delay, n in counts.items():
            with receiver(delay) as url:
                raw_wall, raw_cpu = raw_loop(url, n)
                naive_wall, naive_cpu = naive_loop(url, n)
                one_wall, one_cpu = handler_run(url, n, instances=1)
                two_wall, two_cpu = handler_run(url, n, instances=2)
            naive_rate = n / naive_wall
            for name, wall, cpu in (
                ("(a) raw keep-alive http.client", raw_wall, raw_cpu),
                ("(b) naive requests.post", naive_wall, naive_cpu),
                ("(c) handler, batches of 10, 1 instance", one_wall, one_cpu),
                ("(c) handler, batches of 10, 2 instances", two_wall, two_cpu),
            ):
                rows.append(
                    {
                        "receiver delay": f"{delay} ms",
                        "sender": name,
                        "deliveries": n,
                        "deliveries/s": n / wall,
                        "x naive": (n / wall) / naive_rate,
                        "CPU ms/delivery": cpu / n * 1000,
                        "CPU over raw ms": (cpu - raw_cpu) / n * 1000,
                    }
                )
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table("Delivery: throughput and CPU per delivery", run())

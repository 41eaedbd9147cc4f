"""Delivery throughput at a receiver that answers after 50 ms: a naive sender vs the delivery function.

naive     `requests.post` per delivery, sequential, a new connection each time.
handler   the delivery function (functions/deliver/app.py) invoked with SQS events of 10 jobs, as
          Lambda's poller hands them over, with its real store: DynamoDB, SQS and KMS in a moto
          server (its own process). One instance, and several side by side (each its own process,
          as Lambda runs them). Every job is a first attempt (what fan-out sends): one BatchGetItem
          per batch, one PutItem per delivery. Each instance is warmed with one batch first (KMS data
          key cached, connections open), as a busy function's instances are; only the invocations
          are timed (receiving and deleting messages is the poller's work).
moto      what moto alone costs for one batch's store calls (one BatchGetItem, ten PutItem, made one
          after another from this process): the ceiling moto puts on one instance, whatever our code.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import requests

from bench.support import SPAWN, Context, aws_resources, jobs_for, load_handler, quiet_child, receiver, sqs_event

DELAY_MS = 50
NAIVE_DELIVERIES = 120
HANDLER_DELIVERIES = 600
INSTANCES = (1, 2, 4)
TARGET = 8.0
TENANT = "bench"
_sequences = itertools.count(1)

TITLE = "Delivery throughput at a 50 ms receiver: ours vs a naive sender"
NOTE = ""


def naive(url: str, n: int, body: bytes) -> float:
    """Seconds for `n` sequential `requests.post` (a new connection each)."""
    headers = {"Content-Type": "application/json", "X-Meshanics-Signature": "t=1,v1=" + "0" * 64}
    started = time.perf_counter()
    for _ in range(n):
        response = requests.post(url, data=body, headers=headers, timeout=10)
        assert response.status_code == 200
    return time.perf_counter() - started


def _instance(env: dict[str, str], warm: dict[str, Any], events: list[dict[str, Any]], results: Any, go: Any) -> None:
    """One Lambda instance of the delivery function, invoked on its share of the batches."""
    os.environ.clear()
    os.environ.update(env)
    quiet_child()
    deliver = load_handler("deliver")  # the cold start happens before the clock starts
    assert deliver.lambda_handler(warm, Context())["batchItemFailures"] == []
    results.put("ready")
    go.wait()
    cpu, first = time.process_time(), time.time()
    for event in events:
        response = deliver.lambda_handler(event, Context())
        assert response["batchItemFailures"] == [], response
    results.put((sum(len(e["Records"]) for e in events), time.process_time() - cpu, first, time.time()))


def handler_run(endpoint_id: str, n: int, instances: int) -> tuple[float, float]:
    """(wall seconds from the first invocation to the last, handler CPU seconds) over `instances`."""
    batches = []
    for _ in range(n // 10):
        batches.append(sqs_event(jobs_for(endpoint_id, TENANT, [next(_sequences) for _ in range(10)])))
    shares = [batches[i::instances] for i in range(instances)]
    results = SPAWN.Queue()
    go = SPAWN.Event()
    env = dict(os.environ)
    workers = []
    for share in shares:
        warm = sqs_event(jobs_for(endpoint_id, TENANT, [next(_sequences) for _ in range(10)]))
        workers.append(SPAWN.Process(target=_instance, args=(env, warm, share, results, go), daemon=True))
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            if results.get(timeout=180) != "ready":
                raise RuntimeError("a delivery instance failed to start")
        go.set()
        reports = [results.get(timeout=600) for _ in workers]
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    if sum(r[0] for r in reports) != len(batches) * 10:
        raise RuntimeError(f"deliveries went missing: {reports}")
    return max(r[3] for r in reports) - min(r[2] for r in reports), sum(r[1] for r in reports)


def moto_batch_seconds(endpoint_id: str, rounds: int = 20) -> float:
    """Seconds moto takes for one batch's store calls (one BatchGetItem, ten PutItem), sequentially."""
    from meshanics import services
    from meshanics.model import Attempt, AttemptResult

    store = services.delivery_store()
    best = float("inf")
    for _ in range(rounds):
        jobs = jobs_for(endpoint_id, TENANT, [next(_sequences) for _ in range(10)])
        results = [
            AttemptResult(job, Attempt(1, "2026-06-16T09:30:01.000Z", "delivered", 200, 51, None), "delivered")
            for job in jobs
        ]
        started = time.perf_counter()
        store.read_for(jobs)
        for result in results:
            store.record(result, None)
        best = min(best, time.perf_counter() - started)
    return best


def run() -> list[dict[str, Any]]:
    from meshanics import services

    rows: list[dict[str, Any]] = []
    with aws_resources(), receiver(DELAY_MS) as url:
        endpoint, _ = services.webhooks().create(
            TENANT, "bench", url=url, events=["rollout.*"], allow_private_network=True
        )
        body = jobs_for(endpoint.id, TENANT, [1])[0].body.encode()
        naive_rate = NAIVE_DELIVERIES / naive(url, NAIVE_DELIVERIES, body)
        rows.append(_row("naive: requests.post per delivery, sequential", NAIVE_DELIVERIES, naive_rate, naive_rate))
        for instances in INSTANCES:
            wall, cpu = handler_run(endpoint.id, HANDLER_DELIVERIES, instances)
            name = f"handler: SQS batches of 10, {instances} instance{'s' if instances > 1 else ''}"
            rows.append(_row(name, HANDLER_DELIVERIES, HANDLER_DELIVERIES / wall, naive_rate, cpu=cpu))
        moto = moto_batch_seconds(endpoint.id)
        rows.append(
            {
                **_row("moto alone: 1 BatchGetItem + 10 PutItem per batch", 10, 10 / moto, naive_rate),
                "target": f"{moto * 1000:.0f} ms per batch",
            }
        )
    return rows


def _row(sender: str, n: int, rate: float, naive_rate: float, *, cpu: float | None = None) -> dict[str, Any]:
    ratio = rate / naive_rate
    handler = sender.startswith("handler")
    return {
        "sender (receiver answers after 50 ms)": sender,
        "deliveries": n,
        "deliveries/s": rate,
        "x naive": ratio,
        "target": f">= {TARGET:g}x" if handler else "",
        "ok": ("ok" if ratio >= TARGET else "NO") if handler else "",
        "CPU ms/delivery": "" if cpu is None else round(cpu / n * 1000, 2),
    }


if __name__ == "__main__":
    from bench.table import print_table

    print_table("Delivery throughput at a 50 ms receiver", run())

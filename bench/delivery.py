"""Delivery throughput at a receiver that answers after 50 ms: a naive sender vs the delivery function.

naive     `requests.post` per delivery, one after another, a new connection each time.
ours      the delivery function (functions/deliver/app.py) invoked with SQS events of 10 jobs, as
          Lambda's poller hands them over: its Deliverer POSTs a batch's jobs side by side (the
          configured DELIVERY_CONCURRENCY) over kept-alive connections and records each. Every job
          is a first attempt (what fan-out sends): one BatchGetItem per batch, one PutItem per
          delivery. One instance, and two side by side (each its own process, as Lambda runs them).
          Each instance is warmed with one batch first (KMS data key cached, connections open), as
          a busy function's instances are; only the invocations are timed (receiving and deleting
          messages is the poller's work). Its DynamoDB is either moto (its own process, on the same
          cores: each call costs a few ms of CPU, one at a time) or answered inside botocore after
          a fixed DynamoDB-like latency, replaying moto's answers to the warm-up batch (requests are
          still built and signed and answers parsed, so our CPU time is all there).
moto      what moto alone takes for one batch's store calls (one BatchGetItem, ten PutItem, made one
          after another from this process).
The receiver is a real loopback HTTP server in its own process.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import requests

from bench.support import (
    SPAWN,
    CannedAws,
    Context,
    aws_resources,
    jobs_for,
    load_handler,
    quiet_child,
    receiver,
    sqs_event,
)

DELAY_MS = 50
NAIVE_DELIVERIES = 120
HANDLER_DELIVERIES = 600
# (instances side by side, DynamoDB latency when answered in-process; None: moto answers)
CASES: tuple[tuple[int, float | None], ...] = ((1, None), (1, 0.005), (2, 0.005))
BATCH_GET = "DynamoDB_20120810.BatchGetItem"
PUT = "DynamoDB_20120810.PutItem"
UPDATE = "DynamoDB_20120810.UpdateItem"
TARGET = 8.0
TENANT = "bench"
TITLE = f"Delivery throughput at a {DELAY_MS} ms receiver: ours vs a naive sender"
NOTE = (
    f"Receiver: a loopback HTTP server answering 200 after {DELAY_MS} ms. Ours: SQS batches of 10 first attempts, "
    "DELIVERY_CONCURRENCY 10 per instance; DynamoDB either moto on this machine's cores or answered in-process "
    "after a fixed latency (moto's own answers replayed). CPU ms/delivery: the function's own process."
)
_sequences = itertools.count(1)


def naive(url: str, n: int, body: bytes) -> float:
    """Seconds for `n` sequential `requests.post` (a new connection each)."""
    headers = {"Content-Type": "application/json", "X-Meshanics-Signature": "t=1,v1=" + "0" * 64}
    started = time.perf_counter()
    for _ in range(n):
        response = requests.post(url, data=body, headers=headers, timeout=10)
        assert response.status_code == 200
    return time.perf_counter() - started


def _instance(
    env: dict[str, str],
    warm: dict[str, Any],
    events: list[dict[str, Any]],
    store_latency: float | None,
    results: Any,
    go: Any,
) -> None:
    """One Lambda instance of the delivery function, invoked on its share of the batches. With
    `store_latency`, its DynamoDB calls are answered in this process after that many seconds (the
    warm-up batch's real answers from moto, replayed; every job is a first attempt)."""
    os.environ.clear()
    os.environ.update(env)
    quiet_child()
    canned = CannedAws(record=(BATCH_GET, UPDATE)).install()
    deliver = load_handler("deliver")  # the cold start happens before the clock starts
    assert deliver.lambda_handler(warm, Context())["batchItemFailures"] == []
    if store_latency is not None:
        endpoints = canned.recorded[BATCH_GET]  # the endpoint's item; no delivery item exists yet
        state = canned.recorded.get(UPDATE, {"Attributes": {}})
        canned.latency = store_latency
        canned.answers.update({BATCH_GET: lambda _: endpoints, PUT: lambda _: {}, UPDATE: lambda _: state})
    results.put("ready")
    go.wait()
    cpu, first = time.process_time(), time.time()
    for event in events:
        response = deliver.lambda_handler(event, Context())
        assert response["batchItemFailures"] == [], response
    results.put((sum(len(e["Records"]) for e in events), time.process_time() - cpu, first, time.time()))


def handler_run(endpoint_id: str, n: int, instances: int, store_latency: float | None) -> tuple[float, float]:
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
        args = (env, warm, share, store_latency, results, go)
        workers.append(SPAWN.Process(target=_instance, args=args, daemon=True))
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
        rows.append(_row("naive: requests.post per delivery, sequential", "", NAIVE_DELIVERIES, naive_rate, naive_rate))
        for instances, latency in CASES:
            wall, cpu = handler_run(endpoint.id, HANDLER_DELIVERIES, instances, latency)
            name = f"ours: delivery function, {instances} instance{'s' if instances > 1 else ''}"
            store = "moto, this machine" if latency is None else f"answered after {latency * 1000:g} ms"
            rows.append(_row(name, store, HANDLER_DELIVERIES, HANDLER_DELIVERIES / wall, naive_rate, cpu=cpu))
        moto = moto_batch_seconds(endpoint.id)
        rows.append(
            _row("moto alone: a batch's store calls, one after another", "moto", 10, 10 / moto, naive_rate)
            | {"target": f"{moto * 1000:.0f} ms per batch"}
        )
    return rows


def _row(
    sender: str, store: str, n: int, rate: float, naive_rate: float, *, cpu: float | None = None
) -> dict[str, Any]:
    ratio = rate / naive_rate
    ours = sender.startswith("ours")
    return {
        f"sender (receiver answers after {DELAY_MS} ms)": sender,
        "DynamoDB": store,
        "deliveries": n,
        "deliveries/s": rate,
        "x naive": ratio,
        "target": f">= {TARGET:g}x" if ours else "",
        "ok": ("ok" if ratio >= TARGET else "NO") if ours else "",
        "CPU ms/delivery": "" if cpu is None else round(cpu / n * 1000, 2),
    }


if __name__ == "__main__":
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

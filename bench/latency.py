"""Event to receipt through the whole local platform: the tenant API writes the event, the stream
poller hands it to the fan-out function, the queue poller hands its jobs to the delivery function,
which signs and POSTs them to a loopback receiver. The clock runs from the moment the client sends
`POST /v1/events` to the moment the receiver has the delivery.

idle   one event at a time to one endpoint, each after the previous one arrived and a pause
burst  BURST_EVENTS events written at once (BURST_WRITERS clients side by side, one event per
       request) to BURST_ENDPOINTS endpoints: every delivery's time from its event's request

The local platform is the one `make run` starts (moto in its own process, one worker process per
function instance, the template's triggers and defaults); only this benchmark's tenant uses it.
"""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.support import ArrivalReceiver, median, percentile, quiet

IDLE_EVENTS = 30
IDLE_PAUSE = 0.5
BURST_EVENTS = 200
BURST_ENDPOINTS = 5
BURST_WRITERS = 8
IDLE_P50_TARGET = 1.0
BURST_P99_TARGET = 5.0
TITLE = "Event to receipt on the idle local platform, and under a burst"
NOTE = (
    "From the client sending POST /v1/events to the receiver having the signed delivery, through the "
    "API, the audit stream, fan-out, the delivery queue and the delivery function (make run's platform)."
)


def run() -> list[dict[str, Any]]:
    from meshanics_local.stack import LocalPlatform

    quiet()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as state:
        stack = LocalPlatform(api_port=0, aws_port=0, state_dir=Path(state))
        with stack, ArrivalReceiver() as receiver, requests.Session() as session:
            assert stack.api_url is not None
            session.headers["Authorization"] = f"Bearer {stack.demo_key}"
            api = stack.api_url

            def post(path: str, body: dict[str, Any]) -> Any:
                response = session.post(f"{api}{path}", json=body, timeout=30)
                if response.status_code >= 300:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
                return response.json()

            def subscribe(path: str, events: list[str]) -> None:
                post(
                    "/v1/webhooks",
                    {"url": receiver.url(path), "events": events, "allow_private_network": True},
                )

            subscribe("/idle", ["device.status_changed"])
            for i in range(BURST_ENDPOINTS):
                subscribe(f"/burst/{i}", ["rollout.*"])
            rows = [_idle(post, receiver), _burst(api, stack.demo_key or "", receiver)]
    return rows


def _idle(post: Any, receiver: ArrivalReceiver) -> dict[str, Any]:
    latencies = []
    for i in range(IDLE_EVENTS + 1):
        sent = time.monotonic()
        answer = post(
            "/v1/events",
            {
                "type": "device.status_changed",
                "subject": f"device/d-{i}",
                "data": {"device_id": f"d-{i}", "status": "online"},
            },
        )
        sequence = int(answer["items"][0]["sequence"])
        if not receiver.wait_for_key(("/idle", sequence), timeout=30):
            raise RuntimeError(f"idle event {sequence} did not arrive within 30 s")
        if i:  # the first event meets the workers' first calls (connections, KMS data key)
            latencies.append(receiver.arrivals[("/idle", sequence)] - sent)
        time.sleep(IDLE_PAUSE)
    p50 = median(latencies)
    return _row("idle: 1 event at a time, 1 endpoint", len(latencies), latencies, "p50", p50, IDLE_P50_TARGET)


def _burst(api: str, key: str, receiver: ArrivalReceiver) -> dict[str, Any]:
    local = threading.local()
    sent: dict[int, float] = {}
    lock = threading.Lock()

    def write(index: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
        started = time.monotonic()
        response = session.post(
            f"{api}/v1/events",
            json={"type": "rollout.created", "subject": f"rollout/r-{index}", "data": {"rollout_id": f"r-{index}"}},
            timeout=60,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"/v1/events: {response.status_code} {response.text[:300]}")
        with lock:
            sent[int(response.json()["items"][0]["sequence"])] = started

    before = len(receiver.arrivals)
    with ThreadPoolExecutor(BURST_WRITERS) as pool:
        list(pool.map(write, range(BURST_EVENTS)))
    expected = BURST_EVENTS * BURST_ENDPOINTS
    if not receiver.wait_for(before + expected, timeout=120):
        raise RuntimeError(f"burst: {len(receiver.arrivals) - before} of {expected} deliveries arrived within 120 s")
    latencies = [
        receiver.arrivals[(f"/burst/{e}", sequence)] - started
        for sequence, started in sent.items()
        for e in range(BURST_ENDPOINTS)
    ]
    p99 = percentile(latencies, 0.99)
    name = f"burst: {BURST_EVENTS} events x {BURST_ENDPOINTS} endpoints"
    return _row(name, len(latencies), latencies, "p99", p99, BURST_P99_TARGET)


def _row(
    case: str, deliveries: int, latencies: list[float], measure: str, value: float, target: float
) -> dict[str, Any]:
    return {
        "case": case,
        "deliveries": deliveries,
        "p50 s": median(latencies),
        "p99 s": percentile(latencies, 0.99),
        "max s": max(latencies),
        "target": f"{measure} < {target:g} s",
        "ok": "ok" if value < target else "NO",
    }


if __name__ == "__main__":
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

"""Tenant API latency through the local platform (HTTP front, authorizer and API function workers):
p50 and p99 of creating an endpoint, listing endpoints and a synchronous test delivery."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.support import receiver

ROUNDS = 60
TITLE = "Tenant API latency through the local platform"
NOTE = (
    f"{ROUNDS} requests per route, one at a time, through the HTTP front, authorizer and API function workers. "
    "A create answers after SubscriptionCacheMs (1 s by default), so events written after it see the endpoint."
)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


def run(rounds: int = ROUNDS) -> list[dict[str, Any]]:
    from meshanics_local.stack import LocalPlatform

    rows = []
    with tempfile.TemporaryDirectory() as state, receiver(0) as url:
        overrides = {"MaxEndpointsPerTenant": str(rounds + 10)}
        with LocalPlatform(api_port=0, aws_port=0, state_dir=Path(state), parameter_overrides=overrides) as stack:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {stack.demo_key}"
            api = stack.api_url

            def timed(method: str, path: str, **kwargs: Any) -> tuple[float, Any]:
                started = time.perf_counter()
                response = session.request(method, f"{api}{path}", timeout=30, **kwargs)
                elapsed = time.perf_counter() - started
                assert response.status_code < 300, (path, response.status_code, response.text)
                return elapsed, response.json()

            timed("GET", "/v1/event-types")  # warm the workers (their cold start is measured elsewhere)
            created, listed, tested = [], [], []
            ids = []
            for i in range(rounds):
                body = {"url": f"{url}/{i}", "events": ["rollout.*"], "allow_private_network": True}
                elapsed, endpoint = timed("POST", "/v1/webhooks", json=body)
                created.append(elapsed)
                ids.append(endpoint["id"])
            for _ in range(rounds):
                listed.append(timed("GET", "/v1/webhooks", params={"limit": "20"})[0])
            for webhook_id in ids:
                elapsed, result = timed("POST", f"/v1/webhooks/{webhook_id}/test", json={})
                assert result["status"] == "delivered", result
                tested.append(elapsed)
            for name, samples in (
                ("POST /v1/webhooks (create)", created),
                ("GET /v1/webhooks (list, 20)", listed),
                ("POST /v1/webhooks/{id}/test", tested),
            ):
                p50, p99 = _percentiles(samples)
                rows.append({"route": name, "requests": len(samples), "p50 ms": p50, "p99 ms": p99})
    return rows


if __name__ == "__main__":
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

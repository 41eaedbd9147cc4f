"""Registry pull: a 50 MB blob directly from the upstream vs through the facade, cold and warm.

The upstream is the CNCF distribution registry (Debian's docker-registry) on loopback with htpasswd
auth; the facade runs on the local platform (API front, authorizer, the registry function, moto in
server mode as S3). Every path is timed as a client pulls: request, follow the answer (the facade
answers 50 MB with a 307 to a presigned S3 URL), read every byte and check its sha256.

    cold  the facade fetches from the upstream, hashes while staging a multipart upload to S3,
          completes it once the digest matched, and redirects (the cache object is deleted first)
    warm  the facade finds the digest in the cache and redirects at once
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import urllib3

SIZE = 50 * 1024 * 1024
RUNS = 5
TARGETS = {"warm": 0.5, "cold": 0.3}
TITLE = f"Registry pull: {SIZE // (1024 * 1024)} MiB blob, sha256 verified by the client"
NOTE = "Median of 5 pulls per path; moto's S3 (same machine) stores the cold path's upload."


def _pull(http: urllib3.PoolManager, url: str, headers: dict[str, str], digest: str) -> tuple[float, float]:
    """Seconds to GET `url` (following one redirect, without credentials) and verify every byte,
    and seconds until the first answer (the facade's own work: for a cold pull, fetch + verify + cache)."""
    started = time.perf_counter()
    response = http.request("GET", url, headers=headers, preload_content=False, redirect=False)
    answered = time.perf_counter() - started
    if response.status in (301, 302, 303, 307, 308):
        location = response.headers["Location"]
        response.drain_conn()
        response.release_conn()
        response = http.request("GET", location, preload_content=False, redirect=False)
    if response.status != 200:
        raise RuntimeError(f"GET {url} answered {response.status}: {response.read()[:300]!r}")
    hasher = hashlib.sha256()
    size = 0
    for chunk in response.stream(1024 * 1024):
        hasher.update(chunk)
        size += len(chunk)
    response.release_conn()
    elapsed = time.perf_counter() - started
    if f"sha256:{hasher.hexdigest()}" != digest or size != SIZE:
        raise RuntimeError("the pulled bytes do not match the digest")
    return elapsed, answered


def _row(path: str, samples: list[tuple[float, float]], direct: float | None, target: float | None) -> dict[str, Any]:
    times = [total for total, _ in samples]
    median = statistics.median(times)
    rate = SIZE / 1e6 / median
    ratio = None if direct is None else (SIZE / 1e6 / median) / direct
    return {
        "path": path,
        "runs": len(times),
        "median s": median,
        "best s": min(times),
        "first answer s": statistics.median(answered for _, answered in samples),
        "MB/s (median)": rate,
        "x direct": 1.0 if direct is None else ratio,
        "target": "" if target is None else f">= {target}x",
        "met": "" if target is None or ratio is None else ("yes" if ratio >= target else "NO"),
    }


def run(runs: int = RUNS) -> list[dict[str, Any]]:
    from meshanics.store.apikeys import ApiKeyStore
    from meshanics_local.stack import LocalPlatform
    from tests.registry.upstreams import PASSWORD, USER, RegistryProcess, basic, htpasswd_auth, push_image

    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        work = Path(tmp)
        storage = work / "storage"
        storage.mkdir()
        upstream = RegistryProcess(work, storage, htpasswd_auth(work)).start()
        try:
            layer = os.urandom(SIZE)
            image = push_image(upstream.url, "bench/big", [layer])
            digest = f"sha256:{hashlib.sha256(layer).hexdigest()}"
            del layer
            http = urllib3.PoolManager(maxsize=4, timeout=urllib3.Timeout(connect=5, read=60), retries=False)

            direct_url = f"{upstream.url}/v2/bench/big/blobs/{digest}"
            _pull(http, direct_url, {"Authorization": basic()}, digest)  # warm the page cache and pools
            direct = [_pull(http, direct_url, {"Authorization": basic()}, digest) for _ in range(runs)]

            with LocalPlatform(api_port=0, aws_port=0, state_dir=work / "stack", pool_sizes={"*": 1}) as stack:
                api = stack.api_url
                operator = {"Authorization": f"Bearer {stack.demo_key}"}
                body = {
                    "name": "bench",
                    "upstream_url": upstream.url,
                    "credentials": {"type": "basic", "username": USER, "password": PASSWORD},
                    "allow_private_network": True,
                }
                created = json.loads(
                    http.request("POST", f"{api}/v1/registries", body=json.dumps(body), headers=operator).data
                )
                http.request("POST", f"{api}/v1/registries/{created['id']}/approve", headers=operator)
                table = stack.environment("RegistryFunction")["INTEGRATIONS_TABLE"]
                dynamodb = stack.client("dynamodb")
                device_key, _ = ApiKeyStore(lambda: dynamodb, table).create("demo", ["artifacts:pull"])
                device = {"Authorization": f"Bearer {device_key}"}
                manifest = http.request("GET", f"{api}/v2/bench/bench/big/manifests/{image.digest}", headers=device)
                if manifest.status != 200:
                    raise RuntimeError(f"manifest pull failed: {manifest.status} {manifest.data[:300]!r}")

                s3 = stack.client("s3")
                bucket = stack.physical("ArtifactCacheBucket")
                cached_key = f"tenants/demo/sha256/{digest.removeprefix('sha256:')}"
                facade_url = f"{api}/v2/bench/bench/big/blobs/{digest}"
                cold: list[tuple[float, float]] = []
                for _ in range(runs):
                    s3.delete_object(Bucket=bucket, Key=cached_key)
                    cold.append(_pull(http, facade_url, device, digest))
                warm = [_pull(http, facade_url, device, digest) for _ in range(runs)]
        finally:
            upstream.stop()

    direct_rate = SIZE / 1e6 / statistics.median(total for total, _ in direct)
    return [
        _row("direct from the upstream", direct, None, None),
        _row("facade cold (fetch + verify + cache)", cold, direct_rate, TARGETS["cold"]),
        _row("facade warm (cache hit)", warm, direct_rate, TARGETS["warm"]),
    ]


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.table import print_table

    print_table(TITLE, run(), note=NOTE)

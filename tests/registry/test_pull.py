"""The pull facade against a real registry: by digest only, verified, cached, authorized per tenant."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import boto3
import pytest
import requests

from meshanics import services
from meshanics.registry import facade as facade_module
from meshanics.registry import oci
from tests.registry.conftest import OPERATOR, READER, Answer, Door, Upstreams
from tests.registry.upstreams import hanging_server, push_image, tampering_proxy

pytestmark = pytest.mark.registry


def cached_keys(aws: dict[str, str]) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=aws["ARTIFACT_CACHE_BUCKET"])
    return [o["Key"] for o in listed.get("Contents", [])]


def audit_types(tenant: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.type, dict(r.data)) for r in services.audit_table().of_tenant(tenant)]


def pull_all(door: Door, image: Any, name: str = "corp") -> None:
    """Manifest then every blob, as a client copying the image would."""
    got = door.pull("GET", f"{name}/{image.repository}/manifests/{image.digest}")
    assert got.status == 200, got.json
    assert got.body == image.body
    for digest, data in image.blobs.items():
        blob = door.pull("GET", f"{name}/{image.repository}/blobs/{digest}")
        assert blob.status == 200, blob.json
        assert blob.body == data


def assert_oci_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:500])
    assert answer.error_code == code, answer.json
    assert answer.headers.get("Docker-Distribution-API-Version") == "registry/2.0"
    assert answer.headers.get("Content-Type", "").startswith("application/json")


# -- the version check and the device's key -------------------------------------------------------
def test_version_check(door: Door) -> None:
    for path in ("/v2", "/v2/"):
        answer = door.call("GET", path)
        assert (answer.status, answer.json) == (200, {})
        assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    head = door.call("HEAD", "/v2/")
    assert (head.status, head.body) == (200, b"")
    assert_oci_error(door.call("GET", "/v2/", scopes=READER), 403, "DENIED")
    assert_oci_error(door.call("POST", "/v2/"), 405, "UNSUPPORTED")


def test_without_the_pull_scope_nothing_is_served(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url)
    image = upstreams.images["web"]
    for scopes in (OPERATOR, READER, ["integrations:admin"]):
        answer = door.pull("GET", f"corp/apps/web/manifests/{image.digest}", scopes=scopes)
        assert_oci_error(answer, 403, "DENIED")
        assert "artifacts:pull" in answer.json["errors"][0]["message"]


# -- manifests -------------------------------------------------------------------------------------
def test_oci_manifest_by_digest_with_the_spec_headers(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url)
    image = upstreams.images["web"]
    got = door.pull("GET", f"corp/apps/web/manifests/{image.digest}", headers={"Accept": oci.OCI_MANIFEST})
    assert got.status == 200
    assert got.body == image.body
    assert got.headers["Content-Type"] == oci.OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == image.digest
    assert got.headers["Content-Length"] == str(len(image.body))
    assert got.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    head = door.pull("HEAD", f"corp/apps/web/manifests/{image.digest}")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["Content-Length"] == str(len(image.body))
    assert head.headers["Docker-Content-Digest"] == image.digest


def test_docker_manifest_index_and_child_manifests(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url)
    docker, index = upstreams.images["web-docker"], upstreams.images["web-index"]
    got = door.pull("GET", f"corp/apps/web/manifests/{docker.digest}")
    assert (got.status, got.headers["Content-Type"], got.body) == (200, oci.DOCKER_MANIFEST, docker.body)
    listed = door.pull("GET", f"corp/apps/web/manifests/{index.digest}")
    assert (listed.status, listed.headers["Content-Type"], listed.body) == (200, oci.OCI_INDEX, index.body)
    # An index authorizes its child manifests, whose pull then authorizes their blobs.
    pull_all(door, upstreams.images["web"])


def test_accept_list_is_honoured(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url)
    image = upstreams.images["web"]
    docker_only = f"{oci.DOCKER_MANIFEST}, {oci.DOCKER_MANIFEST_LIST}"
    refused = door.pull("GET", f"corp/apps/web/manifests/{image.digest}", headers={"Accept": docker_only})
    assert_oci_error(refused, 404, "MANIFEST_UNKNOWN")
    assert oci.OCI_MANIFEST in refused.json["errors"][0]["message"]
    # Accept sent as several header lines (as Go clients do) reaches the door as multi-value headers;
    # API Gateway's single-value `headers` then holds only the last line.
    lines = [oci.OCI_MANIFEST, oci.DOCKER_MANIFEST]
    assert door.pull("GET", f"corp/apps/web/manifests/{image.digest}", accept=lines).status == 200
    # Served from the cache now, still negotiated.
    again = door.pull("GET", f"corp/apps/web/manifests/{image.digest}", headers={"Accept": docker_only})
    assert_oci_error(again, 404, "MANIFEST_UNKNOWN")


def test_tags_pushes_deletes_catalog_and_tag_lists_are_refused(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url)
    image = upstreams.images["web"]
    tag = door.pull("GET", "corp/apps/web/manifests/latest")
    assert_oci_error(tag, 404, "MANIFEST_UNKNOWN")
    assert "by digest only" in tag.json["errors"][0]["message"]
    for method, path in (
        ("PUT", f"corp/apps/web/manifests/{image.digest}"),
        ("DELETE", f"corp/apps/web/manifests/{image.digest}"),
        ("POST", "corp/apps/web/blobs/uploads/"),
        ("PATCH", "corp/apps/web/blobs/uploads/abc"),
        ("GET", "_catalog"),
        ("GET", "corp/apps/web/tags/list"),
    ):
        answer = door.pull(method, path)
        assert_oci_error(answer, 405, "UNSUPPORTED")
        assert answer.headers["Allow"] == "GET, HEAD"


# -- which registries a device may pull from -------------------------------------------------------
def test_unapproved_registry_is_refused(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url, approve=False)
    image = upstreams.images["web"]
    answer = door.pull("GET", f"corp/apps/web/manifests/{image.digest}")
    assert_oci_error(answer, 403, "DENIED")
    assert "pending operator approval" in answer.json["errors"][0]["message"]


def test_another_tenants_registry_is_unknown(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url, tenant="acme")
    image = upstreams.images["web"]
    assert door.pull("GET", f"corp/apps/web/manifests/{image.digest}", tenant="acme").status == 200
    for path in (f"corp/apps/web/manifests/{image.digest}", f"corp/apps/web/blobs/{next(iter(image.blobs))}"):
        assert_oci_error(door.pull("GET", path, tenant="globex"), 404, "NAME_UNKNOWN")
    assert_oci_error(door.pull("GET", f"nope/apps/web/manifests/{image.digest}"), 404, "NAME_UNKNOWN")


def test_blob_needs_a_manifest_pulled_by_the_same_tenant_and_repository(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url, tenant="acme")
    door.connect(upstreams.basic.url, tenant="globex")
    web, other = upstreams.images["web"], upstreams.images["other"]
    layer = next(iter(web.blobs))
    # The upstream has the blob, but no manifest referencing it was pulled: a digest is no key.
    assert_oci_error(door.pull("GET", f"corp/apps/web/blobs/{layer}"), 404, "BLOB_UNKNOWN")
    assert_oci_error(door.pull("HEAD", f"corp/apps/web/blobs/{layer}"), 404, "BLOB_UNKNOWN")
    pull_all(door, web)
    # Not for another repository of the same connection, nor for another tenant.
    assert_oci_error(door.pull("GET", f"corp/other/thing/blobs/{layer}"), 404, "BLOB_UNKNOWN")
    assert_oci_error(door.pull("GET", f"corp/apps/web/blobs/{layer}", tenant="globex"), 404, "BLOB_UNKNOWN")
    pull_all(door, other)
    head = door.pull("HEAD", f"corp/apps/web/blobs/{layer}")
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", str(len(web.blobs[layer])))


# -- upstream authentication -------------------------------------------------------------------------
def test_wrong_upstream_credentials(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.basic.url, credentials={"type": "basic", "username": "puller", "password": "wrong"})
    answer = door.pull("GET", f"corp/apps/web/manifests/{upstreams.images['web'].digest}")
    assert_oci_error(answer, 403, "UNAUTHORIZED")
    message = answer.json["errors"][0]["message"]
    assert "upstream registry" in message and "credentials" in message
    assert "WWW-Authenticate" not in answer.headers  # the device's own key was fine


def test_bearer_token_flow_through_the_facade(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.token.url)
    before = len(upstreams.tokens.requests)
    pull_all(door, upstreams.images["web"])
    pull_all(door, upstreams.images["other"])
    issued = upstreams.tokens.requests[before:]
    # One token per repository scope, reused for the manifest and every blob.
    assert sorted(r["scope"] for r in issued) == ["repository:apps/web:pull", "repository:other/thing:pull"]
    assert all(r["ok"] and r["method"] == "GET" for r in issued)


def test_token_credentials_are_exchanged_as_a_refresh_token(door: Door, upstreams: Upstreams) -> None:
    from tests.registry.upstreams import REFRESH_TOKEN

    door.connect(upstreams.token.url, credentials={"type": "token", "token": REFRESH_TOKEN})
    before = len(upstreams.tokens.requests)
    pull_all(door, upstreams.images["web"])
    issued = upstreams.tokens.requests[before:]
    assert [(r["method"], r["ok"]) for r in issued] == [("POST", True)]


def test_wrong_credentials_at_the_token_service(door: Door, upstreams: Upstreams) -> None:
    door.connect(upstreams.token.url, credentials={"type": "basic", "username": "puller", "password": "nope"})
    answer = door.pull("GET", f"corp/apps/web/manifests/{upstreams.images['web'].digest}")
    assert_oci_error(answer, 403, "UNAUTHORIZED")
    assert "token service" in answer.json["errors"][0]["message"]


# -- verification ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flip", ["manifests", "blobs"])
def test_tampering_upstream_is_detected_not_served_not_cached(
    door: Door, upstreams: Upstreams, aws: dict[str, str], flip: str
) -> None:
    proxy = tampering_proxy(upstreams.basic.url, flip=flip)
    try:
        registry = door.connect(proxy.url)
        image = upstreams.images["web"]
        manifest = door.pull("GET", f"corp/apps/web/manifests/{image.digest}")
        if flip == "manifests":
            assert_oci_error(manifest, 502, "DIGEST_INVALID")
            expected, kind = image.digest, "manifest"
        else:
            assert manifest.status == 200
            expected, kind = next(iter(image.blobs)), "blob"
            assert_oci_error(door.pull("GET", f"corp/apps/web/blobs/{expected}"), 502, "DIGEST_INVALID")
        cached = cached_keys(aws)
        assert oci.digest_hex(expected) not in "".join(cached)
        (mismatch,) = [data for kind_, data in audit_types("acme") if kind_ == "registry.digest_mismatch"]
        assert mismatch["registry_id"] == registry["id"]
        assert (mismatch["expected_digest"], mismatch["kind"], mismatch["repository"]) == (expected, kind, "apps/web")
        assert mismatch["actual_digest"].startswith("sha256:") and mismatch["actual_digest"] != expected
    finally:
        proxy.close()


@pytest.mark.parametrize("staged", [False, True], ids=["spooled", "staged"])
def test_tampered_large_blob_leaves_no_object_and_no_upload(
    door: Door, upstreams: Upstreams, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch, staged: bool
) -> None:
    door.configure(INLINE_BLOB_MAX_BYTES="65536")
    if staged:
        monkeypatch.setattr(facade_module, "SINGLE_PUT_MAX", 100_000)
    proxy = tampering_proxy(upstreams.basic.url, flip="blobs")
    try:
        door.connect(proxy.url)
        big = upstreams.images["big"]
        assert door.pull("GET", f"corp/apps/big/manifests/{big.digest}").status == 200
        layer = max(big.blobs, key=lambda d: len(big.blobs[d]))
        assert_oci_error(door.pull("GET", f"corp/apps/big/blobs/{layer}"), 502, "DIGEST_INVALID")
        s3 = boto3.client("s3")
        assert oci.digest_hex(layer) not in "".join(cached_keys(aws))
        assert s3.list_multipart_uploads(Bucket=aws["ARTIFACT_CACHE_BUCKET"]).get("Uploads", []) == []
    finally:
        proxy.close()


# -- the cache -------------------------------------------------------------------------------------
def test_cache_hit_is_served_with_the_upstream_stopped(door: Door, upstreams: Upstreams) -> None:
    spare = upstreams.spare()
    try:
        door.connect(spare.url)
        image = upstreams.images["web"]
        pull_all(door, image)
    finally:
        spare.stop()
    pull_all(door, image)  # manifest and blobs, all from the cache
    head = door.pull("HEAD", f"corp/apps/web/manifests/{image.digest}")
    assert head.status == 200
    # Anything not cached needs the upstream: a clear error, at once.
    started = time.monotonic()
    answer = door.pull("GET", f"corp/apps/web/manifests/{upstreams.images['web-docker'].digest}")
    assert_oci_error(answer, 502, "UNAVAILABLE")
    assert "unreachable" in answer.json["errors"][0]["message"]
    assert time.monotonic() - started < 5


def test_large_blob_is_served_through_a_presigned_redirect(door: Door, upstreams: Upstreams) -> None:
    door.configure(INLINE_BLOB_MAX_BYTES="65536", PRESIGNED_URL_TTL_SECONDS="120")
    door.connect(upstreams.basic.url)
    big = upstreams.images["big"]
    assert door.pull("GET", f"corp/apps/big/manifests/{big.digest}").status == 200
    layer = max(big.blobs, key=lambda d: len(big.blobs[d]))
    for _ in range(2):  # cold (fill, then redirect), then warm (straight from the cache)
        answer = door.pull("GET", f"corp/apps/big/blobs/{layer}")
        assert answer.status == 307, answer.body[:300]
        assert answer.headers["Docker-Content-Digest"] == layer
        location = answer.headers["Location"]
        assert "X-Amz-Expires=120" in location and "X-Amz-Signature=" in location
        fetched = requests.get(location, timeout=10)
        assert fetched.status_code == 200
        assert fetched.content == big.blobs[layer]
    head = door.pull("HEAD", f"corp/apps/big/blobs/{layer}")
    assert (head.status, head.headers["Content-Length"]) == (200, str(len(big.blobs[layer])))
    # Small blobs of the same image stay inline.
    small = min(big.blobs, key=lambda d: len(big.blobs[d]))
    assert door.pull("GET", f"corp/apps/big/blobs/{small}").body == big.blobs[small]


def test_blobs_above_the_single_put_size_are_staged_in_parts(
    door: Door, upstreams: Upstreams, aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    door.configure(INLINE_BLOB_MAX_BYTES="65536")
    monkeypatch.setattr(facade_module, "SINGLE_PUT_MAX", 1024 * 1024)
    layer_bytes = os.urandom(11 * 1024 * 1024 + 5)
    image = push_image(upstreams.basic.url, "apps/huge", [layer_bytes])
    door.connect(upstreams.basic.url)
    services.pull_facade()._cache.part_size = 5 * 1024 * 1024  # S3's smallest part: three parts here
    assert door.pull("GET", f"corp/apps/huge/manifests/{image.digest}").status == 200
    layer = oci.sha256_digest(layer_bytes)
    answer = door.pull("GET", f"corp/apps/huge/blobs/{layer}")
    assert answer.status == 307, answer.body[:300]
    assert requests.get(answer.headers["Location"], timeout=30).content == layer_bytes
    s3 = boto3.client("s3")
    assert s3.list_multipart_uploads(Bucket=aws["ARTIFACT_CACHE_BUCKET"]).get("Uploads", []) == []
    stored = s3.head_object(Bucket=aws["ARTIFACT_CACHE_BUCKET"], Key=f"tenants/acme/sha256/{oci.digest_hex(layer)}")
    assert stored["ContentLength"] == len(layer_bytes)


def test_concurrent_fill_waits_for_the_filler(door: Door, upstreams: Upstreams, aws: dict[str, str]) -> None:
    spare = upstreams.spare()
    image = upstreams.images["web"]
    layer = max(image.blobs, key=lambda d: len(image.blobs[d]))
    try:
        door.connect(spare.url)
        assert door.pull("GET", f"corp/apps/web/manifests/{image.digest}").status == 200
    finally:
        spare.stop()
    facade = services.pull_facade()
    leases = facade._leases
    owner = leases.acquire("acme", layer, seconds=60)
    assert owner is not None
    assert leases.acquire("acme", layer, seconds=60) is None  # one filler at a time

    def finish_fill() -> None:
        time.sleep(0.3)
        facade._cache.put("acme", layer, image.blobs[layer], oci.BLOB_CONTENT_TYPE)
        leases.release("acme", layer, owner)

    filler = threading.Thread(target=finish_fill)
    filler.start()
    answer = door.pull("GET", f"corp/apps/web/blobs/{layer}")  # the upstream is down: only the wait helps
    filler.join()
    assert answer.status == 200, answer.json
    assert answer.body == image.blobs[layer]
    assert leases.acquire("acme", layer, seconds=60) is not None  # released


def test_conditional_write_keeps_the_first_copy(door: Door, aws: dict[str, str]) -> None:
    door.module  # noqa: B018  # build the services for this test's environment
    cache = services.pull_facade()._cache
    digest = oci.sha256_digest(b"payload")
    assert cache.put("acme", digest, b"payload", oci.BLOB_CONTENT_TYPE) is True
    assert cache.put("acme", digest, b"payload", oci.BLOB_CONTENT_TYPE) is False
    staging = cache.stage("acme", digest, oci.BLOB_CONTENT_TYPE)
    staging.write(b"payload")
    assert staging.commit() is False  # already there: the staged copy is dropped
    assert cached_keys(aws) == [f"tenants/acme/sha256/{oci.digest_hex(digest)}"]


# -- upstream failures -------------------------------------------------------------------------------
def test_upstream_that_never_answers_times_out(door: Door, upstreams: Upstreams) -> None:
    door.configure(REGISTRY_READ_TIMEOUT_MS="400", REGISTRY_CONNECT_TIMEOUT_MS="400")
    with hanging_server() as port:
        door.connect(f"http://127.0.0.1:{port}")
        started = time.monotonic()
        answer = door.pull("GET", f"corp/apps/web/manifests/{upstreams.images['web'].digest}")
        assert_oci_error(answer, 504, "UNAVAILABLE")
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("status", "headers", "expected_status", "code"),
    [
        (404, {}, 404, "MANIFEST_UNKNOWN"),
        (429, {"Retry-After": "7"}, 429, "TOOMANYREQUESTS"),
        (500, {}, 502, "UNAVAILABLE"),
        (503, {}, 502, "UNAVAILABLE"),
        (403, {}, 403, "DENIED"),
        (418, {}, 502, "UNAVAILABLE"),
    ],
)
def test_upstream_statuses_map_to_oci_errors(
    door: Door, upstreams: Upstreams, status: int, headers: dict[str, str], expected_status: int, code: str
) -> None:
    from tests.registry.upstreams import LoopbackServer

    server = LoopbackServer(lambda request: (status, headers | {"Content-Type": "text/plain"}, b"upstream says no"))
    try:
        door.connect(server.url)
        answer = door.pull("GET", f"corp/apps/web/manifests/{upstreams.images['web'].digest}")
        assert_oci_error(answer, expected_status, code)
        if status == 429:
            assert answer.headers["Retry-After"] == "7"
    finally:
        server.close()


def test_redirect_to_a_refused_address_is_not_followed(door: Door, upstreams: Upstreams) -> None:
    from tests.registry.upstreams import LoopbackServer

    server = LoopbackServer(lambda request: (307, {"Location": "http://169.254.169.254/latest/meta-data"}, b""))
    try:
        door.connect(server.url)
        answer = door.pull("GET", f"corp/apps/web/manifests/{upstreams.images['web'].digest}")
        assert_oci_error(answer, 502, "DENIED")
        assert "egress" in answer.json["errors"][0]["message"]
    finally:
        server.close()


def test_upstream_errors_never_leak_a_stack_trace(door: Door, upstreams: Upstreams) -> None:
    from tests.registry.upstreams import LoopbackServer

    server = LoopbackServer(lambda request: (200, {"Content-Type": oci.OCI_MANIFEST}, b"\x00garbage"))
    try:
        door.connect(server.url)
        digest = oci.sha256_digest(b"\x00garbage")
        answer = door.pull("GET", f"corp/apps/web/manifests/{digest}")
        assert_oci_error(answer, 502, "MANIFEST_INVALID")
        assert "Traceback" not in answer.body.decode()
    finally:
        server.close()

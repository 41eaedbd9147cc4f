"""The upstream client against the real registry and token service, and loopback misbehavers."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest

from meshanics.registry import oci
from meshanics.registry.connections import Credentials, policy_for
from meshanics.registry.oci import OciError
from meshanics.registry.upstream import TokenCache, Upstream, UpstreamClient
from tests.registry.conftest import Upstreams
from tests.registry.upstreams import PASSWORD, SERVICE, USER, LoopbackServer, basic

pytestmark = pytest.mark.registry

CREDS = Credentials.basic(USER, PASSWORD)


def upstream(url: str, creds: Credentials = CREDS, registry_id: str = "reg_test") -> Upstream:
    return Upstream(registry_id, url, policy_for(True), creds, "v1")


def deadline(seconds: float = 10) -> float:
    return time.monotonic() + seconds


def test_basic_auth_after_the_challenge_then_up_front(upstreams: Upstreams) -> None:
    client = UpstreamClient(connect_timeout=2, read_timeout=5)
    up = upstream(upstreams.basic.url)
    image = upstreams.images["web"]
    fetched = client.manifest(up, "apps/web", image.digest, deadline=deadline())
    assert fetched.body == image.body
    assert fetched.content_type == oci.OCI_MANIFEST
    layer = next(iter(image.blobs))
    stream = client.blob(up, "apps/web", layer, deadline=deadline())
    try:
        assert stream.length == len(image.blobs[layer])
        assert b"".join(stream.chunks(1000)) == image.blobs[layer]
    finally:
        stream.close()
    assert client.head_blob(up, "apps/web", layer, deadline=deadline()) == len(image.blobs[layer])


def test_unknown_digest_and_wrong_password(upstreams: Upstreams) -> None:
    client = UpstreamClient(connect_timeout=2, read_timeout=5)
    with pytest.raises(OciError) as unknown:
        client.manifest(upstream(upstreams.basic.url), "apps/web", oci.sha256_digest(b"nothing"), deadline=deadline())
    assert (unknown.value.status, unknown.value.code) == (404, "MANIFEST_UNKNOWN")
    wrong = upstream(upstreams.basic.url, Credentials.basic(USER, "wrong"), registry_id="reg_wrong")
    with pytest.raises(OciError) as refused:
        client.manifest(wrong, "apps/web", upstreams.images["web"].digest, deadline=deadline())
    assert (refused.value.status, refused.value.code) == (403, "UNAUTHORIZED")


def test_bearer_tokens_are_cached_per_scope_until_they_expire(upstreams: Upstreams) -> None:
    now = [1000.0]
    client = UpstreamClient(connect_timeout=2, read_timeout=5, tokens=TokenCache(clock=lambda: now[0]))
    up = upstream(upstreams.token.url)
    web, other = upstreams.images["web"], upstreams.images["other"]
    before = len(upstreams.tokens.requests)
    for _ in range(3):
        assert client.manifest(up, "apps/web", web.digest, deadline=deadline()).body == web.body
    assert client.manifest(up, "other/thing", other.digest, deadline=deadline()).body == other.body
    scopes = [r["scope"] for r in upstreams.tokens.requests[before:]]
    assert scopes == ["repository:apps/web:pull", "repository:other/thing:pull"]
    now[0] += upstreams.tokens.expires_in  # past the renewal point: a new token is fetched up front
    assert client.manifest(up, "apps/web", web.digest, deadline=deadline()).body == web.body
    assert [r["scope"] for r in upstreams.tokens.requests[before:]][-1] == "repository:apps/web:pull"
    assert len(upstreams.tokens.requests) - before == 3


def test_a_rejected_cached_token_is_renewed_once(upstreams: Upstreams) -> None:
    tokens = TokenCache()
    client = UpstreamClient(connect_timeout=2, read_timeout=5, tokens=tokens)
    up = upstream(upstreams.token.url)
    web = upstreams.images["web"]
    client.manifest(up, "apps/web", web.digest, deadline=deadline())
    key = (up.registry_id, up.credentials_version, upstreams.tokens.url, SERVICE, "repository:apps/web:pull")
    tokens.put(key, "revoked.token.value", 300)
    before = len(upstreams.tokens.requests)
    assert client.manifest(up, "apps/web", web.digest, deadline=deadline()).body == web.body
    assert len(upstreams.tokens.requests) - before == 1


def _redirecting(target: str, *, status: int = 307) -> LoopbackServer:
    """An upstream that checks basic credentials, then redirects every request to `target`."""

    def respond(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") != basic():
            return 401, {"WWW-Authenticate": 'Basic realm="redirecting"'}, b""
        return status, {"Location": target + request.path}, b""

    return LoopbackServer(respond)


def test_credentials_never_follow_a_redirect_to_another_host(upstreams: Upstreams) -> None:
    seen: list[str | None] = []
    image = upstreams.images["web"]
    layer = next(iter(image.blobs))

    def storage(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        seen.append(request.headers.get("Authorization"))
        return 200, {"Content-Type": "application/octet-stream"}, image.blobs[layer]

    blob_store = LoopbackServer(storage)
    # "localhost" is another origin than 127.0.0.1, as a storage bucket would be.
    front = _redirecting(f"http://localhost:{blob_store.port}")
    try:
        client = UpstreamClient(connect_timeout=2, read_timeout=5)
        stream = client.blob(upstream(front.url), "apps/web", layer, deadline=deadline())
        try:
            assert b"".join(stream.chunks()) == image.blobs[layer]
        finally:
            stream.close()
        assert seen == [None]
    finally:
        front.close()
        blob_store.close()


def test_redirect_loops_are_cut(upstreams: Upstreams) -> None:
    loop = LoopbackServer(lambda request: (302, {"Location": request.path}, b""))
    try:
        client = UpstreamClient(connect_timeout=2, read_timeout=5)
        with pytest.raises(OciError) as refused:
            client.manifest(upstream(loop.url), "apps/web", upstreams.images["web"].digest, deadline=deadline())
        assert (refused.value.status, refused.value.code) == (502, "UNAVAILABLE")
        assert "redirected more than" in refused.value.message
    finally:
        loop.close()


def test_token_realm_passes_the_egress_guard(upstreams: Upstreams) -> None:
    challenge = 'Bearer realm="http://169.254.169.254/latest/token",service="x"'
    server = LoopbackServer(lambda request: (401, {"WWW-Authenticate": challenge}, b""))
    try:
        client = UpstreamClient(connect_timeout=2, read_timeout=5)
        with pytest.raises(OciError) as refused:
            client.manifest(upstream(server.url), "apps/web", upstreams.images["web"].digest, deadline=deadline())
        assert (refused.value.status, refused.value.code) == (502, "DENIED")
        assert refused.value.detail == {"rule": "egress.metadata"}
    finally:
        server.close()


def test_the_deadline_bounds_a_slow_body(upstreams: Upstreams) -> None:
    def slow(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        request.send_response(200)
        request.send_header("Content-Length", "1000000")
        request.end_headers()
        for _ in range(50):
            request.wfile.write(b"x" * 100)
            request.wfile.flush()
            time.sleep(0.05)
        raise ConnectionError  # the handler already answered

    server = LoopbackServer(slow)
    try:
        client = UpstreamClient(connect_timeout=2, read_timeout=5)
        started = time.monotonic()
        stream = client.blob(upstream(server.url), "apps/web", oci.sha256_digest(b"x"), deadline=deadline(0.5))
        with pytest.raises(OciError) as timed_out:
            for _ in stream.chunks(64):
                pass
        stream.close()
        assert (timed_out.value.status, timed_out.value.code) == (504, "UNAVAILABLE")
        assert time.monotonic() - started < 2
    finally:
        server.close()

"""Upstream content the facade cannot parse answers 502 in the OCI error shape, never a 500, and
nothing of it is served, cached or recorded: manifests nested far past the recursion limit, numbers
past Python's 4,300-digit limit, lone UTF-16 surrogates; the same for token and error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest

from meshanics.registry import oci
from tests.registry.conftest import OPERATOR, Answer, Door
from tests.registry.upstreams import LoopbackServer

pytestmark = pytest.mark.registry

DEEP = 200_000
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "a" * 64, "size": 10}
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "b" * 64, "size": 2}


def manifest_text(**fields: Any) -> str:
    return json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": CONFIG, "layers": [LAYER]} | fields)


def with_raw(field: str, raw: str, **fields: Any) -> bytes:
    """A manifest whose `field` is the given raw JSON text (which json.dumps could not produce)."""
    return manifest_text(**fields, **{field: "__SLOT__"}).replace('"__SLOT__"', raw).encode()


HOSTILE_MANIFESTS = {
    "nested arrays": b"[" * DEEP + b"]" * DEEP,
    "nested objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "unclosed nesting": b"[" * DEEP,
    "nested annotation": with_raw("annotations", "[" * DEEP + "]" * DEEP),
    "nested past the depth limit": with_raw("annotations", "[" * 100 + "]" * 100),
    "5000-digit size": manifest_text(layers=[LAYER | {"size": "__N__"}]).replace('"__N__"', "9" * 5000).encode(),
    "size beyond int64": json.dumps(json.loads(manifest_text()) | {"layers": [LAYER | {"size": 10**40}]}).encode(),
    "surrogate media type": with_raw("layers", json.dumps([LAYER | {"mediaType": "x"}]).replace('"x"', '"\\ud800"')),
    "surrogate annotation": with_raw("annotations", '{"org.opencontainers.image.title": "\\udfff"}'),
}


@pytest.fixture
def serving() -> Iterator[dict[str, bytes]]:
    """A fake upstream serving whatever manifest bytes `serving["manifest"]` holds (any digest)."""
    content: dict[str, bytes] = {}

    def respond(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if "/manifests/" in request.path and "manifest" in content:
            return 200, {"Content-Type": oci.OCI_MANIFEST}, content["manifest"]
        return 404, {"Content-Type": "application/json"}, content.get("error", b"")

    server = LoopbackServer(respond)
    content["url"] = server.url.encode()
    try:
        yield content
    finally:
        server.close()


def cached_keys(aws: dict[str, str]) -> str:
    listed = boto3.client("s3").list_objects_v2(Bucket=aws["ARTIFACT_CACHE_BUCKET"])
    return " ".join(o["Key"] for o in listed.get("Contents", []))


def assert_bad_gateway(answer: Answer, code: str) -> None:
    assert answer.status == 502, (answer.status, answer.body[:300])
    assert answer.error_code == code, answer.json
    assert set(answer.json) == {"errors"}
    assert answer.headers.get("Docker-Distribution-API-Version") == "registry/2.0"
    assert answer.headers.get("Content-Type", "").startswith("application/json")


@pytest.mark.parametrize("body", HOSTILE_MANIFESTS.values(), ids=HOSTILE_MANIFESTS.keys())
def test_an_unparseable_manifest_is_a_502_and_nothing_is_kept(
    door: Door, aws: dict[str, str], serving: dict[str, bytes], body: bytes
) -> None:
    serving["manifest"] = body
    door.connect(serving["url"].decode())
    digest = oci.sha256_digest(body)  # the digest matches: parsing is what fails
    for method in ("GET", "HEAD"):
        answer = door.pull(method, f"corp/apps/web/manifests/{digest}")
        if method == "GET":
            assert_bad_gateway(answer, "MANIFEST_INVALID")
            assert "Traceback" not in answer.body.decode()
        else:
            assert answer.status == 502, answer.status
    assert oci.digest_hex(digest) not in cached_keys(aws)
    # Nothing was recorded either: the layer it names cannot be pulled through it.
    blob = door.pull("GET", f"corp/apps/web/blobs/{LAYER['digest']}")
    assert (blob.status, blob.error_code) == (404, "BLOB_UNKNOWN")


def test_a_deeply_nested_upstream_error_body_is_still_the_upstream_status(
    door: Door, serving: dict[str, bytes]
) -> None:
    serving["error"] = b'{"errors":' + b"[" * DEEP + b"]" * DEEP + b"}"
    door.connect(serving["url"].decode())
    answer = door.pull("GET", f"corp/apps/web/manifests/{oci.sha256_digest(b'x')}")
    assert (answer.status, answer.error_code) == (404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    "token_body",
    [
        b'{"token":' + b"[" * 30_000 + b"]" * 30_000 + b"}",  # within the 64 KiB a token response may take
        b'{"token": "ok", "expires_in": ' + b"9" * 5000 + b"}",
        b'{"token": "t\\ud800"}',
        b'{"token": "caf\\u00e9-\\u20ac"}',  # not ASCII: cannot go into an Authorization header
    ],
    ids=["nested", "5000-digit", "surrogate", "not ascii"],
)
def test_an_unusable_token_response_is_a_502(door: Door, token_body: bytes) -> None:
    tokens = LoopbackServer(lambda request: (200, {"Content-Type": "application/json"}, token_body))
    challenge = f'Bearer realm="{tokens.url}/token",service="upstream.test"'
    registry = LoopbackServer(lambda request: (401, {"WWW-Authenticate": challenge}, b""))
    try:
        door.connect(registry.url)
        answer = door.pull("GET", f"corp/apps/web/manifests/{oci.sha256_digest(b'x')}")
        assert_bad_gateway(answer, "UNAUTHORIZED")
        assert "token service" in answer.json["errors"][0]["message"]
    finally:
        registry.close()
        tokens.close()


# -- other upstream text that reached int() or urlsplit() unchecked --------------------------------
@pytest.mark.parametrize("length", ["\u00b2", "9" * 5000], ids=["superscript digit", "5000 digits"])
def test_an_unreadable_content_length_is_ignored(door: Door, serving: dict[str, bytes], length: str) -> None:
    body = manifest_text().encode()
    headers = {"Content-Type": oci.OCI_MANIFEST, "Content-Length": length, "Connection": "close"}
    server = LoopbackServer(lambda request: (200, headers, body))
    try:
        door.connect(server.url)
        answer = door.pull("GET", f"corp/apps/web/manifests/{oci.sha256_digest(body)}")
        assert (answer.status, answer.body) == (200, body)  # read to the end of the connection instead
    finally:
        server.close()


@pytest.mark.parametrize("location", ["http://[::1/v2/x", "http://127.0.0.1:99999/v2/x"])
def test_a_redirect_to_a_url_that_does_not_parse_is_a_502(door: Door, location: str) -> None:
    server = LoopbackServer(lambda request: (307, {"Location": location}, b""))
    try:
        door.connect(server.url)
        answer = door.pull("GET", f"corp/apps/web/manifests/{oci.sha256_digest(b'x')}")
        assert_bad_gateway(answer, "UNAVAILABLE")
    finally:
        server.close()


def test_a_token_realm_that_does_not_parse_is_a_502(door: Door) -> None:
    challenge = 'Bearer realm="http://[::1/token",service="upstream.test"'
    server = LoopbackServer(lambda request: (401, {"WWW-Authenticate": challenge}, b""))
    try:
        door.connect(server.url)
        answer = door.pull("GET", f"corp/apps/web/manifests/{oci.sha256_digest(b'x')}")
        assert_bad_gateway(answer, "UNAVAILABLE")
    finally:
        server.close()


@pytest.mark.parametrize("token", ["caf\u00e9", "\u20ac-token", "tab\there", "t\u0000"])
def test_a_token_credential_that_cannot_be_sent_is_refused_at_the_api(door: Door, token: str) -> None:
    # Sent as `Authorization: Bearer <token>`: text a header cannot carry failed every later pull.
    credentials = {"type": "token", "token": token}
    body = {"name": "corp", "upstream_url": "http://127.0.0.1:9", "credentials": credentials}
    created = door.call("POST", "/v1/registries", scopes=OPERATOR, body=body | {"allow_private_network": True})
    assert (created.status, created.json["error"]["field"]) == (400, "credentials.token"), created.json
    registry = door.connect("http://127.0.0.1:9")
    path = f"/v1/registries/{registry['id']}/credentials"
    replaced = door.call("PUT", path, scopes=OPERATOR, body={"credentials": credentials})
    assert (replaced.status, replaced.json["error"]["field"]) == (400, "credentials.token"), replaced.json

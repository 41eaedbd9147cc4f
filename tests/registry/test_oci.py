"""The OCI vocabulary: digests, request paths, Accept negotiation, manifests, auth challenges."""

from __future__ import annotations

import json

import pytest

from meshanics.registry import oci
from meshanics.registry.oci import OciError, parse_accept, parse_digest, parse_manifest, parse_pull_path
from meshanics.registry.upstream import Challenge, TokenCache, parse_challenges

HEX = "a" * 64
DIGEST = f"sha256:{HEX}"


# -- digests ------------------------------------------------------------------------------------
def test_sha256_digest_is_accepted() -> None:
    assert parse_digest(DIGEST) == DIGEST
    assert oci.sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (f"sha256:{'A' * 64}", "DIGEST_INVALID"),
        (f"sha256:{'a' * 63}", "DIGEST_INVALID"),
        (f"sha256:{'a' * 65}", "DIGEST_INVALID"),
        (f"sha256:{'g' * 64}", "DIGEST_INVALID"),
        ("sha256:", "DIGEST_INVALID"),
        (HEX, "DIGEST_INVALID"),
        (f"SHA256:{HEX}", "DIGEST_INVALID"),
        (f"sha512:{'a' * 128}", "UNSUPPORTED"),
        (f"md5:{'a' * 32}", "UNSUPPORTED"),
        (f"sha256+b64u:{HEX}", "UNSUPPORTED"),
        (f"sha256:{HEX}/../x", "DIGEST_INVALID"),
    ],
)
def test_other_digests_are_refused(text: str, code: str) -> None:
    with pytest.raises(OciError) as refused:
        parse_digest(text)
    assert refused.value.code == code
    assert refused.value.status == 400


# -- paths ---------------------------------------------------------------------------------------
def test_manifest_and_blob_paths() -> None:
    target = parse_pull_path(f"corp/apps/web/manifests/{DIGEST}", "GET")
    assert (target.registry, target.repository, target.kind, target.digest) == ("corp", "apps/web", "manifest", DIGEST)
    target = parse_pull_path(f"corp/a/b/c/blobs/{DIGEST}", "HEAD")
    assert (target.repository, target.kind) == ("a/b/c", "blob")
    # `manifests` may itself be a repository component: the kind is the second-to-last segment.
    target = parse_pull_path(f"corp/manifests/blobs/manifests/{DIGEST}", "GET")
    assert (target.repository, target.kind) == ("manifests/blobs", "manifest")
    # A client that percent-encodes the colon is understood.
    assert parse_pull_path(f"corp/web/manifests/sha256%3A{HEX}", "GET").digest == DIGEST


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "1.0_rc-1"])
def test_tags_are_refused_pull_by_digest_only(tag: str) -> None:
    with pytest.raises(OciError) as refused:
        parse_pull_path(f"corp/apps/web/manifests/{tag}", "GET")
    assert (refused.value.code, refused.value.status) == ("MANIFEST_UNKNOWN", 404)
    assert "by digest only" in refused.value.message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"corp/web/manifests/{DIGEST}"),
        ("DELETE", f"corp/web/manifests/{DIGEST}"),
        ("DELETE", f"corp/web/blobs/{DIGEST}"),
        ("POST", "corp/web/blobs/uploads/"),
        ("PATCH", "corp/web/blobs/uploads/1234"),
        ("PUT", "corp/web/blobs/uploads/1234"),
        ("GET", "corp/web/blobs/uploads/1234"),
        ("GET", "corp/web/blobs/uploads"),
        ("GET", "_catalog"),
        ("GET", "corp/web/tags/list"),
        ("GET", f"corp/web/referrers/{DIGEST}"),
        ("OPTIONS", f"corp/web/manifests/{DIGEST}"),
    ],
)
def test_push_delete_catalog_and_tag_lists_are_unsupported(method: str, path: str) -> None:
    with pytest.raises(OciError) as refused:
        parse_pull_path(path, method)
    assert (refused.value.code, refused.value.status) == ("UNSUPPORTED", 405)
    assert refused.value.headers == {"Allow": "GET, HEAD"}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"Corp/web/manifests/{DIGEST}", "NAME_INVALID"),
        (f"corp/Web/manifests/{DIGEST}", "NAME_INVALID"),
        (f"corp/web//x/manifests/{DIGEST}", "NAME_INVALID"),
        (f"corp/we..b/manifests/{DIGEST}", "NAME_INVALID"),
        (f"corp/manifests/{DIGEST}", "NAME_UNKNOWN"),
        ("corp/web/layers/x", "NAME_UNKNOWN"),
        ("corp/web/manifests/sha256:zz", "DIGEST_INVALID"),
        ("corp/web/blobs/latest", "DIGEST_INVALID"),
        ("corp/web/manifests/..", "MANIFEST_INVALID"),
    ],
)
def test_malformed_paths(path: str, code: str) -> None:
    with pytest.raises(OciError) as refused:
        parse_pull_path(path, "GET")
    assert refused.value.code == code


def test_error_body_shape() -> None:
    error = OciError("BLOB_UNKNOWN", "nope", detail={"digest": DIGEST})
    assert error.body() == {"errors": [{"code": "BLOB_UNKNOWN", "message": "nope", "detail": {"digest": DIGEST}}]}
    assert OciError("DENIED", "no").body() == {"errors": [{"code": "DENIED", "message": "no"}]}


# -- Accept --------------------------------------------------------------------------------------
def test_accept_lists_are_merged_and_parameters_dropped() -> None:
    accept = parse_accept([f"{oci.OCI_MANIFEST}; q=0.9, {oci.OCI_INDEX}", oci.DOCKER_MANIFEST.upper()])
    assert accept == (oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_MANIFEST)


def test_client_accepts() -> None:
    docker_only = (oci.DOCKER_MANIFEST, oci.DOCKER_MANIFEST_LIST)
    assert oci.client_accepts(docker_only, oci.DOCKER_MANIFEST)
    assert not oci.client_accepts(docker_only, oci.OCI_MANIFEST)
    assert oci.client_accepts((*docker_only, "*/*"), oci.OCI_MANIFEST)
    # A client that names no manifest type gets the manifest as stored.
    assert oci.client_accepts((), oci.OCI_INDEX)
    assert oci.client_accepts(("application/json",), oci.OCI_MANIFEST)


def test_upstream_accept_lists_every_manifest_type() -> None:
    assert parse_accept([oci.UPSTREAM_ACCEPT]) == oci.MANIFEST_MEDIA_TYPES


# -- manifests -----------------------------------------------------------------------------------
def _descriptor(n: int, media: str = "application/vnd.oci.image.layer.v1.tar") -> dict[str, object]:
    return {"mediaType": media, "digest": f"sha256:{n:064x}", "size": n}


def test_oci_manifest_references_config_layers_and_subject() -> None:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": _descriptor(1),
            "layers": [_descriptor(2), _descriptor(3), {"digest": f"sha512:{'a' * 128}", "size": 5}],
            "subject": _descriptor(4, oci.OCI_MANIFEST),
        }
    ).encode()
    manifest = parse_manifest(body, "application/octet-stream")
    assert manifest.media_type == oci.OCI_MANIFEST
    assert [(d.digest[-1], d.kind, d.size) for d in manifest.references] == [
        ("1", "blob", 1),
        ("2", "blob", 2),
        ("3", "blob", 3),
        ("4", "manifest", 4),
    ]


def test_index_references_child_manifests() -> None:
    body = json.dumps({"schemaVersion": 2, "manifests": [_descriptor(7, oci.OCI_MANIFEST)]}).encode()
    manifest = parse_manifest(body, None)
    assert manifest.media_type == oci.OCI_INDEX  # inferred: an OCI index may omit mediaType
    assert [(d.kind, d.size) for d in manifest.references] == [("manifest", 7)]


def test_media_type_comes_from_the_manifest_then_the_header() -> None:
    body = json.dumps({"schemaVersion": 2, "config": _descriptor(1), "layers": []}).encode()
    assert parse_manifest(body, f"{oci.DOCKER_MANIFEST}; charset=utf-8").media_type == oci.DOCKER_MANIFEST
    assert parse_manifest(body, "text/plain").media_type == oci.OCI_MANIFEST


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "MANIFEST_INVALID"),
        (b"[]", "UNSUPPORTED"),
        (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "UNSUPPORTED"),
        (json.dumps({"schemaVersion": 2, "mediaType": "application/x-other", "layers": []}).encode(), "UNSUPPORTED"),
        (json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST}).encode(), "MANIFEST_INVALID"),
        (json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": 3}).encode(), "MANIFEST_INVALID"),
        (
            json.dumps({"schemaVersion": 2, "config": {"digest": DIGEST, "size": -1}, "layers": []}).encode(),
            "MANIFEST_INVALID",
        ),
    ],
)
def test_unusable_manifests_are_refused(body: bytes, code: str) -> None:
    with pytest.raises(OciError) as refused:
        parse_manifest(body, None)
    assert refused.value.code == code
    assert refused.value.status == 502


# -- WWW-Authenticate and the token cache ----------------------------------------------------------
def test_bearer_challenge_with_quoted_commas() -> None:
    (challenge,) = parse_challenges(
        ['Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"']
    )
    assert challenge == Challenge(
        "bearer",
        {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"},
    )


def test_several_challenges_and_unquoted_values() -> None:
    challenges = parse_challenges(['Basic realm="upstream", charset="UTF-8", Bearer realm=https://t/x,service=s'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params == {"realm": "upstream", "charset": "UTF-8"}
    assert challenges[1].params == {"realm": "https://t/x", "service": "s"}
    assert parse_challenges(['Bearer realm="a\\"b"', "Basic"]) == [
        Challenge("bearer", {"realm": 'a"b'}),
        Challenge("basic", {}),
    ]


def test_token_cache_renews_before_expiry() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0], size=2)
    cache.put(("a",), "t1", 60)
    now[0] += 53
    assert cache.get(("a",)) == "t1"
    now[0] += 2  # 55 s: inside the last 5 s of a 60 s token
    assert cache.get(("a",)) is None
    cache.put(("a",), "t1", 60)
    cache.put(("b",), "t2", 60)
    cache.put(("c",), "t3", 60)
    assert (cache.get(("a",)), cache.get(("c",))) == (None, "t3")  # bounded: the oldest went

"""End to end: skopeo (a real client) copies an image by digest through the facade on the local platform.

The local platform serves the template's API on a loopback port (authorizer included) with moto in
server mode; the upstream is the real distribution registry from `upstreams`. Layers above the
(lowered) inline threshold reach skopeo through the presigned S3 redirect, served by moto.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from meshanics.store.apikeys import ApiKeyStore
from meshanics_local.stack import LocalPlatform
from tests.registry.conftest import Upstreams
from tests.registry.upstreams import PASSWORD, USER, Pushed, push_image, require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.registry, pytest.mark.xdist_group("registry-e2e")]

INLINE_MAX = 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    state = tmp_path_factory.mktemp("registry-stack")
    overrides = {"InlineBlobMaxBytes": str(INLINE_MAX)}
    with LocalPlatform(
        api_port=0, aws_port=0, state_dir=state, parameter_overrides=overrides, pool_sizes={"*": 1}
    ) as s:
        yield s


@pytest.fixture(scope="module")
def image(upstreams: Upstreams) -> Pushed:
    # One layer above the inline threshold (served through the presigned redirect), two inline.
    layers = [os.urandom(3 * 1024 * 1024 + 17), os.urandom(40_000)]
    return push_image(upstreams.basic.url, "apps/e2e", layers)


def _key(stack: LocalPlatform, tenant: str, scopes: list[str]) -> str:
    table = stack.environment("RegistryFunction")["INTEGRATIONS_TABLE"]
    dynamodb = stack.client("dynamodb")
    key, _ = ApiKeyStore(lambda: dynamodb, table).create(tenant, scopes, name="e2e")
    return key


def _connect(stack: LocalPlatform, url: str, name: str, *, approve: bool) -> dict[str, Any]:
    assert stack.api_url is not None
    headers = {"Authorization": f"Bearer {stack.demo_key}"}
    body = {
        "name": name,
        "upstream_url": url,
        "credentials": {"type": "basic", "username": USER, "password": PASSWORD},
        "allow_private_network": True,
    }
    created = requests.post(f"{stack.api_url}/v1/registries", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    if not approve:
        return created.json()  # type: ignore[no-any-return]
    approved = requests.post(
        f"{stack.api_url}/v1/registries/{created.json()['id']}/approve", headers=headers, timeout=30
    )
    assert approved.status_code == 200, approved.text
    return approved.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def registry(stack: LocalPlatform, upstreams: Upstreams) -> dict[str, Any]:
    return _connect(stack, upstreams.basic.url, "corp", approve=True)


def skopeo(stack: LocalPlatform, tmp_path: Path, reference: str, key: str) -> subprocess.CompletedProcess[str]:
    require_binary("skopeo")
    assert stack.api_url is not None
    host = stack.api_url.removeprefix("http://")
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy = tmp_path / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    command = [
        "skopeo",
        "--policy",
        str(policy),
        "--command-timeout",
        "90s",
        "--tmpdir",
        str(tmp_path),
        "copy",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        "--src-creds",
        f"device:{key}",
        f"docker://{host}/{reference}",
        f"dir:{tmp_path / 'out'}",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_skopeo_through_the_local_stack(
    stack: LocalPlatform, registry: dict[str, Any], upstreams: Upstreams, image: Pushed, tmp_path: Path
) -> None:
    """One test on one stack: pytest-xdist may not keep separate tests on one worker (a stack each)."""
    device = _key(stack, "demo", ["artifacts:pull"])
    check_copy_by_digest(stack, image, device, tmp_path / "copy")
    check_version_check_and_head(stack, image, device)
    check_refusals(stack, upstreams, image, device, tmp_path / "refused")


def check_copy_by_digest(stack: LocalPlatform, image: Pushed, device: str, tmp_path: Path) -> None:
    copied = skopeo(stack, tmp_path / "cold", f"corp/apps/e2e@{image.digest}", device)
    assert copied.returncode == 0, copied.stderr
    out = tmp_path / "cold" / "out"
    assert (out / "manifest.json").read_bytes() == image.body
    blobs = {p.name: p.read_bytes() for p in out.iterdir() if p.name not in ("manifest.json", "version")}
    assert blobs == {digest.removeprefix("sha256:"): data for digest, data in image.blobs.items()}
    assert max(len(b) for b in blobs.values()) > INLINE_MAX  # one came through the presigned redirect
    # Again, now from the cache.
    again = skopeo(stack, tmp_path / "warm", f"corp/apps/e2e@{image.digest}", device)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "warm" / "out" / "manifest.json").read_bytes() == image.body


def check_version_check_and_head(stack: LocalPlatform, image: Pushed, device: str) -> None:
    assert stack.api_url is not None
    anonymous = requests.get(f"{stack.api_url}/v2/", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="meshanics"')
    assert anonymous.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    auth = ("device", device)
    version = requests.get(f"{stack.api_url}/v2/", auth=auth, timeout=10)
    assert (version.status_code, version.json()) == (200, {})
    head = requests.head(f"{stack.api_url}/v2/corp/apps/e2e/manifests/{image.digest}", auth=auth, timeout=30)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(image.body))
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert head.content == b""


def check_refusals(stack: LocalPlatform, upstreams: Upstreams, image: Pushed, device: str, tmp_path: Path) -> None:
    reference = f"corp/apps/e2e@{image.digest}"
    tag = skopeo(stack, tmp_path / "tag", "corp/apps/e2e:latest", device)
    assert tag.returncode != 0
    assert "pull by digest only" in tag.stderr

    other_tenant = skopeo(stack, tmp_path / "tenant", reference, _key(stack, "globex", ["artifacts:pull"]))
    assert other_tenant.returncode != 0
    assert "no registry connection named 'corp'" in other_tenant.stderr

    _connect(stack, upstreams.basic.url, "pending", approve=False)
    pending = skopeo(stack, tmp_path / "pending", f"pending/apps/e2e@{image.digest}", device)
    assert pending.returncode != 0
    assert "pending operator approval" in pending.stderr

    bad = skopeo(stack, tmp_path / "bad", reference, "msk_0000000000000000_" + "x" * 43)
    assert bad.returncode != 0
    assert "unauthorized" in bad.stderr.lower()

    reader = skopeo(stack, tmp_path / "reader", reference, _key(stack, "demo", ["integrations:read"]))
    assert reader.returncode != 0
    assert "artifacts:pull" in reader.stderr

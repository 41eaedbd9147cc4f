"""Push a small OCI image to a registry over the distribution API (for trying the pull facade).

    python -m meshanics_local.sample_image http://127.0.0.1:5001 apps/hello --user puller --password secret

Prints the manifest digest: devices pull by that digest through the facade. The registry tests
push their artifacts with the same functions.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tarfile
from dataclasses import dataclass

import urllib3

from meshanics.registry import oci

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30))


@dataclass(frozen=True)
class Pushed:
    repository: str
    digest: str
    media_type: str
    body: bytes
    blobs: dict[str, bytes]  # digest -> bytes (config and layers)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def push_blob(base: str, repository: str, data: bytes, auth: str) -> str:
    """Monolithic upload: POST to start, PUT the bytes with their digest."""
    digest = oci.sha256_digest(data)
    started = _http.request("POST", f"{base}/v2/{repository}/blobs/uploads/", headers={"Authorization": auth})
    if started.status != 202:
        raise RuntimeError(f"blob upload refused: {started.status} {started.data[:200]!r}")
    location = started.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    done = _http.request(
        "PUT",
        f"{location}{sep}digest={digest}",
        body=data,
        headers={"Authorization": auth, "Content-Type": "application/octet-stream"},
    )
    if done.status != 201:
        raise RuntimeError(f"blob upload failed: {done.status} {done.data[:200]!r}")
    return digest


def push_manifest(base: str, repository: str, body: bytes, media_type: str, auth: str, reference: str = "") -> str:
    """PUT a manifest by its digest (or under `reference`, a tag); return the digest."""
    digest = oci.sha256_digest(body)
    done = _http.request(
        "PUT",
        f"{base}/v2/{repository}/manifests/{reference or digest}",
        body=body,
        headers={"Authorization": auth, "Content-Type": media_type},
    )
    if done.status != 201:
        raise RuntimeError(f"manifest push failed: {done.status} {done.data[:200]!r}")
    return digest


def push_image(
    base: str, repository: str, layers: list[bytes], auth: str, *, docker: bool = False, tag: str = ""
) -> Pushed:
    """An image (config + layers) as an OCI or Docker schema 2 manifest, pushed by digest (and tag)."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"repository": repository}},
            "rootfs": {"type": "layers", "diff_ids": [oci.sha256_digest(layer) for layer in layers]},
        },
        sort_keys=True,
    ).encode()
    if docker:
        media_type = oci.DOCKER_MANIFEST
        config_type = "application/vnd.docker.container.image.v1+json"
        layer_type = "application/vnd.docker.image.rootfs.diff.tar"
    else:
        media_type = oci.OCI_MANIFEST
        config_type = "application/vnd.oci.image.config.v1+json"
        layer_type = "application/vnd.oci.image.layer.v1.tar"
    blobs = {push_blob(base, repository, config, auth): config}
    for layer in layers:
        blobs[push_blob(base, repository, layer, auth)] = layer
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": oci.sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": oci.sha256_digest(x), "size": len(x)} for x in layers],
    }
    body = json.dumps(manifest, indent=3).encode()
    digest = push_manifest(base, repository, body, media_type, auth)
    if tag:
        push_manifest(base, repository, body, media_type, auth, reference=tag)
    return Pushed(repository, digest, media_type, body, blobs)


def _hello_layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"hello from a Meshanics sample image\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Push a small OCI image and print its digest.")
    parser.add_argument("registry", help="base URL, e.g. http://127.0.0.1:5001")
    parser.add_argument("repository", help="e.g. apps/hello")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--tag", default="1.0")
    args = parser.parse_args(argv)
    pushed = push_image(
        args.registry.rstrip("/"), args.repository, [_hello_layer()], basic_auth(args.user, args.password), tag=args.tag
    )
    print(pushed.digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

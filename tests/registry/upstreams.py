"""Real upstreams for the registry tests: the CNCF distribution registry (Debian's docker-registry),
a token service it trusts, and loopback misbehavers (a byte-flipping proxy, a hanging server).

The registry runs as a child process on a free loopback port with htpasswd (bcrypt) auth, or with
token auth: then it verifies ES256 JWTs from `TokenServer`, whose key is in its root bundle and
named by its libtrust key id. Artifacts are pushed over the registry's own HTTP API.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from meshanics.registry import oci
from meshanics_local import sample_image
from meshanics_local.sample_image import Pushed

REGISTRY_BINARY = "docker-registry"
USER = "puller"
PASSWORD = "correct-horse-battery-staple"
REFRESH_TOKEN = "identity-token-0123456789"
SERVICE = "upstream.test"
ISSUER = "token-issuer.test"

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make system-deps` (Debian packages docker-registry and skopeo)")
    return path


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the registry process -------------------------------------------------------------------------
class RegistryProcess:
    """`docker-registry serve` on a loopback port; stop() and start() again on the same port."""

    def __init__(self, workdir: Path, storage: Path, auth: dict[str, Any], *, port: int | None = None) -> None:
        require_binary(REGISTRY_BINARY)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"registry-{self.port}.yml"
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": False}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "test-http-secret"},
            "auth": auth,
        }
        self.config.write_text(json.dumps(config))  # YAML is a superset of JSON
        self.log = workdir / f"registry-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RegistryProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                if http.request("GET", f"{self.url}/v2/", timeout=1).status in (200, 401):
                    return self
            except urllib3.exceptions.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start within 15 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def htpasswd_auth(workdir: Path) -> dict[str, Any]:
    path = workdir / "htpasswd"
    # Cost 4 keeps each request's bcrypt check cheap (the registry checks on every request).
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{USER}:{hashed}\n")
    return {"htpasswd": {"realm": "upstream", "path": str(path)}}


# -- the token service ----------------------------------------------------------------------------
def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` the distribution registry expects: SHA-256 of the DER key, 240 bits, base32, in 4s."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, 48, 4))


@dataclass
class TokenServer:
    """Issues registry JWTs for basic credentials (GET) or a refresh token (POST, OAuth2 form)."""

    workdir: Path
    expires_in: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = libtrust_key_id(self.key.public_key())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = self.workdir / "token-bundle.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                ok = self.headers.get("Authorization") == basic()
                server.requests.append({"method": "GET", "scope": query.get("scope"), "ok": ok})
                self._answer(ok, query, "token")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                ok = form.get("grant_type") == "refresh_token" and form.get("refresh_token") == REFRESH_TOKEN
                server.requests.append({"method": "POST", "scope": form.get("scope"), "ok": ok})
                self._answer(ok, form, "access_token")

            def _answer(self, ok: bool, params: dict[str, str], field_name: str) -> None:
                if not ok:
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
                    self.send_response(401)
                else:
                    token = server.sign(params.get("scope", ""), params.get("service", ""))
                    body = json.dumps({field_name: token, "expires_in": server.expires_in}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def sign(self, scope: str, service: str) -> str:
        now = int(time.time())
        access = []
        if scope.count(":") >= 2:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access = [{"type": kind, "name": name, "actions": actions.split(",")}]
        header = _b64url(json.dumps({"typ": "JWT", "alg": "ES256", "kid": self.kid}).encode())
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": service,
            "exp": now + self.expires_in,
            "nbf": now - 5,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        payload = _b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(self.key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
        return f"{header}.{payload}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def auth_config(self) -> dict[str, Any]:
        return {"token": {"realm": self.url, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(self.bundle)}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- pushing artifacts ----------------------------------------------------------------------------
def push_blob(base: str, repository: str, data: bytes, auth: str = basic()) -> str:
    return sample_image.push_blob(base, repository, data, auth)


def push_manifest(base: str, repository: str, body: bytes, media_type: str, auth: str = basic()) -> str:
    return sample_image.push_manifest(base, repository, body, media_type, auth)


def push_image(base: str, repository: str, layers: list[bytes], *, docker: bool = False) -> Pushed:
    """An image (config + layers) as an OCI or Docker schema 2 manifest, pushed by digest."""
    return sample_image.push_image(base, repository, layers, basic(), docker=docker)


def push_index(base: str, repository: str, children: list[Pushed]) -> Pushed:
    index = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_INDEX,
        "manifests": [
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": len(child.body),
                "platform": {"architecture": arch, "os": "linux"},
            }
            for child, arch in zip(children, ("amd64", "arm64", "riscv64"), strict=False)
        ],
    }
    body = json.dumps(index).encode()
    digest = push_manifest(base, repository, body, oci.OCI_INDEX)
    return Pushed(repository, digest, oci.OCI_INDEX, body, {})


# -- misbehaving upstreams ------------------------------------------------------------------------
class LoopbackServer:
    """A threaded loopback HTTP server around a handler function (request) -> (status, headers, body)."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                try:
                    status, headers, body = respond(self)
                except ConnectionError:
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _any

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def tampering_proxy(target: str, *, flip: str) -> LoopbackServer:
    """Forwards to `target`; flips one byte of successful `flip` ('manifests' or 'blobs') bodies."""
    pool = urllib3.PoolManager(retries=False)

    def respond(request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = pool.request(request.command, target + request.path, headers=headers, redirect=False)
        body = upstream.data
        if upstream.status == 200 and f"/{flip}/" in request.path and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        if request.command == "HEAD":
            out["Content-Length"] = upstream.headers.get("Content-Length", "0")
        return upstream.status, out, body

    return LoopbackServer(respond)


@contextlib.contextmanager
def hanging_server() -> Iterator[int]:
    """Accepts connections and never answers: the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        sock.close()

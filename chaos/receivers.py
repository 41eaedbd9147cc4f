"""Receivers for the chaos run: real HTTP servers on loopback, each with a seeded way of failing.

Every receiver verifies each request's signature with its endpoint's secret, and counts a delivery
as received only when it answered 2xx at once (a request it answers too late, in pieces, or not at
all is a failed attempt the platform retries). A trap listener counts any connection made to it:
redirects point there and at the cloud metadata address, and the platform must follow neither.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from meshanics.signing import SignatureVerificationError, verify

METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@dataclass(frozen=True)
class Answer:
    kind: str  # ok, status, hang, drip, reset, redirect
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


OK = Answer("ok", 200)


def _steady(rng: random.Random) -> Answer:
    return OK if rng.random() < 0.5 else Answer("ok", 204)


def _flaky(rng: random.Random) -> Answer:
    return Answer("status", 500) if rng.random() < 0.35 else OK


def _throttled(rng: random.Random) -> Answer:
    draw = rng.random()
    if draw < 0.2:
        return Answer("status", 429, (("Retry-After", "1"),))
    if draw < 0.3:
        return Answer("status", 503, (("Retry-After", "2"),))
    return Answer("ok", 202)


def _hanging(rng: random.Random) -> Answer:
    return Answer("hang") if rng.random() < 0.04 else OK


def _dripping(rng: random.Random) -> Answer:
    return Answer("drip") if rng.random() < 0.04 else OK


def _resetting(rng: random.Random) -> Answer:
    return Answer("reset") if rng.random() < 0.2 else OK


def _redirecting(rng: random.Random) -> Answer:
    draw = rng.random()
    if draw < 0.1:
        return Answer("redirect", 302, (("Location", METADATA_URL),))
    if draw < 0.2:
        return Answer("redirect", 307, (("Location", "{trap}"),))
    return OK


def _down(rng: random.Random) -> Answer:
    return Answer("status", 503)


# name -> (how it answers, the filters its endpoints subscribe with)
PROFILES: dict[str, tuple[Callable[[random.Random], Answer], list[str]]] = {
    "steady": (_steady, ["rollout.*", "device.*", "artifact.*"]),
    "flaky": (_flaky, ["rollout.*", "device.*"]),
    "throttled": (_throttled, ["*"]),
    "hanging": (_hanging, ["rollout.created", "rollout.state_changed", "device.*"]),
    "dripping": (_dripping, ["rollout.*", "artifact.published"]),
    "resetting": (_resetting, ["device.*", "rollout.*"]),
    "redirecting": (_redirecting, ["rollout.*", "device.status_changed"]),
    "down": (_down, ["artifact.revoked"]),
}


class Trap:
    """A listener that must never be reached: it counts every connection made to it."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/stolen"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def stop(self) -> None:
        self._server.close()


@dataclass
class Receiver:
    name: str
    tenant: str
    answer: Callable[[random.Random], Answer]
    seed: int
    trap_url: str
    hang_seconds: float
    drip_seconds: float
    secret: str | None = None
    endpoint_id: str | None = None
    accepted: Counter[int] = field(default_factory=Counter)  # audit sequence -> 2xx answers
    bad_signatures: int = 0
    refusals: list[str] = field(default_factory=list)  # why, for the first few bad signatures
    verified: int = 0
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    last_accept: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/{self.name}"

    def start(self) -> None:
        rng = random.Random(f"{self.seed}/{self.tenant}/{self.name}")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests += 1
                    answer = receiver.answer(rng)
                    receiver.answers[answer.kind] += 1
                try:
                    self._answer(answer, body)
                except OSError:
                    self.close_connection = True  # the sender gave up: expected for slow answers

            def _answer(self, answer: Answer, body: bytes) -> None:
                if answer.kind == "hang":
                    time.sleep(receiver.hang_seconds)
                    self.close_connection = True
                    return
                if answer.kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if answer.kind == "drip":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(receiver.drip_seconds)
                    self.close_connection = True
                    return
                if answer.kind == "ok" and not receiver._accept(body, self.headers.get("X-Meshanics-Signature", "")):
                    answer = Answer("status", 401)  # what a verifying receiver answers to a forgery
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value.replace("{trap}", receiver.trap_url))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _accept(self, body: bytes, header: str) -> bool:
        assert self.secret is not None, "the receiver's secret is set once its endpoint exists"
        try:
            verify(body, header, self.secret, tolerance=600)
        except SignatureVerificationError as refused:
            with self._lock:
                self.bad_signatures += 1
                if len(self.refusals) < 5:
                    self.refusals.append(f"{refused} (header {header[:120]!r}, body {body[:160]!r})")
            return False
        envelope: dict[str, Any] = json.loads(body)
        with self._lock:
            self.verified += 1
            self.accepted[int(envelope["sequence"])] += 1
            self.last_accept = time.monotonic()
        return True

    def sequences(self) -> set[int]:
        """The sequences answered 2xx so far (a snapshot: requests keep arriving)."""
        with self._lock:
            return set(self.accepted)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

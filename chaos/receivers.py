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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshanics.signing import SIGNATURE_HEADER, SignatureVerificationError, verify
from meshanics_local.receiver import Behaviour, Received
from meshanics_local.receiver import Receiver as LoopbackReceiver

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
    _server: LoopbackReceiver | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def start(self) -> None:
        rng = random.Random(f"{self.seed}/{self.tenant}/{self.name}")

        def respond(received: Received) -> Behaviour:
            with self._lock:
                self.requests += 1
                answer = self.answer(rng)
                self.answers[answer.kind] += 1
            if answer.kind == "hang":
                return Behaviour(delay=self.hang_seconds, silent=True)
            if answer.kind == "reset":
                return Behaviour(reset=True)
            if answer.kind == "drip":
                return Behaviour(drip_head=self.drip_seconds)
            if answer.kind == "ok" and not self._accept(received.body, received.headers.get(SIGNATURE_HEADER, "")):
                return Behaviour(401)  # what a verifying receiver answers to a forgery
            return Behaviour(answer.status, headers={k: v.replace("{trap}", self.trap_url) for k, v in answer.headers})

        self._server = LoopbackReceiver(respond, path=f"/hooks/{self.name}").start()

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
            self._server.stop()

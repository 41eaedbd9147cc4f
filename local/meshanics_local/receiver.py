"""Webhook receivers on loopback: the README's verifying demo receiver, and the scriptable one the tests
and the chaos run build on (one HTTP server, its answers decided per request).

    python -m meshanics_local.receiver --port 9000 --secret-file .local/receiver-secret

The demo checks every delivery's `X-Meshanics-Signature` with `meshanics.signing.verify` against the
secret in the file (read on each request, so it can be started before the endpoint exists and
follows a rotation), prints what arrived, and answers 204, or 401 when the signature is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from meshanics.signing import SIGNATURE_HEADER, SignatureVerificationError, verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    """How to answer one request."""

    status: int = 200
    delay: float = 0.0  # seconds before answering
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: bool = False  # close the connection abruptly (RST) instead of answering
    silent: bool = False  # close the connection without answering (after the delay)
    drip: float = 0.0  # seconds between body bytes (a slow body)
    drip_head: float = 0.0  # seconds between bytes of the status line and headers (a stalling answer)


class Receiver:
    """A real HTTP server (on 127.0.0.1 unless told). `respond` decides each answer; by default the queued
    `behaviours` are used in order, the last one repeating (200 when there are none)."""

    def __init__(
        self,
        respond: Callable[[Received], Behaviour] | None = None,
        *,
        path: str = "/hook",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.requests: list[Received] = []
        self.behaviours: list[Behaviour] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._respond = respond or self._next
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}{path}"

    def _next(self, received: Received) -> Behaviour:
        with self._lock:
            if not self.behaviours:
                return Behaviour()
            return self.behaviours.pop(0) if len(self.behaviours) > 1 else self.behaviours[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received = Received(self.path, dict(self.headers), self.rfile.read(length))
                with receiver._lock:
                    receiver.requests.append(received)
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    self._answer(receiver._respond(received))
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the sender gave up (a deadline): expected
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def _answer(self, b: Behaviour) -> None:
                time.sleep(b.delay)
                if b.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                if b.reset or b.silent:
                    self.close_connection = True
                    return
                if b.drip_head:
                    self._drip(f"HTTP/1.1 {b.status} OK\r\nContent-Length: {len(b.body)}\r\n\r\n".encode(), b.drip_head)
                else:
                    self.send_response(b.status)
                    for name, value in b.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(b.body)))
                    self.end_headers()
                self._drip(b.body, b.drip)

            def _drip(self, data: bytes, pause: float) -> None:
                """Write `data` at once, or byte by byte `pause` seconds apart."""
                for part in [data[i : i + 1] for i in range(len(data))] if pause else [data]:
                    self.wfile.write(part)
                    self.wfile.flush()
                    time.sleep(pause)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            time.sleep(0.02)
        return self.requests


@contextlib.contextmanager
def running_receiver(configure: Callable[[Receiver], None] | None = None) -> Iterator[Receiver]:
    receiver = Receiver()
    if configure:
        configure(receiver)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def verifying(secret_file: Path) -> Callable[[Received], Behaviour]:
    """The demo receiver's answer: 204 for a delivery signed with the secret in `secret_file`, else 401."""

    def respond(received: Received) -> Behaviour:
        try:
            verify(received.body, received.headers.get(SIGNATURE_HEADER, ""), secret_file.read_text().strip())
        except (OSError, SignatureVerificationError) as problem:
            print(f"REJECTED {received.headers.get('X-Meshanics-Delivery', '?')}: {problem}", flush=True)
            return Behaviour(401)
        envelope = json.loads(received.body)
        print(
            f"verified {envelope['type']} sequence={envelope['sequence']} "
            f"key={envelope['idempotency_key']} data={json.dumps(envelope['data'])}",
            flush=True,
        )
        return Behaviour(204)

    return respond


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Receive and verify Meshanics webhooks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret-file", type=Path, default=Path(".local/receiver-secret"))
    args = parser.parse_args(argv)
    receiver = Receiver(verifying(args.secret_file), path="/", host=args.host, port=args.port)
    print(f"receiving on {receiver.url} (secret from {args.secret_file})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        receiver.server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

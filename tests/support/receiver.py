"""A real HTTP receiver on loopback whose behaviour each test scripts."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: bool = False  # close the connection abruptly (RST) instead of answering
    drip: float = 0.0  # seconds between body bytes (a slow body)
    drip_head: float = 0.0  # seconds between bytes of the status line and headers (a stalling answer)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.behaviours: list[Behaviour] = []  # consumed in order; the last one repeats
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    behaviour = receiver._next()
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    self._answer(behaviour)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the sender gave up (a deadline): expected
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def _answer(self, b: Behaviour) -> None:
                if b.delay:
                    time.sleep(b.delay)
                if b.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if b.drip_head:
                    head = f"HTTP/1.1 {b.status} OK\r\nContent-Length: {len(b.body)}\r\n\r\n".encode()
                    for byte in head:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(b.drip_head)
                    self.wfile.write(b.body)
                    return
                self.send_response(b.status)
                for name, value in b.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(b.body)))
                self.end_headers()
                if b.drip:
                    for byte in b.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(b.drip)
                else:
                    self.wfile.write(b.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _next(self) -> Behaviour:
        if not self.behaviours:
            return Behaviour()
        return self.behaviours.pop(0) if len(self.behaviours) > 1 else self.behaviours[0]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.requests
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


@contextmanager
def running_receiver(configure: Callable[[Receiver], None] | None = None) -> Iterator[Receiver]:
    receiver = Receiver()
    if configure:
        configure(receiver)
    thread = threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()

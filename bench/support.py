"""What the benchmarks share: the template's resources in a moto server, handlers in this process,
receivers in their own processes (so this process's CPU time is the platform's own work)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def aws_resources(overrides: dict[str, str] | None = None) -> Iterator[Any]:
    """moto in its own process with the template's resources; this process's env points the core at it."""
    from meshanics import services
    from meshanics_local.stack import LocalPlatform

    with tempfile.TemporaryDirectory() as state:
        stack = LocalPlatform(
            api_port=0,
            aws_port=0,
            state_dir=Path(state),
            parameter_overrides=overrides,
            demo_key=False,
            run_functions=False,
        )
        with stack:
            saved = dict(os.environ)
            os.environ.update(stack.environment("DeliverFunction"))
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
            os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
            os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
            services.reset()
            try:
                yield stack
            finally:
                os.environ.clear()
                os.environ.update(saved)
                services.reset()


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py as Lambda would (fresh, with its own directory first)."""
    for name in ("app", "models"):
        sys.modules.pop(name, None)
    path = str(ROOT / "functions" / function)
    sys.path.insert(0, path)
    try:
        return importlib.import_module("app")
    finally:
        sys.path.remove(path)


class Context:
    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _serve(delay: float, conn: Connection) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if delay:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    conn.send(server.server_address[1])
    server.serve_forever()


@contextmanager
def receiver(delay_ms: int) -> Iterator[str]:
    """A keep-alive HTTP receiver in its own process answering 200 after `delay_ms`."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(delay_ms / 1000, child), daemon=True)
    process.start()
    port = parent.recv()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.kill()
        process.join()

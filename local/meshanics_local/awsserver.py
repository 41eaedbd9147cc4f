"""The AWS emulation: moto in server mode on loopback, in a process of its own.

moto keeps its state in module-level backends. Running the server in a child process keeps that
state away from anything else in the parent (tests that use `moto.mock_aws` reset every backend
when they finish) and lets moto's request handling use a core of its own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from meshanics_local.template import REGION

DUMMY_KEY = "local"  # moto accepts any credentials


def _serve(port: int, conn: Connection, log_path: str) -> None:
    """Child process: run ThreadedMotoServer until the parent says stop (or goes away)."""
    from meshanics_local.workers import ignore_stop_signals

    ignore_stop_signals()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except OSError as error:
        conn.send(("error", f"cannot listen on 127.0.0.1:{port}: {error}"))
        return
    conn.send(("ready", server.get_host_and_port()[1]))
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    server.stop()


class AwsServer:
    """moto on http://127.0.0.1:<port> (0 picks a free port)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self._requested_port = port
        self._log_path = log_path
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the child (moto imports take a moment; `wait_ready` collects the port)."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_serve, args=(self._requested_port, child, str(self._log_path)), name="moto", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent

    def wait_ready(self, timeout: float = 60.0) -> str:
        assert self._conn is not None
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the AWS emulation did not start within {timeout:.0f}s (see {self._log_path})")
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the AWS emulation exited while starting (see {self._log_path})") from None
        if status != "ready":
            raise RuntimeError(str(value))
        self.port = int(value)
        return self.url

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(2)
            self._process = None


def client(service: str, endpoint: str) -> Any:
    """A boto3 client for the local emulation (its own session: creation is not thread-safe)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]

"""boto3 clients, created once per process and reused across invocations.

The endpoint comes from boto3's own `AWS_ENDPOINT_URL` variable, which the local stack points at
its moto server; nothing here knows whether it talks to AWS or to the local stack.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=10,
    max_pool_connections=20,
)
_lock = threading.Lock()


@cache
def _client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)  # type: ignore[call-overload]


def client(service: str) -> Any:
    """A shared client; creation is serialized because boto3 sessions are not thread-safe."""
    with _lock:
        return _client(service)


def reset_clients() -> None:
    """Forget cached clients (tests switch AWS endpoints between cases)."""
    _client.cache_clear()

"""boto3 clients, created once per process and reused across invocations.

The endpoint comes from boto3's own `AWS_ENDPOINT_URL` variable, which the local platform points at
its moto server; nothing here knows whether it talks to AWS or to the local platform.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from meshanics.errors import TransientFailure

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


# Error codes AWS answers for a request that may succeed if made again later.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSInternalException",
        "DependencyTimeoutException",
        "TransactionInProgressException",
        "KMS.ThrottlingException",
        "AWS.SimpleQueueService.ServiceUnavailable",
        "RequestThrottled",
    }
)


def is_transient(error: BaseException) -> bool:
    """True for an AWS failure that says nothing about the request itself (throttling, 5xx, network):
    work that meets one is retried later, never settled."""
    if isinstance(error, TransientFailure):
        return True
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _TRANSIENT_CODES or status >= 500
    return isinstance(error, BotoCoreError)  # connection errors, timeouts, retries exhausted

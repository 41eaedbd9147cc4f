"""Fixtures of the tenant API tests.

Provisioning the template's resources in moto costs far more than a request, so each test module
shares one in-process AWS and one set of loaded handlers; every test starts from empty tables and
queues and a stream read to its end, which is what a fresh deployment looks like.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from meshanics import services
from tests.api.support import DNS
from tests.conftest import provision
from tests.support.harness import Platform

KEYS: dict[str, tuple[str, ...]] = {
    "INTEGRATIONS_TABLE": ("pk", "sk"),
    "AUDIT_TABLE": ("partition", "sequence"),
    "IDEMPOTENCY_TABLE": ("id",),
}


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Hermetic name resolution: the names in support.DNS answer what a test sets, IP literals and
    localhost resolve as usual, every other name does not exist. Tests may edit the returned map."""
    answers = {name: list(addresses) for name, addresses in DNS.items()}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in answers:
            number = int(port or 0)
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (address, number, 0, 0) if ":" in address else (address, number),
                )
                for address in answers[name]
            ]
        if name == "localhost" or _is_literal(name):
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield answers


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, str]]:
    """moto with the template's resources for the whole module; the core's env points at them."""
    from moto import mock_aws

    saved = dict(os.environ)
    with mock_aws():
        env = provision()
        os.environ.update(env)
        services.reset()
        try:
            yield env
        finally:
            services.reset()
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="module")
def shared_platform(world: dict[str, str]) -> Platform:
    return Platform(world)


def wipe(platform: Platform) -> None:
    """Empty the tables and queues and read the audit stream to its end."""
    ddb = boto3.client("dynamodb")
    for variable, key_names in KEYS.items():
        table = platform.env[variable]
        keys: list[dict[str, Any]] = []
        names = {f"#k{i}": name for i, name in enumerate(key_names)}
        kwargs: dict[str, Any] = {"TableName": table, "ProjectionExpression": ", ".join(names)}
        kwargs["ExpressionAttributeNames"] = names
        while True:
            page = ddb.scan(**kwargs)
            keys += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # A tenant's sequence counter survives (as in a deployment: sequences are never reused, and
        # producers hold reserved blocks of it); only its counts start afresh.
        counters = [k for k in keys if k.get("sk", {}).get("S") == "#TENANT"]
        for key in counters:
            ddb.update_item(TableName=table, Key=key, UpdateExpression="REMOVE endpoint_count, registry_count")
        keys = [k for k in keys if k not in counters]
        for start in range(0, len(keys), 25):
            requests: list[Any] = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            ddb.batch_write_item(RequestItems={table: requests})
    sqs = boto3.client("sqs")
    for name in ("DELIVERY_QUEUE_URL", "DELIVERY_DLQ_URL"):
        # Not PurgeQueue: it is allowed once a minute. Jobs left invisible (a retry's delay) find
        # no endpoint when they surface and are dropped, as after a deletion.
        while True:
            messages = sqs.receive_message(QueueUrl=platform.env[name], MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for message in messages:
                sqs.delete_message(QueueUrl=platform.env[name], ReceiptHandle=message["ReceiptHandle"])
    while platform.stream.records():
        pass


@pytest.fixture
def aws(world: dict[str, str]) -> dict[str, str]:
    return world


@pytest.fixture
def platform(shared_platform: Platform) -> Platform:
    wipe(shared_platform)
    return shared_platform


@pytest.fixture
def configured(platform: Platform) -> Iterator[Any]:
    """Start the functions again with other settings (as a deployment with other parameters would):
    `configured(NAME=value, ...)` returns a platform whose handlers read them at start."""
    saved = dict(os.environ)

    def start(**settings: str) -> Platform:
        os.environ.update(settings)
        services.reset()
        fresh = Platform(platform.env)
        while fresh.stream.records():
            pass
        return fresh

    try:
        yield start
    finally:
        os.environ.clear()
        os.environ.update(saved)
        services.reset()

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)
# botocore addresses DynamoDB Streams by account-based hostnames that moto does not route.
os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"


@functools.cache
def _template() -> Any:
    from meshanics_local.template import translate

    return translate(ROOT / "template.yaml")


def provision() -> dict[str, str]:
    """The template's resources in the active moto mock, deployed by the local platform's own path
    (meshanics_local.functions.provision); returns the environment the template gives its functions."""
    from meshanics_local.functions import provision, template_environment

    env = template_environment(provision(_template(), None).functions)
    # In-process tests read the subscription index afresh for every event (no cache to wait out).
    return env | {"SUBSCRIPTION_CACHE_MS": "0"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto in-process with the template's resources; the core's env is the functions' env from the template."""
    from moto import mock_aws

    from meshanics import services

    with mock_aws():
        env = provision()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        services.reset()
        yield env
        services.reset()


def load_handler(name: str):  # type: ignore[no-untyped-def]
    """Import functions/<name>/app.py fresh (as Lambda would at cold start) and return the module."""
    import importlib

    path = str(ROOT / "functions" / name)
    # Every module of a function directory is top-level (`app`, `models`, ...): forget them all, so
    # this function's are imported from its directory, read with the current environment.
    for module in {p.stem for d in (ROOT / "functions").iterdir() for p in d.glob("*.py")}:
        sys.modules.pop(module, None)
    sys.path.insert(0, path)
    try:
        return importlib.import_module("app")
    finally:
        sys.path.remove(path)


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    from meshanics_local.receiver import running_receiver

    with running_receiver() as r:
        yield r


@pytest.fixture
def platform(aws: dict[str, str]):  # type: ignore[no-untyped-def]
    from tests.support.harness import Platform

    return Platform(aws)

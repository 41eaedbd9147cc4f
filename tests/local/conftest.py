"""Fixtures for the local platform's tests: the translated template and its wiring, and
one local platform per test session (per xdist worker), shared by test_stack.py and test_faults.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshanics_local.apigateway import RestApi
from meshanics_local.awscalls import ENV as FAULTS_ENV
from meshanics_local.awscalls import FaultPlan
from meshanics_local.functions import provision
from meshanics_local.stack import LocalPlatform
from meshanics_local.template import Template, translate
from meshanics_local.workers import FunctionSpec

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


@dataclass
class Wiring:
    template: Template
    functions: dict[str, FunctionSpec]
    api: RestApi


@pytest.fixture(scope="session")
def wiring(tmp_path_factory: pytest.TempPathFactory) -> Wiring:
    """template.yaml translated and provisioned into moto in this process (as the tests' `aws` fixture
    does): its functions and REST API."""
    from moto import mock_aws

    template = translate(ROOT / "template.yaml")
    with mock_aws():
        wired = provision(template, None, log_dir=tmp_path_factory.mktemp("logs"))
    assert wired.rest_api is not None
    return Wiring(template, wired.functions, wired.rest_api)


OVERRIDES = {"DeliveryRetrySchedule": "0,1,1", "DeliveryMaxAttempts": "3", "DeliveryMaxReceives": "6"}
# Every SQS request of ReplayFunction fails (test_faults.py). No trigger invokes it during the tests:
# its schedule is every 15 minutes, and the stack's first tick would come 15 minutes after the start.
REPLAY_FAULTS = FaultPlan(seed=5, error_rate=1.0, services=frozenset({"sqs"}))
FUNCTION_ENVIRONMENT = {
    "*": {"MESHANICS_TEST_MARK": "every function"},
    "ReplayFunction": {"MESHANICS_TEST_MARK": "replay only", FAULTS_ENV: REPLAY_FAULTS.to_env()},
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    state = tmp_path_factory.mktemp("local-stack")
    with LocalPlatform(
        api_port=0,
        aws_port=0,
        state_dir=state,
        parameter_overrides=OVERRIDES,
        pool_sizes={"*": 1},
        function_environment=FUNCTION_ENVIRONMENT,
    ) as s:
        yield s

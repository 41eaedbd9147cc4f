"""Fixtures for the local stack's tests: the translated template and its wiring, read offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from meshanics_local import resources
from meshanics_local.functions import function_specs, rest_api
from meshanics_local.routes import RestApi
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
    """template.yaml translated, with synthetic resources (no AWS): functions and the REST API."""
    template = translate(ROOT / "template.yaml")
    offline = resources.offline(template, "meshanics")
    resolver = offline.resolver(template, "meshanics")
    specs = function_specs(
        template, offline, resolver, endpoint="http://127.0.0.1:9", log_dir=tmp_path_factory.mktemp("logs")
    )
    api = rest_api(template, specs, offline, resolver)
    assert api is not None
    return Wiring(template, specs, api)

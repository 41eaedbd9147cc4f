"""Fixtures for the registry tests: real upstream registries (started once per worker) and the door.

`upstreams` starts the distribution registry twice over one storage directory: once with htpasswd
(basic) auth, where the test artifacts are pushed, and once with token auth trusting `TokenServer`.
`door` calls the functions' handlers in-process against moto, as API Gateway would after the
authorizer (the tenant and scopes arrive in the authorizer context): `/v1/registries` the API
function, `/v2` the registry function.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from meshanics import services
from tests.conftest import load_handler
from tests.registry.upstreams import (
    PASSWORD,
    USER,
    Pushed,
    RegistryProcess,
    TokenServer,
    htpasswd_auth,
    push_image,
    push_index,
)
from tests.support.harness import ApiResponse
from tests.support.lambda_events import Context, api_event, authorizer_context

OPERATOR = ["registries:operator"]
READER = ["integrations:read"]
DEVICE = ["artifacts:pull"]


@dataclass
class Upstreams:
    workdir: Path
    storage: Path
    basic: RegistryProcess
    token: RegistryProcess
    tokens: TokenServer
    images: dict[str, Pushed] = field(default_factory=dict)

    def spare(self) -> RegistryProcess:
        """Another basic-auth registry over the same storage, for tests that stop their upstream."""
        return RegistryProcess(self.workdir, self.storage, htpasswd_auth(self.workdir)).start()


@pytest.fixture(scope="session")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    workdir = tmp_path_factory.mktemp("upstreams")
    storage = workdir / "storage"
    storage.mkdir()
    basic = RegistryProcess(workdir, storage, htpasswd_auth(workdir)).start()
    tokens = TokenServer(workdir)
    token = RegistryProcess(workdir, storage, tokens.auth_config()).start()
    try:
        web = push_image(basic.url, "apps/web", [os.urandom(2048), os.urandom(30_000)])
        web_docker = push_image(basic.url, "apps/web", [os.urandom(4096)], docker=True)
        images = {
            "web": web,
            "web-docker": web_docker,
            "web-index": push_index(basic.url, "apps/web", [web, web_docker]),
            "big": push_image(basic.url, "apps/big", [os.urandom(300_000), os.urandom(1000)]),
            "other": push_image(basic.url, "other/thing", [os.urandom(1500)]),
        }
        yield Upstreams(workdir, storage, basic, token, tokens, images)
    finally:
        token.stop()
        basic.stop()
        tokens.close()


@dataclass
class Answer(ApiResponse):
    @property
    def error_code(self) -> str:
        return str(self.json["errors"][0]["code"])


class Door:
    """The handlers behind the registry routes, called with API Gateway REST proxy events."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._modules: dict[str, ModuleType] = {}

    def configure(self, **env: str) -> None:
        """Set environment variables and start the functions again (a new cold start)."""
        for name, value in env.items():
            self._monkeypatch.setenv(name, value)
        self._modules = {}

    def handler(self, function: str) -> ModuleType:
        if not self._modules:
            services.reset()
            services.registries.cache_clear()
            services.pull_facade.cache_clear()
        if function not in self._modules:
            self._modules[function] = load_handler(function)
        return self._modules[function]

    @property
    def module(self) -> ModuleType:
        """The registry function (the pull facade)."""
        return self.handler("registry")

    def call(
        self,
        method: str,
        path: str,
        *,
        tenant: str = "acme",
        scopes: list[str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        accept: list[str] | None = None,
        key_id: str = "0123456789abcdef",
    ) -> Answer:
        context = authorizer_context(tenant, scopes if scopes is not None else DEVICE, key_id=key_id)
        pairs = [*(headers or {}).items(), *(("Accept", value) for value in accept or [])]
        content_type = None if body is None else "application/json"
        event = api_event(
            method, path, body=body, headers=pairs, query=query, authorizer=context, content_type=content_type
        )
        function = "registry" if path == "/v2" or path.startswith("/v2/") else "api"  # as template.yaml routes
        result = self.handler(function).lambda_handler(event, Context(function))
        raw = result.get("body") or ""
        data = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        merged = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            merged.setdefault(name, ",".join(values))
        return Answer(result["statusCode"], merged, data)

    # -- operator shortcuts -----------------------------------------------------------------------
    def connect(
        self,
        url: str,
        *,
        name: str = "corp",
        tenant: str = "acme",
        credentials: dict[str, str] | None = None,
        approve: bool = True,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "upstream_url": url,
            "credentials": credentials or {"type": "basic", "username": USER, "password": PASSWORD},
            "allow_private_network": True,
        }
        created = self.call("POST", "/v1/registries", tenant=tenant, scopes=OPERATOR, body=body)
        assert created.status == 201, created.json
        if approve:
            approved = self.call("POST", f"/v1/registries/{created.json['id']}/approve", tenant=tenant, scopes=OPERATOR)
            assert approved.status == 200, approved.json
            return approved.json  # type: ignore[no-any-return]
        return created.json  # type: ignore[no-any-return]

    def pull(self, method: str, path: str, **kwargs: Any) -> Answer:
        return self.call(method, f"/v2/{path}", **kwargs)


@pytest.fixture
def door(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Door]:
    yield Door(monkeypatch)
    services.registries.cache_clear()
    services.pull_facade.cache_clear()

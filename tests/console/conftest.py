"""The console in a real browser: Debian's chromium, driven by Playwright, against one local platform.

One stack and one browser per test session (per xdist worker); each test gets a fresh browser
context (its own sessionStorage, cookies and clipboard), its own tenant, and real loopback
receivers. A test fails on any uncaught page error, any dialog (alert, confirm, prompt), any console
error it did not expect, and on the API key showing up in a URL, a cookie or localStorage.
Screenshots of each flow go to $CONSOLE_SCREENSHOTS/<test>/ if set, else to the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, expect, sync_playwright

from meshanics.store.apikeys import ApiKeyStore
from meshanics_local.stack import LocalPlatform

pytestmark = pytest.mark.e2e

# Short retries so a failing receiver settles its delivery as failed within seconds.
OVERRIDES = {"DeliveryRetrySchedule": "0,1,1", "DeliveryMaxAttempts": "3", "DeliveryMaxReceives": "6"}
ADMIN = ("integrations:admin", "events:write")
READ_ONLY = ("integrations:read",)
OPERATOR = ("registries:operator",)
EVERY_SCOPE = ("integrations:admin", "events:write", "registries:operator")

# Room for a loaded machine (the local platform shares two cores with the rest of the suite).
expect.set_options(timeout=10_000)


def chromium_path() -> str:
    """Debian's chromium (installed by `make system-deps`), or MESHANICS_CHROMIUM."""
    found = os.environ.get("MESHANICS_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is not installed: run `make system-deps` (apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with LocalPlatform(
        api_port=0,
        aws_port=0,
        state_dir=tmp_path_factory.mktemp("console-stack"),
        parameter_overrides=OVERRIDES,
        # Two API workers (the endpoint list asks for each endpoint's health side by side), one of the rest.
        pool_sizes={"*": 1, "ApiFunction": 2},
    ) as running:
        yield running


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
    yield launched
    launched.close()


@dataclass
class Tenant:
    """A tenant of its own for one test, and keys for it."""

    stack: LocalPlatform
    name: str

    def key(self, scopes: tuple[str, ...]) -> str:
        table = self.stack.environment("ApiFunction")["INTEGRATIONS_TABLE"]
        dynamodb = self.stack.client("dynamodb")
        key: str = ApiKeyStore(lambda: dynamodb, table).create(self.name, scopes, name="console test")[0]
        return key

    def call(self, key: str, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(
            method, f"{self.stack.api_url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert response.ok, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None


@pytest.fixture
def tenant(stack: LocalPlatform, request: pytest.FixtureRequest) -> Tenant:
    # Tenant ids are lower-case letters, digits and dashes: one per test keeps their lists apart.
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    return Tenant(stack, f"c-{name}")


@dataclass
class Console:
    """A browser tab on the console, watching for what must not happen."""

    page: Page
    context: BrowserContext
    url: str
    shots: Path
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    allowed_errors: list[str] = field(default_factory=list)
    _count: int = 0

    def open(self, fragment: str = "") -> None:
        self.page.goto(self.url + fragment)

    def sign_in(self, key: str) -> None:
        self.keys.append(key)
        self.open()
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("button", name="Sign out").wait_for()

    def shot(self, name: str) -> Path:
        self._count += 1
        path = self.shots / f"{self._count:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def allow_console_error(self, pattern: str) -> None:
        """A console error this flow causes on purpose (e.g. the browser logging a refused key's 401)."""
        self.allowed_errors.append(pattern)

    def unexpected_console_errors(self) -> list[str]:
        return [e for e in self.console_errors if not any(re.search(p, e) for p in self.allowed_errors)]

    def key_leaks(self) -> list[str]:
        """Where a signed-in key shows up that it must not: URLs, cookies, localStorage."""
        leaks = []
        for key in self.keys:
            leaks += [f"request URL {u}" for u in self.requested if key in u]
            leaks += [f"page URL {u}" for u in self.visited if key in u]
            leaks += [f"cookie {c['name']}" for c in self.context.cookies() if key in c["value"]]
            if not self.page.is_closed():
                local = self.page.evaluate("() => JSON.stringify(Object.entries(localStorage))")
                if key in local:
                    leaks.append("localStorage")
        return leaks


@pytest.fixture
def console(
    browser: Browser, stack: LocalPlatform, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Console]:
    root = os.environ.get("CONSOLE_SCREENSHOTS")
    shots = Path(root) / request.node.name if root else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
        base_url=stack.api_url,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    tab = Console(page, context, f"{stack.api_url}/console", shots)
    page.on("pageerror", lambda error: tab.page_errors.append(str(error)))
    page.on("console", lambda message: _console(tab, message))
    page.on("dialog", lambda dialog: (tab.dialogs.append(f"{dialog.type}: {dialog.message}"), dialog.dismiss()))
    page.on("request", lambda sent: tab.requested.append(sent.url))
    page.on("framenavigated", lambda frame: tab.visited.append(frame.url))
    yield tab
    try:
        assert tab.dialogs == [], f"the page opened dialogs: {tab.dialogs}"
        assert tab.page_errors == [], f"uncaught errors in the page: {tab.page_errors}"
        assert tab.unexpected_console_errors() == [], f"console errors: {tab.unexpected_console_errors()}"
        assert tab.key_leaks() == [], f"the API key leaked: {tab.key_leaks()}"
    finally:
        context.close()


def _console(tab: Console, message: ConsoleMessage) -> None:
    if message.type == "error":
        tab.console_errors.append(message.text)

"""How the API serves the tenant console: the page (never cached, strict CSP), its assets (named by
their content hash, cached for a year), and GET /v1/whoami that the console signs in with.
The console itself is tested in a real browser in tests/console."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.api.support import ADMIN, EVENTS, READ, SCOPES, TENANT, assert_error
from tests.support.harness import Platform

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "functions" / "api" / "console"
PUBLIC: dict[str, object] = {}  # the console's routes have no authorizer (template.yaml)


def page(platform: Platform, path: str = "/console"):  # type: ignore[no-untyped-def]
    return platform.api("GET", path, context=PUBLIC)


def asset_paths(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(console/assets/[^"]+)"', html)


def test_the_page_is_public_not_cached_and_under_a_strict_policy(platform: Platform) -> None:
    response = page(platform)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"  # nothing inline
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'none'" and policy["base-uri"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'" and policy["trusted-types"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    html = response.body.decode()
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers either


def test_assets_are_named_by_content_hash_and_cached_for_a_year(platform: Platform) -> None:
    html = page(platform).body.decode()
    paths = asset_paths(html)
    assert {p.rsplit("/", 1)[1] for p in paths} >= {"app.js", "console.css", "icon.svg"}
    versions = {p.split("/")[2] for p in paths}
    assert len(versions) == 1
    (version,) = versions
    digest = hashlib.sha256()
    for path in sorted(p for p in ASSETS.iterdir() if p.name != "index.html"):
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    assert version == digest.hexdigest()[:16]  # any change to any asset gives a new name
    for path in sorted(ASSETS.iterdir()):
        if path.name == "index.html":
            continue
        response = platform.api("GET", f"/console/assets/{version}/{path.name}", context=PUBLIC)
        assert response.status == 200, path.name
        assert response.body == path.read_bytes()  # served as written: no build step
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        expected = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
        assert response.headers["Content-Type"] == expected[path.suffix]


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/0000000000000000/app.js",  # another version: never new code under an old name
        "/console/assets/{version}/index.html",
        "/console/assets/{version}/nope.js",
        "/console/assets/{version}/..%2Fapp.py",
    ],
)
def test_unknown_assets_are_404_in_the_error_shape(platform: Platform, path: str) -> None:
    version = asset_paths(page(platform).body.decode())[0].split("/")[2]
    response = platform.api("GET", path.format(version=version), context=PUBLIC)
    assert_error(response, 404, "not_found")
    assert response.headers["Cache-Control"] == "no-store"


def test_a_trailing_slash_is_sent_to_the_page_so_relative_addresses_resolve(platform: Platform) -> None:
    response = page(platform, "/console/")
    assert response.status == 308
    assert response.headers["Location"] == "../console"


def test_every_asset_address_in_the_page_is_relative(platform: Platform) -> None:
    # On API Gateway the page lives under the stage (/<stage>/console): absolute paths would miss it.
    html = page(platform).body.decode()
    assert not re.search(r'(?:src|href)="/', html)
    scripts = "".join(p.read_text() for p in ASSETS.glob("*.js"))
    assert 'fetch("/' not in scripts
    # Text only: no HTML sink in the code (the page's Trusted Types policy would make one throw).
    assert not re.search(r"(?:inner|outer)HTML\s*=|insertAdjacentHTML\(|document\.write|eval\(|new Function", scripts)


def test_whoami_names_the_tenant_and_scopes_of_the_key(platform: Platform) -> None:
    key = platform.key(TENANT, [READ, EVENTS])
    response = platform.api("GET", "/v1/whoami", key=key)
    assert response.status == 200
    assert response.json == {"tenant_id": TENANT, "key_id": key.split("_")[1], "scopes": sorted([READ, EVENTS])}
    for scope in SCOPES:  # any key may ask who it is
        assert platform.api("GET", "/v1/whoami", key=platform.key(TENANT, [scope])).json["scopes"] == [scope]
    assert platform.api("GET", "/v1/whoami", key=platform.key(TENANT, [ADMIN])).json["scopes"] == [ADMIN]
    assert_error(platform.api("GET", "/v1/whoami", context={}), 401, "unauthorized")

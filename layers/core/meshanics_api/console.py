"""The tenant console as the API serves it: one page and its assets, named by their content hash.

    console = Console(Path(__file__).parent / "console")
    console.page(path)                     # GET /console
    console.asset(version, name)           # GET /console/assets/<version>/<name>

The assets (every file of the directory but `index.html`) are read once, at import, and `version` is
the first 16 hex digits of a SHA-256 over their names and bytes: any change to any asset gives a
new version, so the assets can be cached for a year (`immutable`), while the page, which names the
version, is revalidated on every load (`no-cache`). The modules import each other by relative
paths, so they resolve inside the same version. A request for another version is a 404: an old
page never gets new code under an old name. There is no build step: the files are served as
written.

Every address in the page is relative (`console/assets/...`): on API Gateway the page lives under
the stage (`/<stage>/console`), locally at the root. `/console/` (which API Gateway and the
resolver route to the same handler) is redirected to `../console` so relative addresses resolve.

The page carries no data and keeps no state on the server: the browser signs in with an API key
that stays in the tab's sessionStorage and calls the JSON API with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response

from meshanics_api.errors import error_response

PAGE = "index.html"
ASSETS_PLACEHOLDER = "__ASSETS__"  # in index.html: replaced with console/assets/<version>

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# No inline script or style, nothing from another origin, no framing, no plugins, no <base>, no form
# posts (the sign-in form is handled by script: without it, nothing may send the key anywhere).
# Trusted Types with no policy: assigning a string to innerHTML (or any HTML sink) throws.
PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "manifest-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
ASSET_POLICY = "default-src 'none'; frame-ancestors 'none'"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    name: str
    media_type: str
    text: str


class Console:
    def __init__(self, directory: Path) -> None:
        assets: dict[str, Asset] = {}
        digest = hashlib.sha256()
        for path in sorted(p for p in directory.iterdir() if p.is_file() and p.name != PAGE):
            media_type = MEDIA_TYPES.get(path.suffix)
            if media_type is None:
                continue  # not an asset kind the console serves
            data = path.read_bytes()
            digest.update(f"{path.name}\0{len(data)}\0".encode())
            digest.update(data)
            assets[path.name] = Asset(path.name, media_type, data.decode("utf-8"))
        self.assets = assets
        self.version = digest.hexdigest()[:16]
        self.base = f"console/assets/{self.version}"
        self.page_text = (directory / PAGE).read_text(encoding="utf-8").replace(ASSETS_PLACEHOLDER, self.base)

    def page(self, path: str) -> Response[Any]:
        """The page; a path with a trailing slash is sent to the one without (relative addresses)."""
        if path.endswith("/"):
            return Response(
                status_code=308,
                content_type="text/plain; charset=utf-8",
                body="",
                headers={"Location": "../console", "Cache-Control": PAGE_CACHE, **SECURITY_HEADERS},
            )
        return Response(
            status_code=200,
            content_type="text/html; charset=utf-8",
            body=self.page_text,
            headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": PAGE_CACHE, **SECURITY_HEADERS},
        )

    def asset(self, version: str, name: str) -> Response[Any]:
        found = self.assets.get(name) if version == self.version else None
        if found is None:
            response = error_response(404, "not_found", "no such console asset (the console may have been updated)")
            response.headers.update({"Cache-Control": "no-store", **SECURITY_HEADERS})
            return response
        return Response(
            status_code=200,
            content_type=found.media_type,
            body=found.text,
            headers={"Content-Security-Policy": ASSET_POLICY, "Cache-Control": ASSET_CACHE, **SECURITY_HEADERS},
        )

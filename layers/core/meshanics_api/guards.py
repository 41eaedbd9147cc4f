"""Request guards that look at the raw proxy event: body size, JSON-only bodies, content type.

They run before Powertools parses anything (see ApiResolver.resolve).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from meshanics import untrusted
from meshanics_api.errors import proxy_error


def body_size(event: Mapping[str, Any]) -> int:
    """The request body's size in bytes, as the client sent it."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return len(body.encode())
    try:
        return len(base64.b64decode(body))
    except (binascii.Error, ValueError):
        return len(body) * 3 // 4


def oversized(event: Mapping[str, Any], max_request_bytes: int) -> dict[str, Any] | None:
    if body_size(event) > max_request_bytes:
        return proxy_error(413, "request_too_large", f"the request body exceeds {max_request_bytes} bytes")
    return None


def json_body_refusal(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why a request body cannot be a JSON object, as an error response; None when it can be.

    Checked ahead of Powertools, which would otherwise parse multipart and form bodies too (and fail
    with a 500 on a malformed one), take an array's first item for the object it wants (it unwraps
    lists for fields that are not sequences), and fail with a 500 on JSON it cannot parse: nested
    too deeply, or holding an integer past Python's 4,300-digit limit. A lone UTF-16 surrogate
    (`"\\ud800"`) is refused here too: it parses, then fails wherever it is written as UTF-8.
    """
    raw = event.get("body")
    if not raw:
        return None
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = str(headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in ("", "application/json"):
        return proxy_error(415, "unsupported_media_type", "the request body must be application/json")
    try:
        text = base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw)
        parsed = untrusted.loads(text)
    except binascii.Error:
        return None  # not base64: the resolver answers invalid_json
    except untrusted.Unparseable as error:
        if error.kind == "syntax":
            return None  # not JSON: the resolver answers invalid_json (routes without a body ignore it)
        if error.kind == "depth":
            return proxy_error(400, "invalid_json", "the request body is nested too deeply")
        return proxy_error(400, "invalid_request", error.message, error.field)
    if isinstance(parsed, list):
        return proxy_error(400, "invalid_request", "the request body must be a JSON object")
    return None


def lower_content_type(event: dict[str, Any]) -> None:
    """Media types are case-insensitive; Powertools compares them as they are."""
    for section in ("headers", "multiValueHeaders"):
        headers = event.get(section) or {}
        for name, value in headers.items():
            if str(name).lower() == "content-type":
                headers[name] = [str(v).lower() for v in value] if isinstance(value, list) else str(value).lower()


def one_header(event: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """A 400 if header `name` came more than once, in any spelling: Powertools would join the
    values with commas (or keep one of them), and two keys are no key."""
    wanted = name.lower()
    values = [
        value
        for given, sent in (event.get("multiValueHeaders") or {}).items()
        if str(given).lower() == wanted
        for value in (sent if isinstance(sent, list) else [sent])
    ]
    if len(values) > 1:
        return proxy_error(400, "invalid_request", f"{name}: give the header once", name)
    return None

"""Custom headers of an endpoint: what a tenant may add to each delivery, for receivers behind their
own gateways (an API key, a bearer token, a routing tag).

Pure rules, no AWS. A set is a few name -> value pairs within `Limits`; names are RFC 9110 tokens,
compared case-insensitively; values are printable ASCII. Refused are the names that would override or
confuse what the platform sends: its signature and delivery headers, the headers that describe the
(signed) body, Host and User-Agent, and the hop-by-hop headers that change how the request is
carried. Values are secrets to the platform: sealed at rest next to the signing secret, never
returned (responses show the names with `model.HEADER_MASK`), never logged, never put in an error message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from meshanics.config import Limits
from meshanics.errors import InvalidInput
from meshanics.model import Endpoint

if TYPE_CHECKING:
    from meshanics.sealing import Sealer

SEALED_LABEL = "custom-headers"  # binds the sealed set to its purpose (see sealing.Sealer.seal)
CODE = "invalid_header"

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII and the space, not at either end (a receiver trims it, so it would not be what was
# set). No tab: not a control character a gateway credential needs. Beyond ASCII, HTTP/1.1 has only
# the obsolete obs-text, which Python's HTTP client encodes as Latin-1.
_VALUE = re.compile(r"[!-~]([ -~]*[!-~])?")

_SIGNATURE = "reserved for the platform's signature and delivery headers"
_BODY = "describes the signed body, which only the platform sets"
_TRANSPORT = "a hop-by-hop header: it would change how the request is carried"
_RESERVED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("x-meshanics-", _SIGNATURE),
    ("meshanics-", _SIGNATURE),
    ("webhook-", _SIGNATURE + " (Standard Webhooks)"),
    ("content-", _BODY),
    ("proxy-", _TRANSPORT),
)
_RESERVED: dict[str, str] = {
    "host": "set by the platform from the endpoint's URL",
    "user-agent": "set by the platform on every delivery",
    "cookie": "not sent with deliveries: put the credential in a header of its own, e.g. Authorization",
    "expect": "it would change how the request is carried",
    **{
        name: _TRANSPORT
        for name in ("connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "http2-settings")
    },
}


def refusal(name: str) -> str | None:
    """Why the platform refuses this header name (case-insensitive), or None if it may be set."""
    lowered = name.lower()
    if lowered in _RESERVED:
        return _RESERVED[lowered]
    for prefix, reason in _RESERVED_PREFIXES:
        if lowered.startswith(prefix):
            return reason
    return None


def _shown(name: str) -> str:
    """A name as an error message may quote it: bounded, escaped."""
    return json.dumps(name[:64] + ("..." if len(name) > 64 else ""))


def _check_name(name: Any, limits: Limits) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name) or len(name) > limits.max_header_name_length:
        shown = _shown(name) if isinstance(name, str) else "?"
        raise InvalidInput(
            f"header name {shown} must be 1-{limits.max_header_name_length} token characters "
            "(letters, digits and !#$%&'*+-.^_`|~; RFC 9110)",
            code=CODE,
            field="headers",
        )
    reason = refusal(name)
    if reason is not None:
        raise InvalidInput(f"header {name} cannot be set: {reason}", code=CODE, field=f"headers.{name}")
    return name


def _check_value(name: str, value: Any, limits: Limits) -> str:
    # The value itself never appears in the message: it is a secret.
    if not isinstance(value, str):
        raise InvalidInput(f"the value of header {name} must be a string", code=CODE, field=f"headers.{name}")
    if len(value) > limits.max_header_value_length:
        raise InvalidInput(
            f"the value of header {name} is longer than {limits.max_header_value_length} characters",
            code=CODE,
            field=f"headers.{name}",
        )
    if not _VALUE.fullmatch(value):
        raise InvalidInput(
            f"the value of header {name} must be printable ASCII, not empty, without control characters "
            "(CR, LF, NUL, tab) and without spaces at either end",
            code=CODE,
            field=f"headers.{name}",
        )
    return value


def _no_case_duplicates(names: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise InvalidInput(
                f"headers {other} and {name} differ only by case: header names are case-insensitive",
                code=CODE,
                field=f"headers.{name}",
            )


def check(headers: Mapping[Any, Any], limits: Limits) -> dict[str, str]:
    """A valid set of custom headers (order kept), or InvalidInput naming the header at fault."""
    if len(headers) > limits.max_custom_headers:
        raise InvalidInput(
            f"at most {limits.max_custom_headers} custom headers per endpoint", code=CODE, field="headers"
        )
    cleaned = {_check_name(name, limits): value for name, value in headers.items()}
    _no_case_duplicates(cleaned)
    cleaned = {name: _check_value(name, value, limits) for name, value in cleaned.items()}
    size = sum(len(name) + len(value) for name, value in cleaned.items())
    if size > limits.max_custom_headers_bytes:
        raise InvalidInput(
            f"custom headers take {size} bytes (names and values), above the "
            f"{limits.max_custom_headers_bytes}-byte limit",
            code=CODE,
            field="headers",
        )
    return cleaned


def merge(current: Mapping[str, str], changes: Mapping[Any, Any], limits: Limits) -> dict[str, str]:
    """The set after a PATCH: `name: value` sets or replaces the header of that name (matched
    case-insensitively; the new spelling is kept), `name: None` removes it (a name that is not set
    is left alone), headers not named stay as they are. The result is checked as a whole."""
    for name in changes:
        _check_name(name, limits)
    _no_case_duplicates(changes)
    wanted = {name.lower(): (name, value) for name, value in changes.items()}
    merged: dict[str, Any] = {}
    for name, value in current.items():  # in place: a replaced header keeps its position
        new_name, new_value = wanted.pop(name.lower(), (name, value))
        if new_value is not None:
            merged[new_name] = new_value
    merged.update({name: value for name, value in wanted.values() if value is not None})
    return check(merged, limits)


def sealed(sealer: Sealer, endpoint: Endpoint, headers: Mapping[str, str]) -> Endpoint:
    """`endpoint` holding `headers` (a checked set; empty: none), sealed beside its current secret:
    the data key that opens the secret opens them too, so a delivery makes no KMS call for them."""
    if not headers:
        return replace(endpoint, header_names=(), sealed_headers=None)
    text = json.dumps(list(headers.items()), separators=(",", ":"))  # pairs: order kept
    value = sealer.seal(text, endpoint.secret_context, label=SEALED_LABEL, beside=endpoint.sealed_secret)
    return replace(endpoint, header_names=tuple(headers), sealed_headers=value)


def unsealed(sealer: Sealer, endpoint: Endpoint) -> dict[str, str]:
    """The endpoint's custom headers in the clear: for a delivery or a change, never a response."""
    if endpoint.sealed_headers is None:
        return {}
    text = sealer.unseal(endpoint.sealed_headers, endpoint.secret_context, label=SEALED_LABEL)
    return {str(name): str(value) for name, value in json.loads(text)}


def combine(custom: Mapping[str, str], platform: Mapping[str, str]) -> dict[str, str]:
    """A delivery's request headers: the custom ones, then the platform's, which always win.

    A custom header whose name the platform sends (in any case) or refuses is left out, so a set
    stored under older rules can never override or duplicate the signature or the transport.
    """
    taken = {name.lower() for name in platform}
    kept = {name: value for name, value in custom.items() if name.lower() not in taken and refusal(name) is None}
    return {**kept, **platform}

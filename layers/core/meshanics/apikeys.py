"""API keys: high-entropy, shown once, stored only as a hash, scoped, revocable.

A key reads `msk_<key id>_<secret>`. The key id locates the stored record; the secret is checked
against its SHA-256 hash in constant time (a fast hash suffices for 256 random bits).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable

from meshanics.errors import InvalidInput, Unauthenticated

SCOPES: tuple[str, ...] = (
    "integrations:read",
    "integrations:admin",
    "events:write",
    "registries:operator",
    "artifacts:pull",
)
PREFIX = "msk_"
KEY_PATTERN = re.compile(r"^msk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise InvalidInput(
            f"unknown or missing scope(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(SCOPES)}",
            field="scopes",
        )
    return wanted


def key_from_authorization(header: str | None) -> str:
    """The API key from `Bearer <key>` or `Basic base64(<anything>:<key>)`."""
    if not header:
        raise Unauthenticated("missing Authorization header")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("malformed Basic credentials") from None
        _user, sep, password = decoded.partition(":")
        if sep and password:
            return password
    raise Unauthenticated("Authorization must be 'Bearer <key>' or Basic with the key as password")

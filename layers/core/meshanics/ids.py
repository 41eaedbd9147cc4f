"""Identifiers and validated names."""

from __future__ import annotations

import re
import secrets

from meshanics.errors import InvalidInput

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def new_id(prefix: str) -> str:
    """An unguessable id with a type prefix, e.g. `ep_3f9a...` (96 random bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def check_tenant(tenant_id: str) -> str:
    if not TENANT_ID.fullmatch(tenant_id):
        raise InvalidInput(
            "tenant id must be 1-63 lower-case letters, digits or '-', starting with a letter or digit",
            field="tenant",
        )
    return tenant_id


def looks_like(value: str, prefix: str) -> bool:
    return bool(re.fullmatch(rf"{prefix}_[0-9a-f]{{24}}", value))

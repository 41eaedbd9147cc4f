"""API keys: high-entropy, shown once, stored only as a hash, scoped, revocable.

A key reads `msk_<key id>_<secret>`. The key id locates the stored record; the secret is checked
against its SHA-256 hash in constant time (a fast hash suffices for 256 random bits).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from meshanics import dynamo
from meshanics.clock import now_iso
from meshanics.errors import InvalidInput, NotFound, Unauthenticated
from meshanics.ids import check_tenant

SCOPES: tuple[str, ...] = (
    "integrations:read",
    "integrations:admin",
    "events:write",
    "registries:operator",
    "artifacts:pull",
)
PREFIX = "msk_"
_KEY = re.compile(r"^msk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    name: str
    created_at: str
    revoked_at: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "tenant": self.tenant_id,
            "scopes": list(self.scopes),
            "name": self.name,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def _hash(secret: str) -> str:
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


class ApiKeyStore:
    def __init__(self, client: Callable[[], Any], table: str) -> None:
        self._client = client
        self._table = table

    def create(self, tenant_id: str, scopes: Iterable[str], *, name: str = "") -> tuple[str, ApiKey]:
        """A new key; the plaintext is returned here and never stored or shown again."""
        check_tenant(tenant_id)
        checked = check_scopes(scopes)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, tenant_id, checked, name[:128], now_iso())
        record = {
            "key_id": key_id,
            "tenant_id": tenant_id,
            "scopes": list(checked),
            "name": key.name,
            "created_at": key.created_at,
        }
        self._client().transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": dynamo.to_item({"pk": f"KEY#{key_id}", "sk": "#KEY", "hash": _hash(secret), **record}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": f"KEY#{key_id}", **record}),
                    }
                },
            ]
        )
        return f"{PREFIX}{key_id}_{secret}", key

    def authenticate(self, presented: str) -> ApiKey:
        match = _KEY.fullmatch(presented.strip())
        if not match:
            raise Unauthenticated("the API key is not valid")
        key_id, secret = match.groups()
        response = self._client().get_item(
            TableName=self._table,
            Key=dynamo.to_item({"pk": f"KEY#{key_id}", "sk": "#KEY"}),
            ConsistentRead=True,
        )
        item = dynamo.from_item(response.get("Item", {}))
        stored = item.get("hash", "0" * 64)
        # Compare even when the key id is unknown so timing does not tell which part was wrong.
        valid = hmac.compare_digest(stored, _hash(secret))
        if not item or not valid or item.get("revoked_at"):
            raise Unauthenticated("the API key is not valid")
        return ApiKey(
            key_id=key_id,
            tenant_id=item["tenant_id"],
            scopes=tuple(item.get("scopes", ())),
            name=item.get("name", ""),
            created_at=item["created_at"],
        )

    def revoke(self, tenant_id: str, key_id: str) -> ApiKey:
        revoked = now_iso()
        try:
            self._client().transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": dynamo.to_item({"pk": f"KEY#{key_id}", "sk": "#KEY"}),
                            "UpdateExpression": "SET revoked_at = :now",
                            "ConditionExpression": "tenant_id = :tenant",
                            "ExpressionAttributeValues": dynamo.to_item({":now": revoked, ":tenant": tenant_id}),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": f"KEY#{key_id}"}),
                            "UpdateExpression": "SET revoked_at = :now",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": dynamo.to_item({":now": revoked}),
                        }
                    },
                ]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "TransactionCanceledException":
                raise NotFound(f"key {key_id} not found for tenant {tenant_id}") from None
            raise
        return next(k for k in self.for_tenant(tenant_id) if k.key_id == key_id)

    def for_tenant(self, tenant_id: str) -> list[ApiKey]:
        keys: list[ApiKey] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :key)",
            "ExpressionAttributeValues": dynamo.to_item({":pk": dynamo.tenant_pk(tenant_id), ":key": "KEY#"}),
        }
        while True:
            response = self._client().query(**kwargs)
            for raw in response.get("Items", []):
                v = dynamo.from_item(raw)
                keys.append(
                    ApiKey(
                        v["key_id"],
                        v["tenant_id"],
                        tuple(v.get("scopes", ())),
                        v.get("name", ""),
                        v["created_at"],
                        v.get("revoked_at"),
                    )
                )
            if "LastEvaluatedKey" not in response:
                return keys
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

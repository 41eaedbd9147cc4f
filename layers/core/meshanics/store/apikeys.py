"""API keys: `KEY#<key id>` / `#KEY` (the SHA-256 of the secret, scopes, tenant: what the authorizer
reads) and `T#<tenant>` / `KEY#<key id>` (the tenant's listing, never the hash); both written in one
transaction, revoked together.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from meshanics.apikeys import KEY_PATTERN, PREFIX, check_scopes, secret_hash
from meshanics.clock import now_iso
from meshanics.errors import NotFound, Unauthenticated
from meshanics.ids import check_tenant
from meshanics.model import ApiKey
from meshanics.store.items import from_item, to_item
from meshanics.store.tenants import tenant_pk


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
                        "Item": to_item({"pk": f"KEY#{key_id}", "sk": "#KEY", "hash": secret_hash(secret), **record}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_item({"pk": tenant_pk(tenant_id), "sk": f"KEY#{key_id}", **record}),
                    }
                },
            ]
        )
        return f"{PREFIX}{key_id}_{secret}", key

    def authenticate(self, presented: str) -> ApiKey:
        match = KEY_PATTERN.fullmatch(presented.strip())
        if not match:
            raise Unauthenticated("the API key is not valid")
        key_id, secret = match.groups()
        response = self._client().get_item(
            TableName=self._table,
            Key=to_item({"pk": f"KEY#{key_id}", "sk": "#KEY"}),
            ConsistentRead=True,
        )
        item = from_item(response.get("Item", {}))
        stored = item.get("hash", "0" * 64)
        # Compare even when the key id is unknown so timing does not tell which part was wrong.
        valid = hmac.compare_digest(stored, secret_hash(secret))
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
                            "Key": to_item({"pk": f"KEY#{key_id}", "sk": "#KEY"}),
                            "UpdateExpression": "SET revoked_at = :now",
                            "ConditionExpression": "tenant_id = :tenant",
                            "ExpressionAttributeValues": to_item({":now": revoked, ":tenant": tenant_id}),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"pk": tenant_pk(tenant_id), "sk": f"KEY#{key_id}"}),
                            "UpdateExpression": "SET revoked_at = :now",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": to_item({":now": revoked}),
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
            "ExpressionAttributeValues": to_item({":pk": tenant_pk(tenant_id), ":key": "KEY#"}),
        }
        while True:
            response = self._client().query(**kwargs)
            for raw in response.get("Items", []):
                v = from_item(raw)
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

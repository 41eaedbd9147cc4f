"""Fill leases: one filler per (tenant, digest) at a time across Lambda instances (a conditional put).

Item: `T#<tenant>#FILL` / `<digest>`; `owner`, `expires_at` (ends a lease whose holder died, and lets
DynamoDB's TTL remove it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from meshanics.store.items import to_item
from meshanics.store.tenants import tenant_pk


class FillLeases:
    """One filler per (tenant, digest) at a time, across Lambda instances (DynamoDB conditional put).

    Item: pk `T#<tenant>#FILL`, sk the digest; `expires_at` ends a lease whose holder died (and lets
    DynamoDB's TTL remove it).
    """

    def __init__(self, client: Callable[[], Any], table: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    @staticmethod
    def _key(tenant_id: str, digest: str) -> dict[str, Any]:
        return to_item({"pk": f"{tenant_pk(tenant_id)}#FILL", "sk": digest})

    def acquire(self, tenant_id: str, digest: str, *, seconds: int) -> str | None:
        """A lease token, or None while another filler holds an unexpired lease."""
        owner = secrets.token_hex(8)
        now = int(self._clock())
        try:
            self._client().put_item(
                TableName=self._table,
                Item=self._key(tenant_id, digest) | to_item({"owner": owner, "expires_at": now + seconds}),
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues=to_item({":now": now}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return owner

    def release(self, tenant_id: str, digest: str, owner: str) -> None:
        try:
            self._client().delete_item(
                TableName=self._table,
                Key=self._key(tenant_id, digest),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=to_item({":owner": owner}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

"""Webhook endpoints and their subscription index (the storage side).

An endpoint item holds the endpoint and its sealed secret(s). Each enabled endpoint also has one
small index item per filter key, under the partition of that key, carrying its subscription point:
fan-out looks up only the keys an event type can match, never the tenant's whole endpoint list.

Creating, re-filtering or enabling an endpoint commits in one transaction conditioned on the tenant's
audit sequence being unchanged: every event with a later sequence is written after the index
items exist, so its fan-out finds them, and no event at or before the subscription point is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from meshanics import dynamo, filters
from meshanics.clock import now_iso
from meshanics.errors import Conflict, LimitExceeded, NotFound

MAX_TRANSACTION_RETRIES = 8


@dataclass(frozen=True)
class Endpoint:
    tenant_id: str
    id: str
    url: str
    events: tuple[str, ...]
    description: str
    allow_private_network: bool
    enabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str
    subscribed_after: int
    sealed_secret: bytes
    previous_sealed_secret: bytes | None = None
    previous_secret_expires_at: int | None = None

    def public(self) -> dict[str, Any]:
        """The API representation: never a secret, sealed or not."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "allow_private_network": self.allow_private_network,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "secret_rotation_overlap_until": (
                now_iso(self.previous_secret_expires_at)
                if self.previous_secret_expires_at is not None and self.previous_overlap_active()
                else None
            ),
        }

    def previous_overlap_active(self, now: float | None = None) -> bool:
        return (
            self.previous_sealed_secret is not None
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > (time.time() if now is None else now)
        )

    @property
    def secret_context(self) -> dict[str, str]:
        return secret_context(self.tenant_id, self.id)


def secret_context(tenant_id: str, endpoint_id: str) -> dict[str, str]:
    return {"tenant": tenant_id, "endpoint": endpoint_id, "purpose": "webhook-signing"}


def _to_item(ep: Endpoint) -> dict[str, Any]:
    return dynamo.to_item(
        {
            "pk": dynamo.tenant_pk(ep.tenant_id),
            "sk": f"EP#{ep.id}",
            "kind": "endpoint",
            "tenant_id": ep.tenant_id,
            "id": ep.id,
            "url": ep.url,
            "events": list(ep.events),
            "description": ep.description,
            "allow_private_network": ep.allow_private_network,
            "enabled": ep.enabled,
            "disabled_reason": ep.disabled_reason,
            "created_at": ep.created_at,
            "updated_at": ep.updated_at,
            "subscribed_after": ep.subscribed_after,
            "secret": ep.sealed_secret,
            "previous_secret": ep.previous_sealed_secret,
            "previous_secret_expires_at": ep.previous_secret_expires_at,
        }
    )


def _from_item(item: Mapping[str, Any]) -> Endpoint:
    v = dynamo.from_item(item)
    return Endpoint(
        tenant_id=v["tenant_id"],
        id=v["id"],
        url=v["url"],
        events=tuple(v.get("events") or ()),
        description=v.get("description", ""),
        allow_private_network=bool(v.get("allow_private_network", False)),
        enabled=bool(v.get("enabled", True)),
        disabled_reason=v.get("disabled_reason"),
        created_at=v["created_at"],
        updated_at=v["updated_at"],
        subscribed_after=int(v.get("subscribed_after", 0)),
        sealed_secret=v["secret"],
        previous_sealed_secret=v.get("previous_secret"),
        previous_secret_expires_at=v.get("previous_secret_expires_at"),
    )


class EndpointStore:
    def __init__(self, client: Callable[[], Any], table: str) -> None:
        self._client = client
        self._table = table

    # -- reads -------------------------------------------------------------------------------
    def get(self, tenant_id: str, endpoint_id: str, *, consistent: bool = True) -> Endpoint:
        response = self._client().get_item(
            TableName=self._table,
            Key=dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": f"EP#{endpoint_id}"}),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            raise NotFound(f"webhook {endpoint_id} not found")
        return _from_item(response["Item"])

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Endpoint]:
        """Endpoints by (tenant, id), read consistently in as few calls as possible; missing ones
        absent. Raises StoreThrottled rather than report a throttled endpoint as deleted."""
        wanted = sorted(set(keys))
        items = dynamo.batch_get(
            self._client(),
            self._table,
            [dynamo.to_item({"pk": dynamo.tenant_pk(t), "sk": f"EP#{e}"}) for t, e in wanted],
        )
        found = (_from_item(item) for item in items.values())
        return {(ep.tenant_id, ep.id): ep for ep in found}

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[Endpoint], str | None]:
        items, next_cursor = dynamo.query_page(
            self._client(),
            self._table,
            partition=dynamo.tenant_pk(tenant_id),
            sort_prefix="EP#",
            limit=limit,
            cursor=cursor,
        )
        return [_from_item(i) for i in items], next_cursor

    def subscribers(self, tenant_id: str, key: str) -> dict[str, int]:
        """Endpoint id -> subscription point, for the enabled endpoints indexed under `key`."""
        result: dict[str, int] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": dynamo.to_item({":pk": dynamo.subscription_pk(tenant_id, key)}),
            # Strongly consistent: an event written just after a subscription committed must see it.
            "ConsistentRead": True,
        }
        while True:
            response = self._client().query(**kwargs)
            for item in response.get("Items", []):
                v = dynamo.from_item(item)
                result[v["sk"]] = int(v["subscribed_after"])
            if "LastEvaluatedKey" not in response:
                return result
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def count(self, tenant_id: str) -> tuple[int, int]:
        """(audit sequence, endpoint count) of the tenant, read consistently."""
        response = self._client().get_item(
            TableName=self._table,
            Key=dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": dynamo.TENANT_SK}),
            ConsistentRead=True,
        )
        v = dynamo.from_item(response.get("Item", {}))
        return int(v.get("sequence", 0)), int(v.get("endpoint_count", 0))

    # -- writes ------------------------------------------------------------------------------
    def create(self, endpoint: Endpoint, *, max_endpoints: int) -> Endpoint:
        """Store a new endpoint subscribed from the tenant's current sequence."""
        for _ in range(MAX_TRANSACTION_RETRIES):
            sequence, count = self.count(endpoint.tenant_id)
            if count >= max_endpoints:
                raise LimitExceeded(f"a tenant may have at most {max_endpoints} webhook endpoints")
            created = replace(endpoint, subscribed_after=sequence)
            items = [
                self._counter_update(created.tenant_id, sequence, delta=1, max_count=max_endpoints),
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _to_item(created),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
            if created.enabled:
                items += self._index_puts(created, filters.index_keys(created.events))
            if self._transact(items):
                return created
        raise Conflict("the tenant is changing too fast to subscribe; retry the request")

    def update(self, current: Endpoint, updated: Endpoint) -> Endpoint:
        """Replace `current` with `updated` (same id), moving index items if filters or state changed."""
        old_keys = set(filters.index_keys(current.events)) if current.enabled else set()
        new_keys = set(filters.index_keys(updated.events)) if updated.enabled else set()
        for _ in range(MAX_TRANSACTION_RETRIES):
            items: list[dict[str, Any]] = []
            if old_keys != new_keys:
                sequence, _count = self.count(current.tenant_id)
                if updated.enabled and not current.enabled:
                    updated = replace(updated, subscribed_after=sequence)
                items.append(self._counter_check(current.tenant_id, sequence))
                # Keys kept from before keep their items (and subscription points) untouched.
                point = replace(updated, subscribed_after=sequence)
                items += self._index_puts(point, sorted(new_keys - old_keys))
                items += self._index_deletes(current, sorted(old_keys - new_keys))
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _to_item(updated),
                        "ConditionExpression": "updated_at = :seen",
                        "ExpressionAttributeValues": dynamo.to_item({":seen": current.updated_at}),
                    }
                }
            )
            if self._transact(items):
                return updated
            latest = self.get(current.tenant_id, current.id)
            if latest.updated_at != current.updated_at:
                raise Conflict("the webhook was changed concurrently; read it again and retry")
        raise Conflict("the tenant is changing too fast to re-subscribe; retry the request")

    def delete(self, endpoint: Endpoint) -> None:
        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": dynamo.to_item({"pk": dynamo.tenant_pk(endpoint.tenant_id), "sk": f"EP#{endpoint.id}"}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": dynamo.to_item({"pk": dynamo.tenant_pk(endpoint.tenant_id), "sk": dynamo.TENANT_SK}),
                    "UpdateExpression": "ADD endpoint_count :minus",
                    "ExpressionAttributeValues": dynamo.to_item({":minus": -1}),
                }
            },
        ]
        if endpoint.enabled:
            items += self._index_deletes(endpoint, filters.index_keys(endpoint.events))
        if not self._transact(items):
            raise NotFound(f"webhook {endpoint.id} not found")

    # -- helpers -----------------------------------------------------------------------------
    def _counter_key(self, tenant_id: str) -> dict[str, Any]:
        return dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": dynamo.TENANT_SK})

    def _sequence_condition(self, sequence: int) -> str:
        return "attribute_not_exists(#seq)" if sequence == 0 else "#seq = :seq"

    def _counter_update(self, tenant_id: str, sequence: int, *, delta: int, max_count: int) -> dict[str, Any]:
        values: dict[str, Any] = {":delta": delta, ":max": max_count}
        if sequence:
            values[":seq"] = sequence
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._counter_key(tenant_id),
                "UpdateExpression": "ADD endpoint_count :delta",
                "ConditionExpression": f"({self._sequence_condition(sequence)}) AND "
                "(attribute_not_exists(endpoint_count) OR endpoint_count < :max)",
                "ExpressionAttributeNames": {"#seq": "sequence"},
                "ExpressionAttributeValues": dynamo.to_item(values),
            }
        }

    def _counter_check(self, tenant_id: str, sequence: int) -> dict[str, Any]:
        check: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._counter_key(tenant_id),
            "ConditionExpression": self._sequence_condition(sequence),
            "ExpressionAttributeNames": {"#seq": "sequence"},
        }
        if sequence:
            check["ExpressionAttributeValues"] = dynamo.to_item({":seq": sequence})
        return {"ConditionCheck": check}

    def _index_puts(self, ep: Endpoint, keys: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": dynamo.to_item(
                        {
                            "pk": dynamo.subscription_pk(ep.tenant_id, key),
                            "sk": ep.id,
                            "subscribed_after": ep.subscribed_after,
                        }
                    ),
                }
            }
            for key in keys
        ]

    def _index_deletes(self, ep: Endpoint, keys: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": dynamo.to_item({"pk": dynamo.subscription_pk(ep.tenant_id, key), "sk": ep.id}),
                }
            }
            for key in keys
        ]

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """True if committed; False if a condition failed (the caller re-reads and retries)."""
        try:
            self._client().transact_write_items(TransactItems=items)
        except ClientError as error:
            if error.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

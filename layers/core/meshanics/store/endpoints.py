"""Webhook endpoints and their subscription index.

An endpoint item (`T#<tenant>` / `EP#<id>`) holds the endpoint, its sealed secret(s) and its custom
headers (`header_names` in the clear, `headers` sealed beside the current secret). Each enabled
endpoint also has one small index item per filter key (`T#<tenant>#SUB#<key>` / `<id>`): matching
an event reads only the keys its type can match (`a.b`, `a.*`, `*`), never the tenant's endpoint
list. Every change of an endpoint and its index items, and of the tenant's endpoint count, commits
in one transaction, so an event matched after a change commits sees all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from meshanics.errors import Conflict, LimitExceeded, NotFound
from meshanics.model import Endpoint
from meshanics.store.batch import batch_get, transact
from meshanics.store.items import from_item, query_page, to_item
from meshanics.store.tenants import TenantCounters, tenant_pk

COUNT = "endpoint_count"


def _key(tenant_id: str, endpoint_id: str) -> dict[str, Any]:
    return to_item({"pk": tenant_pk(tenant_id), "sk": f"EP#{endpoint_id}"})


def subscription_pk(tenant_id: str, key: str) -> str:
    return f"T#{tenant_id}#SUB#{key}"


def _to_item(ep: Endpoint) -> dict[str, Any]:
    return to_item(
        {
            "pk": tenant_pk(ep.tenant_id),
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
            "secret": ep.sealed_secret,
            "previous_secret": ep.previous_sealed_secret,
            "previous_secret_expires_at": ep.previous_secret_expires_at,
            "header_names": list(ep.header_names) or None,
            "headers": ep.sealed_headers,
        }
    )


def _from_item(item: Mapping[str, Any]) -> Endpoint:
    v = from_item(item)
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
        sealed_secret=v["secret"],
        previous_sealed_secret=v.get("previous_secret"),
        previous_secret_expires_at=v.get("previous_secret_expires_at"),
        header_names=tuple(v.get("header_names") or ()),
        sealed_headers=v.get("headers"),
    )


class EndpointStore:
    def __init__(self, client: Callable[[], Any], table: str, counters: TenantCounters) -> None:
        self._client = client
        self._table = table
        self._counters = counters

    # -- reads -------------------------------------------------------------------------------
    def get(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        response = self._client().get_item(TableName=self._table, Key=_key(tenant_id, endpoint_id), ConsistentRead=True)
        if "Item" not in response:
            raise NotFound(f"webhook {endpoint_id} not found")
        return _from_item(response["Item"])

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Endpoint]:
        """Endpoints by (tenant, id), read consistently in as few calls as possible; missing ones
        absent. Raises StoreThrottled rather than report a throttled endpoint as deleted."""
        wanted = sorted(set(keys))
        items = batch_get(self._client(), self._table, [_key(t, e) for t, e in wanted])
        found = (_from_item(item) for item in items.values())
        return {(ep.tenant_id, ep.id): ep for ep in found}

    @staticmethod
    def key(tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        return _key(tenant_id, endpoint_id)

    @staticmethod
    def from_item(item: Mapping[str, Any]) -> Endpoint:
        return _from_item(item)

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[Endpoint], str | None]:
        items, next_cursor = query_page(
            self._client(), self._table, partition=tenant_pk(tenant_id), sort_prefix="EP#", limit=limit, cursor=cursor
        )
        return [_from_item(i) for i in items], next_cursor

    def subscribers(self, tenant_id: str, key: str) -> list[str]:
        """The ids of the enabled endpoints indexed under `key`, read consistently: an event matched
        just after a subscription committed finds it."""
        found: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": subscription_pk(tenant_id, key)}),
            "ProjectionExpression": "sk",
            "ConsistentRead": True,
        }
        while True:
            response = self._client().query(**kwargs)
            found.extend(item["sk"]["S"] for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- writes ------------------------------------------------------------------------------
    def create(self, endpoint: Endpoint, *, max_endpoints: int) -> Endpoint:
        from meshanics import filters  # here: the delivery function reads endpoints and never writes them

        items: list[dict[str, Any]] = [
            self._counters.count_change(endpoint.tenant_id, COUNT, 1, limit=max_endpoints),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _to_item(endpoint),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        if endpoint.enabled:
            items += self._index_puts(endpoint, filters.index_keys(endpoint.events))
        if transact(self._client(), items) is not None:
            raise LimitExceeded(f"a tenant may have at most {max_endpoints} webhook endpoints")
        return endpoint

    def update(self, current: Endpoint, updated: Endpoint) -> Endpoint:
        """Replace `current` with `updated` (same id), moving index items if filters or state changed."""
        from meshanics import filters  # here: the delivery function reads endpoints and never writes them

        old_keys = set(filters.index_keys(current.events)) if current.enabled else set()
        new_keys = set(filters.index_keys(updated.events)) if updated.enabled else set()
        items: list[dict[str, Any]] = [
            *self._index_puts(updated, sorted(new_keys - old_keys)),
            *self._index_deletes(current, sorted(old_keys - new_keys)),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _to_item(updated),
                    "ConditionExpression": "updated_at = :seen",
                    "ExpressionAttributeValues": to_item({":seen": current.updated_at}),
                }
            },
        ]
        if transact(self._client(), items) is not None:
            raise Conflict("the webhook was changed concurrently; read it again and retry")
        return updated

    def delete(self, endpoint: Endpoint) -> None:
        from meshanics import filters  # here: the delivery function reads endpoints and never writes them

        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": _key(endpoint.tenant_id, endpoint.id),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            self._counters.count_change(endpoint.tenant_id, COUNT, -1),
        ]
        if endpoint.enabled:
            items += self._index_deletes(endpoint, filters.index_keys(endpoint.events))
        if transact(self._client(), items) is not None:
            raise NotFound(f"webhook {endpoint.id} not found")

    def _index_puts(self, ep: Endpoint, keys: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {"Put": {"TableName": self._table, "Item": to_item({"pk": subscription_pk(ep.tenant_id, k), "sk": ep.id})}}
            for k in keys
        ]

    def _index_deletes(self, ep: Endpoint, keys: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": to_item({"pk": subscription_pk(ep.tenant_id, k), "sk": ep.id}),
                }
            }
            for k in keys
        ]

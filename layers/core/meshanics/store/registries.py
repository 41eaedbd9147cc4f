"""Registry connections: `T#<tenant>` / `REG#<id>` (the connection, credentials sealed), and
`T#<tenant>` / `REGNAME#<name>` (the name index: unique per tenant, devices pull by name); the
tenant's `registry_count` on its `#TENANT` item bounds them. Changes commit in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshanics.errors import Conflict, LimitExceeded, NotFound
from meshanics.model import RegistryConnection
from meshanics.store.batch import transact
from meshanics.store.items import from_item, query_page, to_item
from meshanics.store.tenants import TenantCounters, tenant_pk


def _sk(registry_id: str) -> str:
    return f"REG#{registry_id}"


def _name_sk(name: str) -> str:
    return f"REGNAME#{name}"


def _to_item(c: RegistryConnection) -> dict[str, Any]:
    return to_item(
        {
            "pk": tenant_pk(c.tenant_id),
            "sk": _sk(c.id),
            "kind": "registry",
            "tenant_id": c.tenant_id,
            "id": c.id,
            "name": c.name,
            "upstream_url": c.upstream_url,
            "allow_private_network": c.allow_private_network,
            "status": c.status,
            "auth_type": c.auth_type,
            "username": c.username,
            "created_at": c.created_at,
            "created_by": c.created_by,
            "updated_at": c.updated_at,
            "credentials_updated_at": c.credentials_updated_at,
            "credentials": c.sealed_credentials,
            "approved_at": c.approved_at,
            "approved_by": c.approved_by,
        }
    )


def _from_item(item: Mapping[str, Any]) -> RegistryConnection:
    v = from_item(item)
    return RegistryConnection(
        tenant_id=v["tenant_id"],
        id=v["id"],
        name=v["name"],
        upstream_url=v["upstream_url"],
        allow_private_network=bool(v.get("allow_private_network", False)),
        status=v["status"],
        auth_type=v["auth_type"],
        username=v.get("username"),
        created_at=v["created_at"],
        created_by=v.get("created_by", ""),
        updated_at=v["updated_at"],
        credentials_updated_at=v.get("credentials_updated_at", v["created_at"]),
        sealed_credentials=v["credentials"],
        approved_at=v.get("approved_at"),
        approved_by=v.get("approved_by"),
    )


COUNT = "registry_count"


class RegistryStore:
    def __init__(self, client: Callable[[], Any], table: str, counters: TenantCounters) -> None:
        self._client = client
        self._table = table
        self._counters = counters

    def get(self, tenant_id: str, registry_id: str, *, consistent: bool = True) -> RegistryConnection:
        response = self._client().get_item(
            TableName=self._table,
            Key=to_item({"pk": tenant_pk(tenant_id), "sk": _sk(registry_id)}),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            raise NotFound(f"registry {registry_id} not found")
        return _from_item(response["Item"])

    def by_name(self, tenant_id: str, name: str) -> RegistryConnection | None:
        response = self._client().get_item(
            TableName=self._table,
            Key=to_item({"pk": tenant_pk(tenant_id), "sk": _name_sk(name)}),
        )
        if "Item" not in response:
            return None
        registry_id = from_item(response["Item"])["registry_id"]
        try:
            return self.get(tenant_id, registry_id, consistent=False)
        except NotFound:
            return None

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[RegistryConnection], str | None]:
        items, next_cursor = query_page(
            self._client(),
            self._table,
            partition=tenant_pk(tenant_id),
            sort_prefix="REG#",
            limit=limit,
            cursor=cursor,
        )
        return [_from_item(i) for i in items], next_cursor

    def create(self, connection: RegistryConnection, *, max_registries: int) -> RegistryConnection:
        """Store a new connection: counted against the limit, its name unique within the tenant."""
        pk = tenant_pk(connection.tenant_id)
        items: list[dict[str, Any]] = [
            self._counters.count_change(connection.tenant_id, COUNT, 1, limit=max_registries),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item({"pk": pk, "sk": _name_sk(connection.name), "registry_id": connection.id}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _to_item(connection),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        reasons = transact(self._client(), items)
        if reasons is None:
            return connection
        if reasons[0] == "ConditionalCheckFailed":
            raise LimitExceeded(f"a tenant may have at most {max_registries} registry connections")
        if reasons[1] == "ConditionalCheckFailed":
            raise Conflict(f"a registry connection named {connection.name!r} already exists", field="name")
        raise Conflict("the registry connection could not be stored; retry the request")

    def replace(self, current: RegistryConnection, updated: RegistryConnection) -> RegistryConnection:
        """Write `updated` only if nobody changed the connection since `current` was read."""
        reasons = transact(
            self._client(),
            [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _to_item(updated),
                        "ConditionExpression": "updated_at = :seen",
                        "ExpressionAttributeValues": to_item({":seen": current.updated_at}),
                    }
                }
            ],
        )
        if reasons is not None:
            raise Conflict("the registry connection was changed concurrently; read it again and retry")
        return updated

    def delete(self, connection: RegistryConnection) -> None:
        pk = tenant_pk(connection.tenant_id)
        reasons = transact(
            self._client(),
            [
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": to_item({"pk": pk, "sk": _sk(connection.id)}),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": to_item({"pk": pk, "sk": _name_sk(connection.name)}),
                        "ConditionExpression": "registry_id = :id",
                        "ExpressionAttributeValues": to_item({":id": connection.id}),
                    }
                },
                self._counters.count_change(connection.tenant_id, COUNT, -1),
            ],
        )
        if reasons is not None:
            raise NotFound(f"registry {connection.id} not found")

"""Registry connections: the upstream registries a tenant's operators connected and approved.

A connection names an upstream (base URL, checked by the egress guard), holds its credentials
sealed exactly like webhook secrets (KMS envelope, context bound to tenant, connection and purpose)
and is `pending` until an operator approves it; only approved connections serve pulls. The API
representation never carries credentials, only their type and the basic username.

Storage, in the integrations table under the tenant's partition `T#<tenant>`:
    REG#<id>        the connection
    REGNAME#<name>  the name index (unique per tenant; devices pull by name)
    #TENANT         `registry_count`, bounded by MAX_REGISTRIES_PER_TENANT
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from meshanics import dynamo, egress
from meshanics.audit import AuditLog, EventInput
from meshanics.clock import now_iso, parse_iso
from meshanics.errors import Conflict, EgressRefused, InvalidInput, LimitExceeded, NotFound
from meshanics.ids import new_id
from meshanics.registry.oci import REGISTRY_NAME
from meshanics.sealing import Sealer

AuthType = Literal["basic", "token"]
Status = Literal["pending", "approved"]
MAX_URL = 2048


@dataclass(frozen=True, repr=False)
class Credentials:
    """Upstream credentials in the clear: only ever in memory, never logged (no repr)."""

    auth_type: AuthType
    secret: str  # the password (basic) or the token
    username: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(auth_type={self.auth_type!r}, username={self.username!r})"

    def to_json(self) -> str:
        return json.dumps({"type": self.auth_type, "username": self.username, "secret": self.secret})

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        v = json.loads(text)
        return cls(auth_type=v["type"], secret=v["secret"], username=v.get("username"))

    @classmethod
    def basic(cls, username: str, password: str) -> Credentials:
        if not username or ":" in username:
            raise InvalidInput("username must be non-empty and contain no ':'", field="credentials.username")
        if not password:
            raise InvalidInput("password must not be empty", field="credentials.password")
        return cls("basic", password, username)

    @classmethod
    def token(cls, token: str) -> Credentials:
        # Sent as `Authorization: Bearer <token>`: only visible ASCII can go into that header.
        if not token or not all("!" <= c <= "~" for c in token):
            raise InvalidInput("token must be non-empty visible ASCII, with no whitespace", field="credentials.token")
        return cls("token", token)


@dataclass(frozen=True)
class RegistryConnection:
    tenant_id: str
    id: str
    name: str
    upstream_url: str
    allow_private_network: bool
    status: Status
    auth_type: AuthType
    username: str | None
    created_at: str
    updated_at: str
    created_by: str
    credentials_updated_at: str
    sealed_credentials: bytes
    approved_at: str | None = None
    approved_by: str | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def upstream_host(self) -> str:
        return urlsplit(self.upstream_url).netloc

    @property
    def policy(self) -> egress.EgressPolicy:
        return policy_for(self.allow_private_network)

    @property
    def credentials_context(self) -> dict[str, str]:
        return credentials_context(self.tenant_id, self.id)

    def public(self) -> dict[str, Any]:
        """The API representation: never a credential, sealed or not."""
        return {
            "id": self.id,
            "name": self.name,
            "upstream_url": self.upstream_url,
            "allow_private_network": self.allow_private_network,
            "status": self.status,
            "auth_type": self.auth_type,
            "username": self.username,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "approved_at": self.approved_at,
            "approved_by": self.approved_by,
            "credentials_updated_at": self.credentials_updated_at,
        }


def credentials_context(tenant_id: str, registry_id: str) -> dict[str, str]:
    return {"tenant": tenant_id, "registry": registry_id, "purpose": "registry-credentials"}


def policy_for(allow_private_network: bool) -> egress.EgressPolicy:
    return egress.EgressPolicy(allow_private_network=allow_private_network, require_https=True)


# -- storage ------------------------------------------------------------------------------------
def _sk(registry_id: str) -> str:
    return f"REG#{registry_id}"


def _name_sk(name: str) -> str:
    return f"REGNAME#{name}"


def _to_item(c: RegistryConnection) -> dict[str, Any]:
    return dynamo.to_item(
        {
            "pk": dynamo.tenant_pk(c.tenant_id),
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
    v = dynamo.from_item(item)
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


class RegistryStore:
    def __init__(self, client: Callable[[], Any], table: str) -> None:
        self._client = client
        self._table = table

    def get(self, tenant_id: str, registry_id: str, *, consistent: bool = True) -> RegistryConnection:
        response = self._client().get_item(
            TableName=self._table,
            Key=dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": _sk(registry_id)}),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            raise NotFound(f"registry {registry_id} not found")
        return _from_item(response["Item"])

    def by_name(self, tenant_id: str, name: str) -> RegistryConnection | None:
        response = self._client().get_item(
            TableName=self._table,
            Key=dynamo.to_item({"pk": dynamo.tenant_pk(tenant_id), "sk": _name_sk(name)}),
        )
        if "Item" not in response:
            return None
        registry_id = dynamo.from_item(response["Item"])["registry_id"]
        try:
            return self.get(tenant_id, registry_id, consistent=False)
        except NotFound:
            return None

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[RegistryConnection], str | None]:
        items, next_cursor = dynamo.query_page(
            self._client(),
            self._table,
            partition=dynamo.tenant_pk(tenant_id),
            sort_prefix="REG#",
            limit=limit,
            cursor=cursor,
        )
        return [_from_item(i) for i in items], next_cursor

    def create(self, connection: RegistryConnection, *, max_registries: int) -> RegistryConnection:
        """Store a new connection: counted against the limit, its name unique within the tenant."""
        pk = dynamo.tenant_pk(connection.tenant_id)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": dynamo.to_item({"pk": pk, "sk": dynamo.TENANT_SK}),
                    "UpdateExpression": "ADD registry_count :one",
                    "ConditionExpression": "attribute_not_exists(registry_count) OR registry_count < :max",
                    "ExpressionAttributeValues": dynamo.to_item({":one": 1, ":max": max_registries}),
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": dynamo.to_item({"pk": pk, "sk": _name_sk(connection.name), "registry_id": connection.id}),
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
        reasons = self._transact(items)
        if reasons is None:
            return connection
        if reasons[0] == "ConditionalCheckFailed":
            raise LimitExceeded(f"a tenant may have at most {max_registries} registry connections")
        if reasons[1] == "ConditionalCheckFailed":
            raise Conflict(f"a registry connection named {connection.name!r} already exists", field="name")
        raise Conflict("the registry connection could not be stored; retry the request")

    def replace(self, current: RegistryConnection, updated: RegistryConnection) -> RegistryConnection:
        """Write `updated` only if nobody changed the connection since `current` was read."""
        reasons = self._transact(
            [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _to_item(updated),
                        "ConditionExpression": "updated_at = :seen",
                        "ExpressionAttributeValues": dynamo.to_item({":seen": current.updated_at}),
                    }
                }
            ]
        )
        if reasons is not None:
            raise Conflict("the registry connection was changed concurrently; read it again and retry")
        return updated

    def delete(self, connection: RegistryConnection) -> None:
        pk = dynamo.tenant_pk(connection.tenant_id)
        reasons = self._transact(
            [
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": dynamo.to_item({"pk": pk, "sk": _sk(connection.id)}),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": dynamo.to_item({"pk": pk, "sk": _name_sk(connection.name)}),
                        "ConditionExpression": "registry_id = :id",
                        "ExpressionAttributeValues": dynamo.to_item({":id": connection.id}),
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": dynamo.to_item({"pk": pk, "sk": dynamo.TENANT_SK}),
                        "UpdateExpression": "ADD registry_count :minus",
                        "ExpressionAttributeValues": dynamo.to_item({":minus": -1}),
                    }
                },
            ]
        )
        if reasons is not None:
            raise NotFound(f"registry {connection.id} not found")

    def _transact(self, items: list[dict[str, Any]]) -> list[str] | None:
        """None if committed, else each item's cancellation reason code ('None' when it passed)."""
        try:
            self._client().transact_write_items(TransactItems=items)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raw = error.response.get("CancellationReasons") or []
            reasons = [str(r.get("Code", "None")) for r in raw]
            return reasons + ["None"] * (len(items) - len(reasons))
        return None


# -- the service --------------------------------------------------------------------------------
class RegistryService:
    """What the tenant API does with registry connections; every change is an audit event."""

    def __init__(
        self,
        *,
        store: RegistryStore,
        audit: AuditLog,
        sealer: Sealer,
        max_registries: int,
        resolver: egress.Resolver = egress.system_resolver,
    ) -> None:
        self._store = store
        self._audit = audit
        self._sealer = sealer
        self._max = max_registries
        self._resolver = resolver

    def _check_name(self, name: str) -> str:
        if not REGISTRY_NAME.fullmatch(name):
            raise InvalidInput(
                "name must be 1-63 lower-case letters, digits or '-', starting with a letter or digit", field="name"
            )
        return name

    def _check_url(self, url: str, allow_private_network: bool) -> str:
        if len(url) > MAX_URL:
            raise InvalidInput(f"upstream_url is longer than {MAX_URL} characters", field="upstream_url")
        try:
            egress.validate_url(url, policy_for(allow_private_network), self._resolver)
        except EgressRefused as refused:
            raise EgressRefused(refused.message, code=refused.code, field="upstream_url") from None
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise InvalidInput("upstream_url must not carry a query or fragment", field="upstream_url")
        path = parts.path.rstrip("/")
        if path.endswith("/v2"):
            path = path[:-3]
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"

    def connect(
        self,
        tenant_id: str,
        actor: str,
        *,
        name: str,
        upstream_url: str,
        credentials: Credentials,
        allow_private_network: bool = False,
    ) -> RegistryConnection:
        """A new connection, pending until an operator approves it."""
        self._check_name(name)
        url = self._check_url(upstream_url, allow_private_network)
        registry_id = new_id("reg")
        now = now_iso()
        connection = RegistryConnection(
            tenant_id=tenant_id,
            id=registry_id,
            name=name,
            upstream_url=url,
            allow_private_network=allow_private_network,
            status="pending",
            auth_type=credentials.auth_type,
            username=credentials.username,
            created_at=now,
            updated_at=now,
            created_by=actor,
            credentials_updated_at=now,
            sealed_credentials=self._sealer.seal(credentials.to_json(), credentials_context(tenant_id, registry_id)),
        )
        created = self._store.create(connection, max_registries=self._max)
        self._record(
            created,
            actor,
            "registry.connected",
            {"name": created.name, "upstream_host": created.upstream_host},
        )
        return created

    def get(self, tenant_id: str, registry_id: str) -> RegistryConnection:
        return self._store.get(tenant_id, registry_id)

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[RegistryConnection], str | None]:
        return self._store.page(tenant_id, limit=limit, cursor=cursor)

    def approve(self, tenant_id: str, actor: str, registry_id: str) -> RegistryConnection:
        """Approve a pending connection; approving an approved one changes nothing."""
        current = self._store.get(tenant_id, registry_id)
        if current.approved:
            return current
        now = _later(current.updated_at)
        approved = self._store.replace(
            current, replace(current, status="approved", approved_at=now, approved_by=actor, updated_at=now)
        )
        self._record(approved, actor, "registry.approved", {"name": approved.name, "approved_by": actor})
        return approved

    def update_credentials(
        self, tenant_id: str, actor: str, registry_id: str, credentials: Credentials
    ) -> RegistryConnection:
        current = self._store.get(tenant_id, registry_id)
        now = _later(current.updated_at)
        updated = self._store.replace(
            current,
            replace(
                current,
                auth_type=credentials.auth_type,
                username=credentials.username,
                sealed_credentials=self._sealer.seal(credentials.to_json(), current.credentials_context),
                credentials_updated_at=now,
                updated_at=now,
            ),
        )
        self._record(
            updated, actor, "registry.credentials_updated", {"name": updated.name, "auth_type": updated.auth_type}
        )
        return updated

    def remove(self, tenant_id: str, actor: str, registry_id: str) -> None:
        current = self._store.get(tenant_id, registry_id)
        self._store.delete(current)
        self._record(current, actor, "registry.removed", {"name": current.name})

    # -- the pull side ---------------------------------------------------------------------------
    def for_pull(self, tenant_id: str, name: str) -> RegistryConnection | None:
        """The tenant's connection of that name (approved or not), or None."""
        return self._store.by_name(tenant_id, name)

    def credentials(self, connection: RegistryConnection) -> Credentials:
        return Credentials.from_json(self._sealer.unseal(connection.sealed_credentials, connection.credentials_context))

    def _record(self, connection: RegistryConnection, actor: str, event_type: str, data: dict[str, Any]) -> None:
        self._audit.append(
            connection.tenant_id,
            [
                EventInput(
                    event_type,
                    subject=f"registry/{connection.id}",
                    actor=actor,
                    data={"registry_id": connection.id, **data},
                )
            ],
        )


def _later(previous: str) -> str:
    """A new updated_at strictly after the previous one (it guards concurrent updates)."""
    return now_iso(max(time.time(), parse_iso(previous) + 0.001))

"""Registry connections: the upstream registries a tenant's operators connected and approved.

A connection names an upstream (base URL, checked by the egress guard), holds its credentials
sealed exactly like webhook secrets (KMS envelope, context bound to tenant, connection and purpose)
and is `pending` until an operator approves it; only approved connections serve pulls. The API
representation never carries credentials, only their type and the basic username.

Stored by `meshanics.store.registries`, bounded by MAX_REGISTRIES_PER_TENANT.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from meshanics import egress
from meshanics.audit import AuditLog
from meshanics.clock import now_iso, parse_iso
from meshanics.config import Limits
from meshanics.errors import EgressRefused, InvalidInput
from meshanics.ids import new_id
from meshanics.model import Credentials, EventInput, RegistryConnection, credentials_context
from meshanics.registry.oci import REGISTRY_NAME
from meshanics.sealing import Sealer
from meshanics.store.registries import RegistryStore

MAX_URL = Limits.max_url_length


def policy_for(allow_private_network: bool) -> egress.EgressPolicy:
    return egress.EgressPolicy(allow_private_network=allow_private_network, require_https=True)


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

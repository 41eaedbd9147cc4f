"""What each tenant pulled through the facade: the authorization for serving a blob.

A blob is served only if a manifest the same tenant pulled through the facade, from the same
connection and repository, references it, so a digest alone never opens arbitrary upstream (or
cached) content. Pulling a manifest records the manifest itself and every digest it references
(config and layers, an index's child manifests, a subject), with the size the manifest declares.

Item: pk `T#<tenant>#REG#<registry id>`, sk `<repository>@<digest>`; `kind` (manifest or blob),
`size`, `media_type`, `recorded_at`, `pulled_at` (a manifest pulled itself, not only referenced by an
index); `expires_at` (TTL) follows the cache's expiry and is renewed
whenever the manifest is pulled again. A removed connection's records are unreachable (connection
ids are never reused) and expire with their TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from meshanics.registry.oci import Descriptor, Kind
from meshanics.store.batch import batch_write
from meshanics.store.items import chunks, from_item, to_item
from meshanics.store.tenants import tenant_pk

REFRESH_AFTER: Final = 86_400


@dataclass(frozen=True)
class PullRecord:
    digest: str
    kind: Kind
    size: int
    media_type: str
    recorded_at: int
    pulled_at: int | None = None  # set on a manifest's own record when it was pulled (not just referenced)


class PullRecords:
    def __init__(
        self, client: Callable[[], Any], table: str, *, retention_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table
        self._retention = retention_days * 86_400
        self._clock = clock

    @staticmethod
    def _pk(tenant_id: str, registry_id: str) -> str:
        return f"{tenant_pk(tenant_id)}#REG#{registry_id}"

    def get(self, tenant_id: str, registry_id: str, repository: str, digest: str) -> PullRecord | None:
        response = self._client().get_item(
            TableName=self._table,
            Key=to_item({"pk": self._pk(tenant_id, registry_id), "sk": f"{repository}@{digest}"}),
        )
        item = response.get("Item")
        if not item:
            return None
        v = from_item(item)
        return PullRecord(
            digest,
            v["kind"],
            int(v["size"]),
            v.get("media_type", ""),
            int(v.get("recorded_at", 0)),
            v.get("pulled_at"),
        )

    def is_fresh(self, record: PullRecord | None) -> bool:
        """Whether this manifest was itself pulled (its references recorded) recently enough to skip."""
        return record is not None and record.pulled_at is not None and record.pulled_at > self._clock() - REFRESH_AFTER

    def record(
        self,
        tenant_id: str,
        registry_id: str,
        repository: str,
        manifest: Descriptor,
        references: Sequence[Descriptor],
    ) -> None:
        """Record the references first and the manifest last (its record means all of them exist)."""
        now = int(self._clock())
        pk = self._pk(tenant_id, registry_id)

        def item(d: Descriptor, pulled: bool = False) -> dict[str, Any]:
            return to_item(
                {
                    "pk": pk,
                    "sk": f"{repository}@{d.digest}",
                    "kind": d.kind,
                    "size": d.size,
                    "media_type": d.media_type[:256],
                    "recorded_at": now,
                    "pulled_at": now if pulled else None,
                    "expires_at": now + self._retention,
                }
            )

        children = [d for d in references if d.digest != manifest.digest]
        for chunk in chunks(children, 25):
            self._write([item(d) for d in chunk])
        self._client().put_item(TableName=self._table, Item=item(manifest, pulled=True))

    def _write(self, items: list[dict[str, Any]]) -> None:
        batch_write(self._client(), self._table, [{"PutRequest": {"Item": i}} for i in items])

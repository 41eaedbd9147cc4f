"""The pull facade: serves a tenant's devices manifests and blobs by digest, every byte verified.

Manifests: the connection (by name, within the caller's tenant) must be approved. A manifest this
tenant already pulled from the same connection and repository is served from the cache without
contacting the upstream (so also while it is down); otherwise it is fetched with the full Accept
list, its SHA-256 is checked over the exact bytes, its media type is matched against the client's
Accept list, the digests it references are recorded as pulled, and it is cached.

Blobs: served only if a manifest pulled the same way references them (see `pulls`). A cached blob
is served from the cache; otherwise one instance fills it (fill lease) while others wait for the
object: the upstream stream is hashed as it is read and is served or cached only once the digest
matched. Small blobs are answered inline; blobs above INLINE_BLOB_MAX_BYTES with a 307 to a
short-lived presigned S3 URL (Lambda responses are capped at 6 MB). Up to SINGLE_PUT_MAX such a
blob is spooled to a temporary file (Lambda's ephemeral storage) while hashed and, once it matched,
stored with one conditional PUT carrying its SHA-256 (S3 checks it too); above, it streams into a
staged multipart upload, parts in parallel, completed only after the match. Nothing large is held
in memory.

A digest mismatch serves nothing, caches nothing (a staged upload is aborted), writes a
`registry.digest_mismatch` audit event and answers 502 DIGEST_INVALID.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Final

from botocore.exceptions import BotoCoreError, ClientError

from meshanics.audit import AuditLog
from meshanics.model import EventInput, RegistryConnection
from meshanics.registry.cache import ArtifactCache, CachedObject
from meshanics.registry.connections import RegistryService, policy_for
from meshanics.registry.oci import (
    BLOB_CONTENT_TYPE,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Kind,
    OciError,
    PullTarget,
    client_accepts,
    parse_manifest,
    sha256_digest,
)
from meshanics.registry.settings import PullSettings
from meshanics.registry.upstream import BlobStream, Upstream, UpstreamClient
from meshanics.store.batch import StoreThrottled
from meshanics.store.leases import FillLeases
from meshanics.store.pulls import PullRecord, PullRecords

log = logging.getLogger("meshanics.registry")

SINGLE_PUT_MAX: Final = 64 * 1024 * 1024
"""Blobs up to this size are spooled to /tmp while hashed, then cached with one PUT whose SHA-256
checksum S3 verifies itself; larger ones are staged as a multipart upload while they stream."""


@dataclass(frozen=True)
class Pull:
    """One device request: who (tenant from the authorizer, never the request), what, and until when."""

    tenant_id: str
    actor: str
    target: PullTarget
    accept: tuple[str, ...] = ()
    deadline: float = field(default_factory=lambda: time.monotonic() + 25.0)


@dataclass(frozen=True)
class Served:
    """The answer: 200 with bytes (none for HEAD) or 307 to the cache, with the spec's headers."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    source: str = "upstream"  # upstream or cache, for logs and tests


class PullFacade:
    def __init__(
        self,
        *,
        registries: RegistryService,
        records: PullRecords,
        cache: ArtifactCache,
        leases: FillLeases,
        upstream: UpstreamClient,
        audit: AuditLog,
        settings: PullSettings,
    ) -> None:
        self._registries = registries
        self._records = records
        self._cache = cache
        self._leases = leases
        self._upstream = upstream
        self._audit = audit
        self._settings = settings

    def pull(self, pull: Pull, *, head: bool = False) -> Served:
        connection = self._connection(pull)
        if pull.target.kind == "manifest":
            return self._manifest(connection, pull, head)
        return self._blob(connection, pull, head)

    def _connection(self, pull: Pull) -> RegistryConnection:
        name = pull.target.registry
        connection = self._registries.for_pull(pull.tenant_id, name)
        if connection is None:
            raise OciError("NAME_UNKNOWN", f"no registry connection named {name!r} for this tenant")
        if not connection.approved:
            raise OciError("DENIED", f"registry connection {name!r} is pending operator approval")
        return connection

    def _upstream_for(self, connection: RegistryConnection) -> Upstream:
        return Upstream(
            registry_id=connection.id,
            base_url=connection.upstream_url,
            policy=policy_for(connection.allow_private_network),
            credentials=self._registries.credentials(connection),
            credentials_version=connection.credentials_updated_at,
        )

    # -- manifests --------------------------------------------------------------------------------
    def _manifest(self, connection: RegistryConnection, pull: Pull, head: bool) -> Served:
        t = pull.target
        record = self._records.get(pull.tenant_id, connection.id, t.repository, t.digest)
        if record is not None and record.kind == "manifest":
            cached = self._cached_bytes(pull, MAX_MANIFEST_BYTES)
            if cached is not None:
                body, content_type = cached
                media_type = content_type if content_type in MANIFEST_MEDIA_TYPES else record.media_type
                return self._manifest_answer(pull, body, media_type, head, source="cache")

        fetched = self._upstream.manifest(
            self._upstream_for(connection), t.repository, t.digest, deadline=pull.deadline
        )
        actual = sha256_digest(fetched.body)
        if actual != t.digest:
            raise self._mismatch(connection, pull, "manifest", actual)
        manifest = parse_manifest(fetched.body, fetched.content_type)
        self._check_accept(pull, manifest.media_type)
        if not self._records.is_fresh(record):
            own = Descriptor(t.digest, len(fetched.body), "manifest", manifest.media_type)
            try:
                self._records.record(pull.tenant_id, connection.id, t.repository, own, manifest.references)
            except StoreThrottled:
                raise OciError(
                    "UNAVAILABLE", "the pull could not be recorded (storage is throttling); retry shortly"
                ) from None
        self._cache_small(pull, fetched.body, manifest.media_type)
        return self._manifest_answer(pull, fetched.body, manifest.media_type, head, source="upstream")

    def _check_accept(self, pull: Pull, media_type: str) -> None:
        if not client_accepts(pull.accept, media_type):
            raise OciError(
                "MANIFEST_UNKNOWN",
                f"the manifest is {media_type}, which the request's Accept header does not list",
                detail={"media_type": media_type},
            )

    def _manifest_answer(self, pull: Pull, body: bytes, media_type: str, head: bool, *, source: str) -> Served:
        self._check_accept(pull, media_type)
        headers = _content_headers(pull.target.digest, len(body), media_type)
        return Served(200, headers, b"" if head else body, source)

    # -- blobs ------------------------------------------------------------------------------------
    def _blob(self, connection: RegistryConnection, pull: Pull, head: bool) -> Served:
        t = pull.target
        record = self._records.get(pull.tenant_id, connection.id, t.repository, t.digest)
        if record is None:
            raise OciError(
                "BLOB_UNKNOWN",
                f"{t.digest} is not referenced by a manifest pulled from {t.registry}/{t.repository}; "
                "pull the manifest by digest first",
            )
        if record.size > self._settings.max_blob_bytes:
            raise OciError(
                "DENIED", f"the blob is {record.size} bytes, above the {self._settings.max_blob_bytes}-byte limit"
            )
        cached = self._cache.head(pull.tenant_id, t.digest)
        if cached is not None:
            served = self._from_cache(pull, cached, head)
            if served is not None:
                return served
        if head:
            # Nothing is served, so nothing needs verifying: the upstream confirms it has the blob.
            self._upstream.head_blob(self._upstream_for(connection), t.repository, t.digest, deadline=pull.deadline)
            return Served(200, _content_headers(t.digest, record.size, BLOB_CONTENT_TYPE))

        owner = self._leases.acquire(pull.tenant_id, t.digest, seconds=self._settings.fill_lease_seconds)
        if owner is None:
            wait = min(self._settings.fill_wait_seconds, pull.deadline - time.monotonic() - 5.0)
            found = self._cache.wait_for(pull.tenant_id, t.digest, seconds=max(0.0, wait))
            if found is not None:
                served = self._from_cache(pull, found, head)
                if served is not None:
                    return served
        try:
            return self._fill(connection, pull, record)
        finally:
            if owner is not None:
                self._leases.release(pull.tenant_id, t.digest, owner)

    def _from_cache(self, pull: Pull, cached: CachedObject, head: bool) -> Served | None:
        digest = pull.target.digest
        if head:
            return Served(200, _content_headers(digest, cached.size, BLOB_CONTENT_TYPE), source="cache")
        if cached.size > self._settings.inline_blob_max_bytes:
            return self._redirect(pull, cached.size, source="cache")
        found = self._cached_bytes(pull, self._settings.inline_blob_max_bytes)
        if found is None:
            return None
        return Served(200, _content_headers(digest, len(found[0]), BLOB_CONTENT_TYPE), found[0], "cache")

    def _fill(self, connection: RegistryConnection, pull: Pull, record: PullRecord) -> Served:
        t = pull.target
        stream = self._upstream.blob(self._upstream_for(connection), t.repository, t.digest, deadline=pull.deadline)
        try:
            if record.size <= self._settings.inline_blob_max_bytes:
                small = self._read_verified(connection, pull, stream, record.size)
                self._cache_small(pull, small, BLOB_CONTENT_TYPE)
                return Served(200, _content_headers(t.digest, len(small), BLOB_CONTENT_TYPE), small)
            if record.size <= SINGLE_PUT_MAX:
                with tempfile.TemporaryFile(prefix="blob-") as spool:
                    size = self._spool_verified(connection, pull, stream, record.size, spool)
                    self._store(pull, spool)
                return self._redirect(pull, size, source="upstream")
            size = self._stage_verified(connection, pull, stream, record.size)
            return self._redirect(pull, size, source="upstream")
        finally:
            stream.close()

    def _read_verified(self, connection: RegistryConnection, pull: Pull, stream: BlobStream, size: int) -> bytes:
        """A small blob (at most INLINE_BLOB_MAX_BYTES), hashed as it arrives."""
        body = bytearray()
        for chunk in stream.chunks():
            body += chunk
            if len(body) > size:
                raise self._mismatch(connection, pull, "blob", None)
        data = bytes(body)
        actual = sha256_digest(data)
        if actual != pull.target.digest:
            raise self._mismatch(connection, pull, "blob", actual)
        return data

    def _copy_verified(
        self, connection: RegistryConnection, pull: Pull, stream: BlobStream, size: int, sink: Callable[[bytes], object]
    ) -> int:
        """Pass the blob to `sink` chunk by chunk while hashing it; raise on a size or digest mismatch."""
        hasher = hashlib.sha256()
        total = 0
        for chunk in stream.chunks():
            total += len(chunk)
            if total > size:
                raise self._mismatch(connection, pull, "blob", None)
            hasher.update(chunk)
            sink(chunk)
        actual = f"sha256:{hasher.hexdigest()}"
        if actual != pull.target.digest:
            raise self._mismatch(connection, pull, "blob", actual)
        return total

    def _spool_verified(
        self, connection: RegistryConnection, pull: Pull, stream: BlobStream, size: int, spool: BinaryIO
    ) -> int:
        """Hash the blob into a temporary file (Lambda's /tmp): nothing of it is held in memory."""
        total = self._copy_verified(connection, pull, stream, size, spool.write)
        spool.seek(0)
        return total

    def _stage_verified(self, connection: RegistryConnection, pull: Pull, stream: BlobStream, size: int) -> int:
        """Stream into a staged upload while hashing; commit only if the digest matched."""
        t = pull.target
        try:
            staging = self._cache.stage(pull.tenant_id, t.digest, BLOB_CONTENT_TYPE)
        except (ClientError, BotoCoreError):
            log.exception("could not start staging a blob in the cache")
            raise OciError("UNAVAILABLE", "the artifact cache is unavailable; retry shortly") from None
        try:
            total = self._copy_verified(connection, pull, stream, size, staging.write)
            staging.commit()  # False: another instance stored the same verified bytes first
        except BaseException:
            staging.abort()
            raise
        return total

    def _store(self, pull: Pull, body: BinaryIO) -> None:
        """Cache verified bytes that will be served by redirect (so the write must succeed)."""
        try:
            self._cache.put(pull.tenant_id, pull.target.digest, body, BLOB_CONTENT_TYPE)
        except (ClientError, BotoCoreError):
            log.exception("could not store a verified blob in the cache")
            raise OciError("UNAVAILABLE", "the artifact cache is unavailable; retry shortly") from None

    def _redirect(self, pull: Pull, size: int, *, source: str) -> Served:
        url = self._cache.presigned_url(pull.tenant_id, pull.target.digest)
        headers = {"Location": url, "Docker-Content-Digest": pull.target.digest, "Content-Length": "0"}
        return Served(307, headers, b"", source)

    # -- cache helpers ----------------------------------------------------------------------------
    def _cached_bytes(self, pull: Pull, max_bytes: int) -> tuple[bytes, str] | None:
        """Cached bytes, re-verified before serving; a corrupted object is dropped (and refilled)."""
        digest = pull.target.digest
        try:
            found = self._cache.read(pull.tenant_id, digest, max_bytes=max_bytes)
        except (ClientError, BotoCoreError):
            log.warning("artifact cache read failed; using the upstream", exc_info=True)
            return None
        if found is None:
            return None
        if sha256_digest(found[0]) != digest:
            log.error("cached object does not match its digest; dropping it", extra={"digest": digest})
            try:
                self._cache.delete(pull.tenant_id, digest)
            except (ClientError, BotoCoreError):
                log.warning("could not drop a corrupted cache object", exc_info=True)
            return None
        return found

    def _cache_small(self, pull: Pull, body: bytes, content_type: str) -> None:
        try:
            self._cache.put(pull.tenant_id, pull.target.digest, body, content_type)
        except (ClientError, BotoCoreError):
            # The bytes are verified and served; only the next pull pays for the miss.
            log.warning("artifact cache write failed", exc_info=True)

    # -- mismatches -------------------------------------------------------------------------------
    def _mismatch(self, connection: RegistryConnection, pull: Pull, kind: Kind, actual: str | None) -> OciError:
        t = pull.target
        data: dict[str, str] = {
            "registry_id": connection.id,
            "repository": t.repository[:256],
            "expected_digest": t.digest,
            "kind": kind,
        }
        if actual is not None:
            data["actual_digest"] = actual
        log.error("upstream content does not match its digest", extra=data)
        try:
            subject = f"registry/{connection.id}"
            event = EventInput("registry.digest_mismatch", subject=subject, actor=pull.actor, data=data)
            self._audit.append(pull.tenant_id, [event])
        except Exception:
            log.exception("could not record a digest mismatch in the audit log")
        what = "more bytes than the manifest declares" if actual is None else f"content hashing to {actual}"
        return OciError(
            "DIGEST_INVALID",
            f"the upstream registry returned {what} for {t.digest}; nothing was served or cached",
            status=502,
            detail={"expected": t.digest, "actual": actual},
        )


def _content_headers(digest: str, size: int, content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Content-Length": str(size),
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
    }

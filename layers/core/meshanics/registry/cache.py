"""The content-addressed artifact cache in S3, and the fill leases that de-duplicate its writes.

Objects live at `tenants/<tenant>/sha256/<hex>` and are written only after the bytes matched their
digest: small ones with one conditional PUT (`If-None-Match: *`, carrying the SHA-256 so S3 checks
the bytes it stored), large ones staged as a multipart upload whose parts go up while the upstream
is still being read and which becomes an object only when completed, conditionally, after the
hash matched (a mismatch aborts it, so nothing is ever visible). A conditional write that finds
the object already there is success: another instance filled it with the same verified bytes.

Lambda instances share no memory, so concurrent fills of one digest are de-duplicated in
DynamoDB: the first takes a short lease (a conditional put), the others wait for the object to
appear and serve it from the cache (or fill it themselves if the lease holder takes too long).
The bucket's lifecycle rule expires objects and abandoned multipart uploads.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from botocore.exceptions import BotoCoreError, ClientError

from meshanics.registry.oci import digest_hex

PART_SIZE: Final = 8 * 1024 * 1024
CONCURRENCY: Final = 4
_EXISTS: Final = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})


def default_s3_client() -> Any:
    """An S3 client for the cache: SigV4 (presigned URLs), checksums only where we send them."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=20,
        max_pool_connections=2 * CONCURRENCY + 4,
    )
    return boto3.session.Session().client("s3", config=config)


@dataclass(frozen=True)
class CachedObject:
    size: int
    content_type: str


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class ArtifactCache:
    def __init__(
        self,
        bucket: str,
        *,
        presign_ttl: int,
        s3: Callable[[], Any] | None = None,
        part_size: int = PART_SIZE,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._bucket = bucket
        self._presign_ttl = presign_ttl
        self._s3_factory = s3 or default_s3_client
        self._s3_client: Any = None
        self._lock = threading.Lock()
        self.part_size = part_size
        self.concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None

    def _s3(self) -> Any:
        with self._lock:
            if self._s3_client is None:
                self._s3_client = self._s3_factory()
            return self._s3_client

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cache-part")
            return self._executor

    @staticmethod
    def key(tenant_id: str, digest: str) -> str:
        return f"tenants/{tenant_id}/sha256/{digest_hex(digest)}"

    # -- reads ------------------------------------------------------------------------------------
    def head(self, tenant_id: str, digest: str) -> CachedObject | None:
        try:
            response = self._s3().head_object(Bucket=self._bucket, Key=self.key(tenant_id, digest))
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise
        return CachedObject(int(response["ContentLength"]), str(response.get("ContentType", "")))

    def read(self, tenant_id: str, digest: str, *, max_bytes: int) -> tuple[bytes, str] | None:
        """The object's bytes and content type, if cached and at most `max_bytes` long."""
        try:
            response = self._s3().get_object(Bucket=self._bucket, Key=self.key(tenant_id, digest))
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise
        body = response["Body"]
        try:
            if int(response["ContentLength"]) > max_bytes:
                return None
            return body.read(), str(response.get("ContentType", ""))
        finally:
            body.close()

    def wait_for(self, tenant_id: str, digest: str, *, seconds: float, interval: float = 0.1) -> CachedObject | None:
        """Poll for an object another instance is filling; None if it did not appear in time."""
        end = time.monotonic() + seconds
        while True:
            found = self.head(tenant_id, digest)
            if found is not None or time.monotonic() >= end:
                return found
            time.sleep(min(interval, max(0.0, end - time.monotonic())))
            interval = min(interval * 1.5, 0.5)

    def presigned_url(self, tenant_id: str, digest: str) -> str:
        url: str = self._s3().generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": self.key(tenant_id, digest)},
            ExpiresIn=self._presign_ttl,
        )
        return url

    # -- writes (verified bytes only) ---------------------------------------------------------------
    def put(self, tenant_id: str, digest: str, data: bytes | BinaryIO, content_type: str) -> bool:
        """Store verified bytes; False if the object was already there (filled by someone else)."""
        try:
            self._s3().put_object(
                Bucket=self._bucket,
                Key=self.key(tenant_id, digest),
                Body=data,
                ContentType=content_type,
                IfNoneMatch="*",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(digest_hex(digest))).decode(),
            )
        except ClientError as error:
            if _code(error) in _EXISTS:
                return False
            raise
        return True

    def stage(self, tenant_id: str, digest: str, content_type: str) -> Staging:
        """A multipart upload to feed while verifying; it becomes the object only on commit()."""
        key = self.key(tenant_id, digest)
        upload = self._s3().create_multipart_upload(Bucket=self._bucket, Key=key, ContentType=content_type)
        return Staging(
            s3=self._s3,
            bucket=self._bucket,
            key=key,
            upload_id=upload["UploadId"],
            pool=self._pool(),
            part_size=self.part_size,
            concurrency=self.concurrency,
        )

    def delete(self, tenant_id: str, digest: str) -> None:
        self._s3().delete_object(Bucket=self._bucket, Key=self.key(tenant_id, digest))


class Staging:
    """Parts are uploaded in the background (at most `concurrency` in flight) as bytes arrive."""

    def __init__(
        self,
        *,
        s3: Callable[[], Any],
        bucket: str,
        key: str,
        upload_id: str,
        pool: ThreadPoolExecutor,
        part_size: int,
        concurrency: int,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._upload_id = upload_id
        self._pool = pool
        self._part_size = part_size
        self._concurrency = concurrency
        self._buffer = bytearray()
        self._futures: list[Future[dict[str, Any]]] = []
        self._closed = False

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._submit(part)

    def _submit(self, part: bytes) -> None:
        in_flight = [f for f in self._futures if not f.done()]
        if len(in_flight) >= self._concurrency:
            in_flight[0].result()  # back-pressure: bounded memory, and errors surface early
        number = len(self._futures) + 1
        self._futures.append(self._pool.submit(self._upload, number, part))

    def _upload(self, number: int, part: bytes) -> dict[str, Any]:
        response = self._s3().upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=part
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def commit(self) -> bool:
        """Complete the upload conditionally; False if the object already existed (ours is dropped)."""
        if self._buffer or not self._futures:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        try:
            parts = [f.result() for f in self._futures]
            self._s3().complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except ClientError as error:
            self.abort()
            if _code(error) in _EXISTS:
                return False
            raise
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return True

    def abort(self) -> None:
        """Drop every staged part: nothing becomes visible."""
        if self._closed:
            return
        self._closed = True
        for future in self._futures:
            future.cancel()
        for future in self._futures:
            if not future.cancelled():
                with contextlib.suppress(Exception):  # the upload is aborted regardless
                    future.result()
        # If this fails, the bucket's lifecycle rule removes the abandoned upload after a day.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._s3().abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)

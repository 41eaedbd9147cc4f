"""The OCI distribution vocabulary the pull facade speaks: media types, digests, names, errors.

Pure: no AWS, no HTTP client. Everything a device sends is parsed here before anything else runs,
and every refusal is an :class:`OciError` carrying the spec's error code, the HTTP status and a
message that says what to do instead (``{"errors": [{"code", "message", "detail"}]}``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote

from meshanics import untrusted
from meshanics.config import Limits
from meshanics.errors import MeshanicsError

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_MEDIA_TYPES: Final = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
UPSTREAM_ACCEPT: Final = ", ".join(MANIFEST_MEDIA_TYPES)
"""Sent with every upstream manifest request: some registries answer 404 to a by-digest request
whose Accept list lacks the OCI types."""

BLOB_CONTENT_TYPE: Final = "application/octet-stream"
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_REFERENCES: Final = 1000
MAX_NAME_LENGTH: Final = 255
MAX_DESCRIPTOR_SIZE: Final = 2**63 - 1

ALGORITHM: Final = "sha256"
_DIGEST: Final = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_TAG: Final = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
REGISTRY_NAME: Final = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{Limits.max_registry_name - 1}}}")


# -- errors -----------------------------------------------------------------------------------
ErrorCode = Literal[
    "BLOB_UNKNOWN",
    "DENIED",
    "DIGEST_INVALID",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "TOOMANYREQUESTS",
    "UNAUTHORIZED",
    "UNAVAILABLE",
    "UNKNOWN",
    "UNSUPPORTED",
]

DEFAULT_STATUS: Final[Mapping[str, int]] = {
    "BLOB_UNKNOWN": 404,
    "DENIED": 403,
    "DIGEST_INVALID": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "TOOMANYREQUESTS": 429,
    "UNAUTHORIZED": 401,
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
    "UNSUPPORTED": 405,
}


class OciError(MeshanicsError):
    """A refusal in the distribution spec's terms: status, error code, message, optional detail."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: int | None = None,
        detail: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = DEFAULT_STATUS[code] if status is None else status
        self.detail = dict(detail or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.detail)


def error_body(code: str, message: str, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail:
        entry["detail"] = dict(detail)
    return {"errors": [entry]}


def from_domain(error: MeshanicsError) -> OciError:
    """A platform error (scope, validation, not found) in the spec's terms, for /v2 answers."""
    if isinstance(error, OciError):
        return error
    codes: dict[int, ErrorCode] = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN", 429: "TOOMANYREQUESTS"}
    code = codes.get(error.status, "UNSUPPORTED" if error.status < 500 else "UNAVAILABLE")
    return OciError(code, error.message, status=error.status)


# -- digests ----------------------------------------------------------------------------------
def parse_digest(text: str) -> str:
    """A canonical `sha256:<64 lower-case hex>` digest, or DIGEST_INVALID / UNSUPPORTED."""
    match = _DIGEST.fullmatch(text)
    if match is None:
        raise OciError("DIGEST_INVALID", f"{text[:100]!r} is not a digest; use sha256:<64 hex digits>", status=400)
    algorithm, encoded = match.groups()
    if algorithm != ALGORITHM:
        raise OciError("UNSUPPORTED", f"digest algorithm {algorithm!r} is not supported; use sha256", status=400)
    if not _SHA256_HEX.fullmatch(encoded):
        raise OciError("DIGEST_INVALID", "a sha256 digest is 64 lower-case hex digits", status=400)
    return text


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def digest_hex(digest: str) -> str:
    return digest.partition(":")[2]


def is_digest(reference: str) -> bool:
    return ":" in reference


# -- names and request paths ------------------------------------------------------------------
def check_repository(repository: str) -> str:
    """An OCI repository path (`a/b-c/d`), or NAME_INVALID."""
    if (
        not repository
        or len(repository) > MAX_NAME_LENGTH
        or not all(_COMPONENT.fullmatch(part) for part in repository.split("/"))
    ):
        raise OciError(
            "NAME_INVALID",
            f"{repository[:100]!r} is not a valid repository name (lower-case components separated by '/')",
        )
    return repository


Kind = Literal["manifest", "blob"]


@dataclass(frozen=True)
class PullTarget:
    """What a device asked for: `/v2/<registry>/<repository>/(manifests|blobs)/<digest>`."""

    registry: str
    repository: str
    kind: Kind
    digest: str


READ_ONLY: Final = "this registry is read-only and serves content by digest only"


def unsupported(message: str = READ_ONLY) -> OciError:
    return OciError("UNSUPPORTED", message, headers={"Allow": "GET, HEAD"})


def parse_pull_path(rest: str, method: str) -> PullTarget:
    """Parse the part of the path after `/v2/`; refuse tags, pushes, deletes, catalog and tag lists."""
    path = unquote(rest).strip("/")
    parts = path.split("/")
    if method not in ("GET", "HEAD"):
        raise unsupported(f"{method} is not supported: {READ_ONLY}")
    if path == "_catalog":
        raise unsupported("the catalog is not served: " + READ_ONLY)
    if len(parts) >= 3 and parts[-2:] == ["tags", "list"]:
        raise unsupported("tag lists are not served: " + READ_ONLY)
    if parts[-2:] == ["blobs", "uploads"] or parts[-3:-1] == ["blobs", "uploads"]:
        raise unsupported("uploads are not supported: " + READ_ONLY)
    if len(parts) >= 3 and parts[-2] == "referrers":
        raise unsupported("the referrers API is not served: " + READ_ONLY)
    if len(parts) < 4 or parts[-2] not in ("manifests", "blobs"):
        raise OciError("NAME_UNKNOWN", "no such route; pull with /v2/<registry>/<repository>/manifests/<digest>")
    registry, repository, kind, reference = parts[0], "/".join(parts[1:-2]), parts[-2], parts[-1]
    if not REGISTRY_NAME.fullmatch(registry):
        raise OciError("NAME_INVALID", f"{registry[:100]!r} is not a registry connection name")
    check_repository(repository)
    if kind == "manifests" and not is_digest(reference):
        if _TAG.fullmatch(reference):
            raise OciError(
                "MANIFEST_UNKNOWN",
                f"tag {reference!r} is not served: pull by digest only ({registry}/{repository}@sha256:<digest>)",
                detail={"tag": reference},
            )
        raise OciError("MANIFEST_INVALID", "the reference is neither a digest nor a tag", status=400)
    return PullTarget(registry, repository, "manifest" if kind == "manifests" else "blob", parse_digest(reference))


# -- content negotiation ----------------------------------------------------------------------
def parse_accept(values: Iterable[str]) -> tuple[str, ...]:
    """Media types from one or more Accept header values (parameters and q-values dropped)."""
    types: list[str] = []
    for value in values:
        for item in value.split(","):
            media = item.split(";", 1)[0].strip().lower()
            if media and media not in types:
                types.append(media)
    return tuple(types)


def client_accepts(accept: tuple[str, ...], media_type: str) -> bool:
    """Whether a manifest of `media_type` may be served to a client that sent `accept`.

    A client that names no manifest type at all (no Accept, `*/*`, `application/json`) gets the
    manifest as stored; one that lists manifest types gets only one of those (as the CNCF
    distribution registry does for OCI content), since by-digest content cannot be converted.
    """
    if media_type in accept or "*/*" in accept or "application/*" in accept:
        return True
    return not any(a in MANIFEST_MEDIA_TYPES for a in accept)


# -- manifests --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Descriptor:
    """A digest a manifest references: a blob (config, layer) or a child manifest (index entry)."""

    digest: str
    size: int
    kind: Kind
    media_type: str


def _descriptor(raw: Any, kind: Kind) -> Descriptor | None:
    if not isinstance(raw, dict):
        raise OciError("MANIFEST_INVALID", "a descriptor in the manifest is not an object", status=502)
    digest, size, media = raw.get("digest"), raw.get("size"), raw.get("mediaType", "")
    if not isinstance(digest, str) or isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise OciError("MANIFEST_INVALID", "a descriptor in the manifest lacks a digest or size", status=502)
    if size > MAX_DESCRIPTOR_SIZE:  # the spec's int64; a larger number cannot be stored (DynamoDB: 38 digits)
        raise OciError("MANIFEST_INVALID", "a descriptor in the manifest has a size out of range", status=502)
    try:
        parse_digest(digest)
    except OciError:
        return None  # a non-sha256 descriptor can never be requested here, so it is not recorded
    return Descriptor(digest, size, kind, media if isinstance(media, str) else "")


@dataclass(frozen=True)
class Manifest:
    media_type: str
    references: tuple[Descriptor, ...]


def parse_manifest(body: bytes, upstream_content_type: str | None) -> Manifest:
    """The media type and referenced digests of verified manifest bytes.

    The type is the manifest's own `mediaType`, else the upstream's Content-Type, else inferred
    from the shape (OCI manifests and indexes may omit `mediaType`). Schema 1 and unknown types
    are refused.
    """
    try:
        document = untrusted.loads(body)
    except untrusted.Unparseable as error:
        # Deep nesting, huge numbers, lone surrogates: upstream content we cannot use, so 502.
        message = "is not JSON" if error.kind == "syntax" else f"cannot be used: {error.message}"
        raise OciError("MANIFEST_INVALID", f"the upstream manifest {message}", status=502) from None
    if not isinstance(document, dict) or document.get("schemaVersion") != 2:
        raise OciError("UNSUPPORTED", "only schema version 2 manifests (OCI or Docker) are served", status=502)
    declared = document.get("mediaType")
    header = (upstream_content_type or "").split(";", 1)[0].strip().lower()
    if isinstance(declared, str) and declared:
        media_type = declared
    elif header in MANIFEST_MEDIA_TYPES:
        media_type = header
    elif "manifests" in document:
        media_type = OCI_INDEX
    else:
        media_type = OCI_MANIFEST
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise OciError("UNSUPPORTED", f"manifest media type {media_type[:100]!r} is not served", status=502)

    found: list[Descriptor | None] = []
    if media_type in INDEX_MEDIA_TYPES:
        children = document.get("manifests")
        if not isinstance(children, list):
            raise OciError("MANIFEST_INVALID", "the index has no manifests list", status=502)
        found += [_descriptor(child, "manifest") for child in children]
    else:
        config, layers = document.get("config"), document.get("layers")
        if not isinstance(layers, list) or config is None:
            raise OciError("MANIFEST_INVALID", "the manifest has no config or layers", status=502)
        found.append(_descriptor(config, "blob"))
        found += [_descriptor(layer, "blob") for layer in layers]
    if document.get("subject") is not None:
        found.append(_descriptor(document["subject"], "manifest"))
    unique = {d.digest: d for d in found if d is not None}
    if len(unique) > MAX_REFERENCES:
        raise OciError("MANIFEST_INVALID", f"the manifest references more than {MAX_REFERENCES} digests", status=502)
    return Manifest(media_type, tuple(unique.values()))

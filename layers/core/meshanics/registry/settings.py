"""The pull facade's settings, from the environment variables template.yaml sets on RegistryFunction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshanics.errors import ConfigurationError

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be within {low}..{high}, got {value}")
    return value


@dataclass(frozen=True)
class PullSettings:
    inline_blob_max_bytes: int = 3 * 1024 * 1024
    presigned_url_ttl: int = 300
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    cache_expiry_days: int = 30
    max_blob_bytes: int = 1536 * 1024 * 1024
    fill_wait_seconds: float = 10.0
    fill_lease_seconds: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PullSettings:
        d = cls()
        # base64 adds a third: inline bodies must stay under the 6 MB Lambda response limit.
        inline_cap = LAMBDA_RESPONSE_LIMIT * 3 // 4 - 64 * 1024
        return cls(
            inline_blob_max_bytes=_int(env, "INLINE_BLOB_MAX_BYTES", d.inline_blob_max_bytes, low=0, high=inline_cap),
            presigned_url_ttl=_int(env, "PRESIGNED_URL_TTL_SECONDS", d.presigned_url_ttl, low=1, high=3600),
            connect_timeout=_int(env, "REGISTRY_CONNECT_TIMEOUT_MS", 3000, low=50, high=10_000) / 1000,
            read_timeout=_int(env, "REGISTRY_READ_TIMEOUT_MS", 10_000, low=50, high=28_000) / 1000,
            cache_expiry_days=_int(env, "ARTIFACT_CACHE_EXPIRY_DAYS", d.cache_expiry_days, low=1, high=36_500),
            max_blob_bytes=_int(env, "REGISTRY_MAX_BLOB_BYTES", d.max_blob_bytes, low=1, high=10 * 1024**3),
            fill_wait_seconds=_int(env, "REGISTRY_FILL_WAIT_MS", 10_000, low=0, high=25_000) / 1000,
        )

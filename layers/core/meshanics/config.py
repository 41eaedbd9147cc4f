"""Settings from the environment variables that template.yaml sets (the local stack sets the same)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property

from meshanics import backoff
from meshanics.errors import ConfigurationError


@dataclass(frozen=True)
class Limits:
    max_endpoints: int = 50
    max_filters: int = 20
    max_description: int = 512
    max_request_bytes: int = 262_144
    max_record_bytes: int = 8_192
    max_events_per_request: int = 100
    max_registries: int = 20


@dataclass
class Settings:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def _get(self, name: str) -> str:
        value = self.env.get(name)
        if not value:
            raise ConfigurationError(f"environment variable {name} is not set")
        return value

    def _int(self, name: str, default: int) -> int:
        raw = self.env.get(name)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None

    @cached_property
    def audit_table(self) -> str:
        return self._get("AUDIT_TABLE")

    @cached_property
    def integrations_table(self) -> str:
        return self._get("INTEGRATIONS_TABLE")

    @cached_property
    def delivery_queue_url(self) -> str:
        return self._get("DELIVERY_QUEUE_URL")

    @cached_property
    def delivery_dlq_url(self) -> str:
        return self._get("DELIVERY_DLQ_URL")

    @cached_property
    def fanout_failure_queue_url(self) -> str:
        return self._get("FANOUT_FAILURE_QUEUE_URL")

    @cached_property
    def fanout_recovery_max_receives(self) -> int:
        """The failure queue's maxReceiveCount: the receive on which recovery records a give-up."""
        return self._int("FANOUT_RECOVERY_MAX_RECEIVES", 5)

    @cached_property
    def sealing_key_id(self) -> str:
        return self._get("SEALING_KEY_ID")

    @cached_property
    def artifact_bucket(self) -> str:
        return self._get("ARTIFACT_CACHE_BUCKET")

    @cached_property
    def retry_schedule(self) -> tuple[int, ...]:
        raw = self.env.get("DELIVERY_RETRY_SCHEDULE")
        schedule = backoff.parse_schedule(raw) if raw else backoff.DEFAULT_SCHEDULE
        bound = self._int("DELIVERY_MAX_ATTEMPTS", len(schedule))
        if bound != len(schedule):
            raise ConfigurationError(
                f"DELIVERY_MAX_ATTEMPTS ({bound}) must equal the number of delays in "
                f"DELIVERY_RETRY_SCHEDULE ({len(schedule)})"
            )
        receives = self._int("DELIVERY_MAX_RECEIVES", bound + 10)
        if receives <= bound:
            raise ConfigurationError(
                f"DELIVERY_MAX_RECEIVES ({receives}, the queue's maxReceiveCount) must be above "
                f"DELIVERY_MAX_ATTEMPTS ({bound}): it is a backstop for crashes, not the attempt bound"
            )
        return schedule

    @cached_property
    def connect_timeout(self) -> float:
        return self._int("DELIVERY_CONNECT_TIMEOUT_MS", 3000) / 1000

    @cached_property
    def read_timeout(self) -> float:
        return self._int("DELIVERY_READ_TIMEOUT_MS", 10000) / 1000

    @cached_property
    def delivery_deadline(self) -> float:
        """Seconds one attempt may take in all (connect, send, answer)."""
        return self._int("DELIVERY_DEADLINE_MS", 15000) / 1000

    @cached_property
    def delivery_concurrency(self) -> int:
        return self._int("DELIVERY_CONCURRENCY", 10)

    @cached_property
    def audit_shards(self) -> int:
        """Partitions of each tenant's audit log (a subject always maps to the same one)."""
        shards = self._int("AUDIT_SHARDS", 16)
        if not 1 <= shards <= 256:
            raise ConfigurationError(f"AUDIT_SHARDS must be within 1..256, got {shards}")
        return shards

    @cached_property
    def audit_retention_days(self) -> int:
        return self._int("AUDIT_RETENTION_DAYS", 400)

    @cached_property
    def delivery_retention_days(self) -> int:
        return self._int("DELIVERY_RETENTION_DAYS", 30)

    @cached_property
    def rotation_overlap_seconds(self) -> int:
        return self._int("SECRET_ROTATION_OVERLAP_SECONDS", 86_400)

    @cached_property
    def limits(self) -> Limits:
        d = Limits()
        return Limits(
            max_endpoints=self._int("MAX_ENDPOINTS_PER_TENANT", d.max_endpoints),
            max_filters=self._int("MAX_FILTERS_PER_ENDPOINT", d.max_filters),
            max_description=self._int("MAX_DESCRIPTION_LENGTH", d.max_description),
            max_request_bytes=self._int("MAX_REQUEST_BYTES", d.max_request_bytes),
            max_record_bytes=self._int("MAX_AUDIT_RECORD_BYTES", d.max_record_bytes),
            max_events_per_request=d.max_events_per_request,
            max_registries=self._int("MAX_REGISTRIES_PER_TENANT", d.max_registries),
        )


@cache
def settings() -> Settings:
    """The process's settings (read once per Lambda container)."""
    return Settings()

"""Settings from the environment variables that template.yaml sets (the local platform sets the same)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache, cached_property

from meshanics import backoff
from meshanics.errors import ConfigurationError


@dataclass(frozen=True)
class Limits:
    """Every bound the API enforces, in one place.

    The API's request models take their constraints from here when they are imported (so the
    OpenAPI document states the deployed limits) and the core checks the same values again. The
    fields in CONFIGURABLE are template parameters (read from the environment variables
    template.yaml sets); the others are fixed product limits.
    """

    # -- per tenant
    max_endpoints: int = 50
    max_registries: int = 20
    # -- webhook endpoints
    max_filters: int = 20
    max_description: int = 512
    max_url_length: int = 2048  # webhook and registry upstream URLs
    max_rotation_overlap: int = 7 * 86_400  # rotate-secret overlap_seconds (SecretRotationOverlapSeconds' MaxValue)
    max_test_message: int = 256
    # -- custom headers of an endpoint (sent with each delivery; values sealed like the secret)
    max_custom_headers: int = 10
    max_header_name_length: int = 64
    max_header_value_length: int = 2048  # room for a bearer JWT
    max_custom_headers_bytes: int = 4096  # every name and value together
    # -- requests
    max_request_bytes: int = 262_144
    max_page_size: int = 100
    max_cursor_length: int = 2048
    max_replay_batch: int = 100  # failed deliveries replayed by one POST /v1/webhooks/{id}/replay
    # -- events (the audit log checks the subject, actor and batch bounds as well)
    max_events_per_request: int = 100
    max_record_bytes: int = 8_192
    max_event_type_length: int = 128
    max_subject_length: int = 256
    max_actor_length: int = 128
    # -- registry connections
    max_registry_name: int = 63  # a DNS label: [a-z0-9][a-z0-9-]*
    max_username_length: int = 256
    max_password_length: int = 4096
    max_token_length: int = 8192


@dataclass(frozen=True)
class RecoveryBounds:
    """Bounds of `POST /v1/webhooks/{id}/recover` (template parameters Recovery*)."""

    max_window_hours: int = 168
    max_deliveries: int = 10_000
    max_schedule_hours: int = 168
    max_age_days: int = 30  # nothing older is kept (DeliveryRetentionDays)


# The limits that are template parameters: field -> (environment variable, lowest allowed value).
CONFIGURABLE: dict[str, tuple[str, int]] = {
    "max_endpoints": ("MAX_ENDPOINTS_PER_TENANT", 1),
    "max_registries": ("MAX_REGISTRIES_PER_TENANT", 1),
    "max_filters": ("MAX_FILTERS_PER_ENDPOINT", 1),
    "max_description": ("MAX_DESCRIPTION_LENGTH", 0),
    "max_request_bytes": ("MAX_REQUEST_BYTES", 1024),
    "max_record_bytes": ("MAX_AUDIT_RECORD_BYTES", 512),
}


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
    def idempotency_table(self) -> str:
        """The answers to API requests made with an Idempotency-Key (the API function only)."""
        return self._get("IDEMPOTENCY_TABLE")

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
    def subscription_cache_seconds(self) -> float:
        """How long a producer reuses what it read of the subscription index (a change waits it out)."""
        return self._int("SUBSCRIPTION_CACHE_MS", 1000) / 1000

    @cached_property
    def endpoint_disable_after_seconds(self) -> int:
        """An endpoint failing every attempt for this long is disabled (0: never)."""
        seconds = self._int("ENDPOINT_DISABLE_AFTER_SECONDS", 5 * 86_400)
        if seconds < 0:
            raise ConfigurationError(f"ENDPOINT_DISABLE_AFTER_SECONDS must be 0 or more, got {seconds}")
        return seconds

    @cached_property
    def recovery_bounds(self) -> RecoveryBounds:
        bounds = RecoveryBounds(
            max_window_hours=self._int("RECOVERY_MAX_WINDOW_HOURS", 168),
            max_deliveries=self._int("RECOVERY_MAX_DELIVERIES", 10_000),
            max_schedule_hours=self._int("RECOVERY_MAX_SCHEDULE_HOURS", 168),
            max_age_days=self.delivery_retention_days,
        )
        for name, value in vars(bounds).items():
            if value < 1:
                raise ConfigurationError(f"recovery bound {name} must be at least 1, got {value}")
        return bounds

    @cached_property
    def replay_queue_url(self) -> str:
        return self._get("REPLAY_QUEUE_URL")

    @cached_property
    def replay_schedule_group(self) -> str:
        """The EventBridge Scheduler group of scheduled recoveries' one-time schedules."""
        return self._get("REPLAY_SCHEDULE_GROUP")

    @cached_property
    def replay_schedule_target(self) -> tuple[str, str]:
        """What a scheduled recovery's schedule sends to (the replay queue's ARN) and as whom (a role)."""
        return self._get("REPLAY_QUEUE_ARN"), self._get("REPLAY_SCHEDULER_ROLE_ARN")

    @cached_property
    def audit_retention_days(self) -> int:
        return self._int("AUDIT_RETENTION_DAYS", 400)

    @cached_property
    def delivery_retention_days(self) -> int:
        return self._int("DELIVERY_RETENTION_DAYS", 30)

    @cached_property
    def rotation_overlap_seconds(self) -> int:
        """The default overlap after a secret rotation (a request may choose up to the limit)."""
        overlap = self._int("SECRET_ROTATION_OVERLAP_SECONDS", 86_400)
        bound = self.limits.max_rotation_overlap
        if not 0 <= overlap <= bound:
            raise ConfigurationError(f"SECRET_ROTATION_OVERLAP_SECONDS must be within 0..{bound}, got {overlap}")
        return overlap

    @cached_property
    def limits(self) -> Limits:
        d = Limits()
        values = {}
        for name, (variable, low) in CONFIGURABLE.items():
            value = self._int(variable, getattr(d, name))
            if value < low:
                raise ConfigurationError(f"{variable} must be at least {low}, got {value}")
            values[name] = value
        return replace(d, **values)


@cache
def settings() -> Settings:
    """The process's settings (read once per Lambda container)."""
    return Settings()

"""Managing webhook endpoints: what the tenant API does, independent of API Gateway.

Secrets are generated here, sealed before they are stored, and returned only by create and rotate.
Custom header values are sealed beside the secret (one data key opens both) and never returned.
Every change writes an audit event (itself deliverable, never carrying a secret or a header value).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from meshanics import catalog, custom_headers, egress, filters, signing
from meshanics.audit import AuditLog
from meshanics.clock import ceil_ms, later_than, now_iso
from meshanics.config import Limits
from meshanics.errors import Conflict, EgressRefused, InvalidInput, NotFound
from meshanics.health import HealthReader
from meshanics.history import DeliveryHistory, Page
from meshanics.ids import looks_like, new_id
from meshanics.model import (
    Delivery,
    DeliveryFilter,
    DeliveryJob,
    Endpoint,
    EventInput,
    Recovery,
    Status,
    parse_delivery_id,
    secret_context,
)
from meshanics.operational import switched
from meshanics.replay import replay
from meshanics.store.deliveries import DeliveryStore
from meshanics.store.endpoints import EndpointStore

if TYPE_CHECKING:  # the sending path is imported only when a test delivery runs
    from meshanics.deliver import Deliverer
    from meshanics.endpoint_recovery import EndpointRecovery
    from meshanics.jobqueue import DeliveryQueue
    from meshanics.sealing import Sealer

DISABLED_BY_API = "api"


@dataclass(frozen=True)
class TestResult:
    delivery_id: str
    status: str
    status_code: int | None
    duration_ms: int
    error: str | None

    def public(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "status": self.status,
            "status_code": self.status_code,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


class WebhookService:
    def __init__(
        self,
        *,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        audit: AuditLog,
        sealer: Sealer,
        deliverer: Callable[[], Deliverer],
        queue: Callable[[], DeliveryQueue],
        limits: Limits,
        rotation_overlap: int,
        health: HealthReader,
        recoveries: Callable[[], EndpointRecovery],
        resolver: egress.Resolver = egress.system_resolver,
    ) -> None:
        self._health = health
        self._recoveries = recoveries
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._audit = audit
        self._history = DeliveryHistory(deliveries, audit.table)
        self._sealer = sealer
        self._deliverer = deliverer
        self._queue = queue
        self._limits = limits
        self._overlap = rotation_overlap
        self._resolver = resolver

    # -- validation ---------------------------------------------------------------------------
    def _check_url(self, url: str, allow_private_network: bool) -> str:
        if len(url) > self._limits.max_url_length:
            raise InvalidInput(f"url is longer than {self._limits.max_url_length} characters", field="url")
        policy = egress.EgressPolicy(allow_private_network=allow_private_network, require_https=True)
        try:
            egress.validate_url(url, policy, self._resolver)
        except EgressRefused as refused:
            raise EgressRefused(refused.message, code=refused.code, field="url") from None
        return url

    def _check_description(self, description: str) -> str:
        if len(description) > self._limits.max_description:
            raise InvalidInput(
                f"description is longer than {self._limits.max_description} characters", field="description"
            )
        return description

    # -- endpoints ----------------------------------------------------------------------------
    def create(
        self,
        tenant_id: str,
        actor: str,
        *,
        url: str,
        events: list[str],
        description: str = "",
        allow_private_network: bool = False,
        enabled: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Endpoint, str]:
        """A new endpoint and its signing secret (the only time the secret is returned)."""
        normalized = filters.normalize(events, max_filters=self._limits.max_filters)
        self._check_description(description)
        custom = custom_headers.check(headers or {}, self._limits)
        self._check_url(url, allow_private_network)
        endpoint_id = new_id("ep")
        secret = signing.generate_secret()
        now = now_iso()
        endpoint = Endpoint(
            tenant_id=tenant_id,
            id=endpoint_id,
            url=url,
            events=tuple(normalized),
            description=description,
            allow_private_network=allow_private_network,
            enabled=enabled,
            disabled_reason=None if enabled else DISABLED_BY_API,
            created_at=now,
            updated_at=now,
            sealed_secret=self._sealer.seal(secret, secret_context(tenant_id, endpoint_id)),
        )
        endpoint = custom_headers.sealed(self._sealer, endpoint, custom)
        created = self._endpoints.create(endpoint, max_endpoints=self._limits.max_endpoints)
        self._audit.subscriptions.settle(tenant_id)
        self._record(
            tenant_id,
            actor,
            "webhook.created",
            created.id,
            {"webhook_id": created.id, "url_host": urlsplit(url).hostname or "", "events": list(normalized)},
        )
        return created, secret

    def get(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        return self._endpoint(tenant_id, endpoint_id)

    def health(self, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        """Consecutive failures, last success and failure, success rate over the last 24 hours."""
        return self._health.health(tenant_id, endpoint_id)

    def stats(self, tenant_id: str, endpoint_id: str, window: str) -> dict[str, Any]:
        """Delivered, retried and failed counts, success rate, latency, top errors over `window`."""
        self._endpoint(tenant_id, endpoint_id)
        return self._health.stats(tenant_id, endpoint_id, window)

    def _endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        # An id that cannot be one is simply not found (and never reaches a key: sort keys are bounded).
        if not looks_like(endpoint_id, "ep"):
            raise NotFound(f"webhook {endpoint_id[:64]} not found")
        return self._endpoints.get(tenant_id, endpoint_id)

    def page(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[Endpoint], str | None]:
        return self._endpoints.page(tenant_id, limit=limit, cursor=cursor)

    def update(
        self, tenant_id: str, actor: str, endpoint_id: str, changes: Mapping[str, Any]
    ) -> tuple[Endpoint, Recovery | None]:
        """Apply a partial change: url, events, description, allow_private_network, enabled, headers
        (merged into the current set: see custom_headers.merge); with
        `recover_since` (a datetime, only with enabled: true) also start a recovery of what the
        endpoint failed or missed since then. The endpoint, and the recovery if one was started."""
        recover_since = changes.get("recover_since")
        if recover_since is not None:
            if changes.get("enabled") is not True:
                raise InvalidInput("recover_since is only taken with enabled: true", field="recover_since")
            self._recoveries().check_window(recover_since, None, None)
        current = self._endpoint(tenant_id, endpoint_id)
        updated = current
        headers: dict[str, str] | None = None  # the new set, when it differs
        if "headers" in changes:
            before = custom_headers.unsealed(self._sealer, current)
            merged = custom_headers.merge(before, changes["headers"], self._limits)
            headers = merged if list(merged.items()) != list(before.items()) else None
        if "events" in changes:
            updated = replace(
                updated, events=tuple(filters.normalize(changes["events"], max_filters=self._limits.max_filters))
            )
        if "description" in changes:
            updated = replace(updated, description=self._check_description(changes["description"]))
        if "allow_private_network" in changes:
            updated = replace(updated, allow_private_network=bool(changes["allow_private_network"]))
        if "url" in changes:
            updated = replace(updated, url=changes["url"])
        if "url" in changes or "allow_private_network" in changes:
            self._check_url(updated.url, updated.allow_private_network)
        if "enabled" in changes:
            enabled = bool(changes["enabled"])
            updated = replace(updated, enabled=enabled, disabled_reason=None if enabled else DISABLED_BY_API)
        changed = sorted(
            [
                name
                for name in ("url", "events", "description", "allow_private_network", "enabled")
                if getattr(updated, name) != getattr(current, name)
            ]
            + (["headers"] if headers is not None else [])
        )
        if not changed and recover_since is None:
            return current, None
        saved = current
        if changed:
            if headers is not None:
                updated = custom_headers.sealed(self._sealer, updated, headers)
            updated = replace(updated, updated_at=later_than(current.updated_at))
            saved = self._endpoints.update(current, updated)
            if {"events", "enabled"} & set(changed):
                self._audit.subscriptions.settle(tenant_id)
        recovery = None
        if recover_since is not None:
            recovery = self._recoveries().request(
                tenant_id, actor, endpoint_id, since=recover_since, status="failed", missed=True
            )
        if changed:
            updated_event = EventInput(
                "webhook.updated",
                subject=f"webhook/{endpoint_id}",
                actor=actor,
                data={"webhook_id": endpoint_id, "changed": changed, "enabled": saved.enabled},
            )
            events = switched(current, saved, actor, recovery_id=recovery.id if recovery else None)
            self._audit.append(tenant_id, [updated_event, *events])
        return saved, recovery

    def delete(self, tenant_id: str, actor: str, endpoint_id: str) -> None:
        current = self._endpoint(tenant_id, endpoint_id)
        self._endpoints.delete(current)
        self._audit.subscriptions.settle(tenant_id)
        self._record(tenant_id, actor, "webhook.deleted", endpoint_id, {"webhook_id": endpoint_id})

    def rotate_secret(
        self, tenant_id: str, actor: str, endpoint_id: str, *, overlap_seconds: int | None = None
    ) -> tuple[Endpoint, str]:
        """A new secret; the previous one keeps signing (alongside) until the overlap ends."""
        overlap = self._overlap if overlap_seconds is None else overlap_seconds
        bound = self._limits.max_rotation_overlap
        if not 0 <= overlap <= bound:
            raise InvalidInput(f"overlap_seconds must be within 0..{bound}", field="overlap_seconds")
        current = self._endpoint(tenant_id, endpoint_id)
        secret = signing.generate_secret()
        expires = int(time.time()) + overlap
        updated = replace(
            current,
            sealed_secret=self._sealer.seal(secret, current.secret_context),
            previous_sealed_secret=current.sealed_secret if overlap else None,
            previous_secret_expires_at=expires if overlap else None,
            updated_at=later_than(current.updated_at),
        )
        # The headers move to the new secret's data key: deliveries keep needing one Decrypt for both.
        updated = custom_headers.sealed(self._sealer, updated, custom_headers.unsealed(self._sealer, current))
        saved = self._endpoints.update(current, updated)
        self._record(
            tenant_id,
            actor,
            "webhook.secret_rotated",
            endpoint_id,
            {"webhook_id": endpoint_id, "previous_secret_expires_at": now_iso(expires)},
        )
        return saved, secret

    def test(self, tenant_id: str, actor: str, endpoint_id: str, *, message: str = "") -> TestResult:
        """Send a `test.ping` now through the real signed, guarded path; record it in the history."""
        endpoint = self._endpoint(tenant_id, endpoint_id)
        data = {"webhook_id": endpoint_id, "message": message or "Test delivery from Meshanics"}
        (record,) = self._audit.append(
            tenant_id, [EventInput("test.ping", subject=f"webhook/{endpoint_id}", actor=actor, data=data)]
        )
        job = DeliveryJob.of(record, endpoint_id)
        a = self._deliverer().test(job, endpoint)
        return TestResult(job.delivery_id, a.outcome, a.status_code, a.duration_ms, a.error)

    # -- deliveries ---------------------------------------------------------------------------
    def deliveries(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        limit: int,
        cursor: str | None,
        status: Status | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status_code: int | None = None,
    ) -> Page:
        """The endpoint's deliveries matching every filter given, newest first: `since` (inclusive)
        and `until` (exclusive) bound when they were created, `status_code` is the last answer."""
        self._endpoint(tenant_id, endpoint_id)  # 404 for an unknown (or another tenant's) endpoint
        if event_type == filters.ALL:
            event_type = None
        elif event_type is not None and event_type not in catalog.CATALOG:
            # Exact types include directed ones (test.ping); wildcards are checked like filters.
            try:
                filters.normalize([event_type], max_filters=1)
            except InvalidInput as refused:
                raise InvalidInput(refused.message, code=refused.code, field="event_type") from None
        if status_code is not None and not 100 <= status_code <= 599:
            raise InvalidInput("status_code must be an HTTP status code, 100-599", field="status_code")
        window = {name: _stored_time(name, moment) for name, moment in (("since", since), ("until", until))}
        if window["since"] and window["until"] and window["since"] >= window["until"]:
            raise InvalidInput(f"since ({window['since']}) must be before until ({window['until']})", field="since")
        search = DeliveryFilter(status, event_type, window["since"], window["until"], status_code)
        return self._history.page(tenant_id, endpoint_id, limit=limit, cursor=cursor, search=search)

    def delivery(self, tenant_id: str, delivery_id: str) -> tuple[Delivery, str]:
        """A delivery and the exact envelope it sends."""
        return self._history.delivery(tenant_id, delivery_id)

    def replay(self, tenant_id: str, actor: str, delivery_id: str) -> Delivery:
        """Send a delivered or failed delivery again (same bytes, same idempotency key), through the queue."""
        endpoint_id, sequence = parse_delivery_id(delivery_id)
        written = self._deliveries.find(tenant_id, endpoint_id, sequence)
        if written is None:
            self._history.addressed_record(tenant_id, endpoint_id, sequence)  # NotFound if it is not one
            raise Conflict("this delivery is pending (waiting for its first attempt); replay it once it is settled")
        replay(self._deliveries, self._audit.table, self._queue(), written)
        return self._deliveries.get(tenant_id, delivery_id)

    def replay_failed(
        self, tenant_id: str, actor: str, endpoint_id: str, *, since: str | None, limit: int
    ) -> list[Delivery]:
        """Replay the endpoint's failed deliveries created at or after `since` (newest first)."""
        self._endpoint(tenant_id, endpoint_id)
        failed = self._deliveries.page(
            tenant_id, endpoint_id, limit=limit, before=None, search=DeliveryFilter(status="failed")
        ).items
        return [self.replay(tenant_id, actor, d.id) for d in failed if since is None or d.created_at >= since]

    # -- audit --------------------------------------------------------------------------------
    def _record(self, tenant_id: str, actor: str, event_type: str, endpoint_id: str, data: dict[str, Any]) -> None:
        self._audit.append(
            tenant_id, [EventInput(event_type, subject=f"webhook/{endpoint_id}", actor=actor, data=data)]
        )


def _stored_time(name: str, moment: datetime | None) -> str | None:
    """A search bound in the form the history stores times in (they compare exactly)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} must carry a time zone (e.g. Z)", field=name)
    try:
        return ceil_ms(moment)
    except OverflowError:
        raise InvalidInput(f"{name} is out of range", field=name) from None

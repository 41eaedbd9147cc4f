"""Operational events: an endpoint disabled or enabled, a delivery that failed for good.

They are written to the audit log like any event (platform-only, in the `webhooks` family) and
reach the tenant's other subscribed endpoints; the audit log never addresses one to the endpoint it
is about (catalog `operational`), and a delivery of one never raises `delivery_exhausted`, so a
failing receiver cannot feed a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from meshanics import catalog
from meshanics.audit import MAX_EVENTS, AuditLog
from meshanics.clock import later_than
from meshanics.errors import Conflict, NotFound
from meshanics.model import Attempt, DeliveryJob, Endpoint, EventInput
from meshanics.store.endpoints import EndpointStore

log = logging.getLogger("meshanics.operational")

PLATFORM_ACTOR = "meshanics"
DisabledReason = Literal["api", "failing", "gone"]
OPERATIONAL = catalog.operational_types()


def switched(before: Endpoint, after: Endpoint, actor: str, *, recovery_id: str | None = None) -> list[EventInput]:
    """The operational event of a tenant's change of state (none if the state did not change)."""
    if before.enabled == after.enabled:
        return []
    subject = f"webhook/{after.id}"
    if after.enabled:
        data: dict[str, Any] = {"webhook_id": after.id, "recovery_id": recovery_id}
        return [EventInput("webhook.enabled", subject=subject, actor=actor, data=data)]
    data = {"webhook_id": after.id, "reason": after.disabled_reason}
    return [EventInput("webhook.disabled", subject=subject, actor=actor, data=data)]


class OperationalEvents:
    """What the platform does on its own to an endpoint, and tells the tenant about."""

    def __init__(self, *, endpoints: EndpointStore, audit: AuditLog) -> None:
        self._endpoints = endpoints
        self._audit = audit

    def disable(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        reason: DisabledReason,
        failing_since: str | None = None,
        last_status_code: int | None = None,
    ) -> Endpoint | None:
        """Disable an enabled endpoint and write `webhook.disabled`; None if it is gone or already
        disabled. No waiting for producers' subscription caches (see Subscriptions.settle): nobody
        waits on this change, and the deliverer refuses a disabled endpoint's jobs anyway."""
        for _ in range(3):
            try:
                current = self._endpoints.get(tenant_id, endpoint_id)
            except NotFound:
                return None
            if not current.enabled:
                return None
            updated = replace(current, enabled=False, disabled_reason=reason, updated_at=later_than(current.updated_at))
            try:
                self._endpoints.update(current, updated)
            except Conflict:
                continue  # changed meanwhile (the tenant, another instance): look again
            data: dict[str, Any] = {
                "webhook_id": endpoint_id,
                "reason": reason,
                "failing_since": failing_since,
                "last_status_code": last_status_code,
            }
            self._write(tenant_id, [EventInput("webhook.disabled", f"webhook/{endpoint_id}", PLATFORM_ACTOR, data)])
            log.warning("disabled %s of %s: %s", endpoint_id, tenant_id, reason)
            return updated
        raise Conflict(f"webhook {endpoint_id} kept changing; not disabled now")

    def exhausted(self, failed: Sequence[tuple[DeliveryJob, Attempt]]) -> None:
        """`webhook.delivery_exhausted` for deliveries that failed after their last attempt (never
        for an operational event's own delivery)."""
        by_tenant: dict[str, list[EventInput]] = {}
        for job, attempt in failed:
            if job.event_type in OPERATIONAL:
                continue
            data = {
                "webhook_id": job.endpoint_id,
                "delivery_id": job.delivery_id,
                "sequence": job.sequence,
                "event_type": job.event_type,
                "attempts": attempt.number,
                "last_status_code": attempt.status_code,
            }
            event = EventInput("webhook.delivery_exhausted", f"webhook/{job.endpoint_id}", PLATFORM_ACTOR, data)
            by_tenant.setdefault(job.tenant_id, []).append(event)
        for tenant_id, events in by_tenant.items():
            for start in range(0, len(events), MAX_EVENTS):
                self._write(tenant_id, events[start : start + MAX_EVENTS])

    def _write(self, tenant_id: str, events: list[EventInput]) -> None:
        self._audit.append(tenant_id, events)

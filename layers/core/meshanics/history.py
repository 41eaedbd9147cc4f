"""An endpoint's delivery history: what was attempted, and what is still waiting for its first try.

A delivery is written down at its first attempt (one write for one that succeeds at once). Until
then the audit record, which names the endpoints it was matched to, is what knows of it: the history
merges the endpoint's delivery items with the audit records addressed to it that have no item yet,
newest first, by sequence. The look into the audit log is bounded per page (`SCAN_BUDGET` records
per shard); a page ends where every shard was looked at, and the cursor carries on from there.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from meshanics import parallel, untrusted
from meshanics.errors import InvalidInput, NotFound
from meshanics.model import AuditRecord, Delivery, DeliveryFilter, delivery_id, parse_delivery_id
from meshanics.store.audit import AuditTable
from meshanics.store.deliveries import READ_BUDGET, DeliveryStore

SCAN_BUDGET = 400


def encode_cursor(endpoint_id: str, before: int, after: int, search: DeliveryFilter) -> str:
    """A cursor of one endpoint's history searched with `search` (between sequences `after` and
    `before`): any other listing refuses it."""
    values = {"webhook": endpoint_id, "before": before, "after": after, "filters": search.digest()}
    raw = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, endpoint_id: str, search: DeliveryFilter) -> tuple[int, int]:
    """(before, after) of a cursor handed out by this listing with these filters."""
    invalid = InvalidInput("cursor is not valid", code="invalid_cursor", field="cursor")
    try:
        values = untrusted.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), max_depth=1)
    except (ValueError, binascii.Error):
        raise invalid from None
    if (
        not isinstance(values, dict)
        or set(values) != {"webhook", "before", "after", "filters"}
        or values["webhook"] != endpoint_id
    ):
        raise invalid
    before, after = values["before"], values["after"]
    for bound, least in ((before, 1), (after, 0)):
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < least:
            raise invalid
    if values["filters"] != search.digest():
        raise InvalidInput(
            "cursor belongs to a search with other filters: send it with the status, event_type, since, "
            "until and status_code of the first page, or start again without a cursor",
            code="cursor_mismatch",
            field="cursor",
        )
    return before, after


@dataclass(frozen=True)
class Page:
    items: list[Delivery]
    next_cursor: str | None


class DeliveryHistory:
    def __init__(self, deliveries: DeliveryStore, audit: AuditTable) -> None:
        self._deliveries = deliveries
        self._audit = audit

    def page(self, tenant_id: str, endpoint_id: str, *, limit: int, cursor: str | None, search: DeliveryFilter) -> Page:
        before: int | None
        if cursor:
            before, after = decode_cursor(cursor, endpoint_id, search)
        else:
            # A time window, as sequences (later pages carry them in the cursor).
            after, before = self._deliveries.span(tenant_id, endpoint_id, search.since, search.until)
        attempted = self._deliveries.page(
            tenant_id, endpoint_id, limit=limit, before=before, after=after, search=search, budget=READ_BUDGET
        )

        def cursor_at(sequence: int) -> str:
            return encode_cursor(endpoint_id, sequence, after, search)

        if search.attempted_only:
            rest = attempted.rest
            return Page(attempted.items, cursor_at(rest) if rest is not None else None)
        # Waiting ones further down belong to later pages when this read of attempted ones stopped
        # short (a full page, or its budget spent).
        low = attempted.rest or after

        def addressed(partition: str) -> tuple[list[AuditRecord], int | None]:
            return self._audit.addressed_to(
                partition, endpoint_id, below=before, above=low, search=search, budget=SCAN_BUDGET
            )

        found = parallel.each(addressed, self._audit.partitions(tenant_id))
        # Every shard was looked at down to `complete`, and the attempted ones down to `low` (an item
        # there is attempted, so not waiting); below it, a later page looks again.
        complete = max([low, *(stopped for _, stopped in found if stopped is not None)])
        seen = {d.sequence for d in attempted.items}
        candidates = [r for records, _ in found for r in records if r.sequence >= complete and r.sequence not in seen]
        written = self._deliveries.attempted(tenant_id, endpoint_id, [r.sequence for r in candidates])
        waiting = [Delivery.waiting(r, endpoint_id) for r in candidates if r.sequence not in written]
        merged = sorted([d for d in attempted.items if d.sequence >= complete] + waiting, key=lambda d: -d.sequence)
        page = merged[:limit]
        cut = complete > low or any(d.sequence < complete for d in attempted.items)
        if not (attempted.rest is not None or cut or len(merged) > limit):
            return Page(page, None)
        # Carry on below the last item shown, or, when everything found was shown, below what was
        # looked at (a selective search does not read the same stretch again).
        return Page(page, cursor_at(page[-1].sequence if len(merged) > limit else complete))

    def delivery(self, tenant_id: str, wanted: str) -> tuple[Delivery, str]:
        """One delivery and the envelope it sends; a waiting one is known from its audit record."""
        endpoint_id, sequence = parse_delivery_id(wanted)
        written = self._deliveries.find(tenant_id, endpoint_id, sequence)
        if written is not None:
            record = self._audit.get(written.partition, sequence)
            return written, record.body if record else "{}"
        record = self.addressed_record(tenant_id, endpoint_id, sequence)
        return Delivery.waiting(record, endpoint_id), record.body

    def addressed_record(self, tenant_id: str, endpoint_id: str, sequence: int) -> AuditRecord:
        """The audit record of `sequence` if it was addressed to the endpoint (its shard is not known
        from the delivery id: every shard of the tenant is asked, side by side)."""
        partitions = self._audit.partitions(tenant_id)
        for record in parallel.each(lambda p: self._audit.get(p, sequence), partitions):
            if record is not None and endpoint_id in record.endpoints:
                return record
        raise NotFound(f"delivery {delivery_id(endpoint_id, sequence)} not found")

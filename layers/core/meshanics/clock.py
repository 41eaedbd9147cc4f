"""Timestamps as the platform writes them: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now_iso(epoch: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds (fixed width, so the strings sort in time order)."""
    moment = time.time() if epoch is None else epoch
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def later_than(previous: str) -> str:
    """A timestamp strictly after `previous` (an item's updated_at guards concurrent updates)."""
    return now_iso(max(time.time(), parse_iso(previous) + 0.001))


def parse_moment(text: str) -> datetime:
    """A stored RFC 3339 timestamp (UTC, "Z") as an aware datetime, for exact comparisons."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ceil_ms(moment: datetime) -> str:
    """An aware moment in the stored form (RFC 3339 UTC, milliseconds), rounded up to the next
    millisecond: stored times have milliseconds, so `t >= moment` holds exactly when
    `t >= ceil_ms(moment)`, and the same for `<`. OverflowError beyond year 9999."""
    moment = moment.astimezone(UTC)
    if moment.microsecond % 1000:
        moment += timedelta(microseconds=1000 - moment.microsecond % 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

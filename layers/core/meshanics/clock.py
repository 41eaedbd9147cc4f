"""Timestamps as the platform writes them: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

import time
from datetime import datetime


def now_iso(epoch: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds (fixed width, so the strings sort in time order)."""
    moment = time.time() if epoch is None else epoch
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def later_than(previous: str) -> str:
    """A timestamp strictly after `previous` (an item's updated_at guards concurrent updates)."""
    return now_iso(max(time.time(), parse_iso(previous) + 0.001))

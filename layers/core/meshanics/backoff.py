"""Retry timing: the attempt schedule, jitter, and the receiver's Retry-After.

A failed delivery is retried by hiding its SQS message for the next delay (visibility timeout), so
every delay must fit SQS's 12-hour visibility limit.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from datetime import UTC, datetime

from meshanics.errors import ConfigurationError

SQS_MAX_VISIBILITY = 43_200
# Delay before attempt 1..8: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 h in all).
DEFAULT_SCHEDULE: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2


def parse_schedule(text: str) -> tuple[int, ...]:
    """`"0,5,300,..."` -> delays in seconds before each attempt; the length is the attempt bound."""
    try:
        delays = tuple(int(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigurationError(f"retry schedule must be comma-separated seconds, got {text!r}") from None
    if not delays or delays[0] != 0:
        raise ConfigurationError("retry schedule must start with 0 (the first attempt is immediate)")
    if any(d < 0 or d > SQS_MAX_VISIBILITY for d in delays):
        raise ConfigurationError(f"every retry delay must be within 0..{SQS_MAX_VISIBILITY} seconds")
    return delays


def next_delay(
    schedule: Sequence[int],
    failed_attempt: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> int | None:
    """Seconds to wait after attempt `failed_attempt` (1-based) failed; None when it was the last.

    The scheduled delay gets +/-20 % jitter so retries of many deliveries spread out; a receiver's
    Retry-After is honoured as a lower bound, capped at the SQS visibility limit.
    """
    if failed_attempt >= len(schedule):
        return None
    base = schedule[failed_attempt]
    jitter = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    delay = base * jitter
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(1, min(SQS_MAX_VISIBILITY, round(delay)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

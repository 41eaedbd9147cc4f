from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from meshanics import backoff, filters
from meshanics.errors import ConfigurationError, InvalidInput


@pytest.mark.parametrize(
    ("subscription", "event_type", "expected"),
    [
        (["rollout.*"], "rollout.created", True),
        (["rollout.*"], "rollouts.created", False),
        (["rollout.*"], "rollout", False),
        (["rollout.created"], "rollout.created", True),
        (["rollout.created"], "rollout.completed", False),
        ([], "device.enrolled", True),
        (["*"], "device.enrolled", True),
        (["device.*", "rollout.created"], "rollout.created", True),
        (["device.*", "rollout.created"], "artifact.published", False),
    ],
)
def test_matching(subscription: list[str], event_type: str, expected: bool) -> None:
    assert filters.matches(subscription, event_type) is expected
    keys = set(filters.index_keys(subscription))
    assert bool(keys & set(filters.candidate_keys(event_type))) is expected


def test_candidate_keys_walk_up_the_prefixes() -> None:
    assert filters.candidate_keys("a.b.c") == ["a.b.c", "a.b.*", "a.*", "*"]
    assert filters.candidate_keys("rollout.created") == ["rollout.created", "rollout.*", "*"]


@pytest.mark.parametrize("bad", ["rollouts.*", "rollout*", "*.created", "roll*.created", "nope.x", "", "test.ping"])
def test_invalid_filters_are_refused_with_the_valid_list(bad: str) -> None:
    with pytest.raises(InvalidInput) as error:
        filters.normalize([bad], max_filters=10)
    assert error.value.field == "events"
    if bad:
        assert "rollout.*" in error.value.message


def test_normalize_dedupes_sorts_and_collapses_all() -> None:
    assert filters.normalize(["rollout.created", "device.*", "rollout.created"], max_filters=5) == [
        "device.*",
        "rollout.created",
    ]
    assert filters.normalize(["rollout.*", "*"], max_filters=5) == ["*"]
    with pytest.raises(InvalidInput, match="at most 2"):
        filters.normalize(["rollout.*", "device.*", "artifact.*"], max_filters=2)


def test_default_schedule_is_8_attempts_over_about_a_day_within_sqs_limits() -> None:
    schedule = backoff.DEFAULT_SCHEDULE
    assert len(schedule) == 8 and schedule[0] == 0
    assert 20 * 3600 < sum(schedule) < 36 * 3600
    assert max(schedule) * (1 + backoff.JITTER) <= backoff.SQS_MAX_VISIBILITY  # jitter stays within 12 h
    rng = random.Random(1)
    for attempt in range(1, len(schedule)):
        delay = backoff.next_delay(schedule, attempt, rng=rng)
        assert delay is not None and 1 <= delay <= backoff.SQS_MAX_VISIBILITY
        assert delay >= schedule[attempt] * (1 - backoff.JITTER) - 1
    assert backoff.next_delay(schedule, len(schedule)) is None


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = {backoff.next_delay(backoff.DEFAULT_SCHEDULE, 2, rng=rng) for _ in range(50)}
    assert len(delays) > 10
    assert all(240 <= d <= 360 for d in delays if d is not None)


def test_retry_after_is_a_lower_bound_capped_at_the_visibility_limit() -> None:
    assert backoff.next_delay((0, 5, 10), 1, retry_after=120) == 120
    assert backoff.next_delay((0, 5, 10), 1, retry_after=10**9) == backoff.SQS_MAX_VISIBILITY
    assert backoff.next_delay((0, 500, 10), 1, retry_after=1, rng=random.Random(3)) >= 400  # type: ignore[operator]


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert backoff.parse_retry_after("120") == 120.0
    assert backoff.parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert backoff.parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    assert backoff.parse_retry_after("soon") is None
    assert backoff.parse_retry_after(None) is None


@pytest.mark.parametrize("text", ["5,0", "0,abc", "0,50000", ""])
def test_bad_schedules_fail_loudly(text: str) -> None:
    with pytest.raises(ConfigurationError):
        backoff.parse_schedule(text)

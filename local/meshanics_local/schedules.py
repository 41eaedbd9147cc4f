"""Scheduled rules: invoke the target function with an EventBridge Scheduled Event on its rate.

`rate(N minute|minutes|hour|hours|day|days)` is supported; `scale` divides the period (a demo or
test can run a 15-minute sweep every few seconds). cron() expressions are not played locally.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from meshanics_local.events import scheduled_event
from meshanics_local.functions import Schedule
from meshanics_local.workers import Invocation, Loop

log = logging.getLogger("meshanics_local.schedules")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def period_seconds(expression: str) -> float | None:
    """The period of a rate() expression, or None for expressions not played locally (cron)."""
    match = _RATE.fullmatch(expression.strip())
    if not match:
        return None
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    if count < 1 or (count == 1) != (match.group(2) == unit):
        raise ValueError(f"{expression!r}: use '1 {unit}' or 'N {unit}s'")
    return float(count * _UNIT_SECONDS[unit])


class ScheduleRunner(Loop):
    def __init__(
        self, schedule: Schedule, invoke: Callable[[Any], Invocation], *, region: str, scale: float = 1.0
    ) -> None:
        self.schedule = schedule
        self._invoke = invoke
        self._region = region
        period = period_seconds(schedule.expression)
        self.period = None if period is None else period / max(scale, 1e-6)
        super().__init__(f"schedule:{schedule.logical_id}")
        self._next_run = 0.0
        self.invocations = 0

    @property
    def active(self) -> bool:
        return self.schedule.enabled and self.period is not None

    def start(self) -> None:
        if not self.schedule.enabled:
            return
        if self.period is None:
            log.warning("%s: %s is not played locally", self.schedule.logical_id, self.schedule.expression)
            return
        self._next_run = time.monotonic() + self.period
        super().start()

    def event(self) -> Any:
        if self.schedule.input is not None:
            constant = self.schedule.input
            return json.loads(constant) if isinstance(constant, str) else constant
        return scheduled_event(rule_arn=self.schedule.rule_arn, region=self._region)

    def step(self) -> None:
        assert self.period is not None
        if self._stop.wait(max(0.0, self._next_run - time.monotonic())):
            return
        self._next_run += self.period
        invocation = self._invoke(self.event())
        self.invocations += 1
        if not invocation.ok:
            log.warning("%s: %s failed: %s", self.schedule.logical_id, self.schedule.function, invocation.error_message)
        self._next_run = max(self._next_run, time.monotonic())

"""Independent AWS calls of one invocation, made side by side.

A stream batch becomes dozens of calls (lookups, batch writes, batch sends) that do not depend on
one another; made one after the other, their latencies (and any SDK retry back-off) add up on the
shard's critical path. One small pool per process, used at one level only (a task never waits on
another task of the pool, so it cannot deadlock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

WORKERS = 8
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="aws-calls")
        return _pool


def each(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`function` over `items` concurrently, results in order; the first exception is raised."""
    work = list(items)
    if len(work) <= 1:
        return [function(item) for item in work]
    return list(_executor().map(function, work))

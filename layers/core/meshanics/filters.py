"""Subscription filters: exact types or trailing wildcards, and the index keys that find them.

An endpoint subscribes with a list of filters: `rollout.created` (exact), `rollout.*` (every type
under the `rollout.` prefix) or `*`; an empty list means every event. Fan-out never scans a
tenant's endpoints: each filter is stored as an index key, and an event of type `a.b` looks up only
the keys `a.b`, `a.*` and `*`.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshanics import catalog
from meshanics.errors import InvalidInput

ALL = "*"


def candidate_keys(event_type: str) -> list[str]:
    """The index keys whose endpoints may want `event_type`: itself, each prefix wildcard, `*`."""
    parts = event_type.split(".")
    keys = [event_type]
    keys.extend(".".join(parts[:i]) + ".*" for i in range(len(parts) - 1, 0, -1))
    keys.append(ALL)
    return keys


def matches(filters: Iterable[str], event_type: str) -> bool:
    wanted = set(candidate_keys(event_type))
    filters = list(filters)
    return not filters or any(f in wanted for f in filters)


def _valid_prefixes() -> set[str]:
    prefixes: set[str] = set()
    for name in catalog.subscribable_types():
        parts = name.split(".")
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return prefixes


def normalize(filters: Iterable[str], *, max_filters: int) -> list[str]:
    """Validate filters against the catalog; return them de-duplicated and sorted.

    A filter is an exact subscribable type, `<prefix>.*` for a prefix some type has, or `*`.
    """
    given = list(filters)
    if len(given) > max_filters:
        raise InvalidInput(f"at most {max_filters} event filters per endpoint", field="events")
    types = set(catalog.subscribable_types())
    prefixes = _valid_prefixes()
    cleaned: set[str] = set()
    for value in given:
        if not isinstance(value, str) or not value:
            raise InvalidInput("event filters must be non-empty strings", field="events")
        if value == ALL or value in types:
            cleaned.add(value)
            continue
        if value.endswith(".*") and value[:-2] in prefixes:
            cleaned.add(value)
            continue
        hint = "wildcards are allowed only at the end, after a dot (e.g. rollout.*)" if "*" in value else ""
        valid = sorted(types) + sorted(f"{p}.*" for p in prefixes) + [ALL]
        raise InvalidInput(
            f"unknown event filter {value!r}{'; ' + hint if hint else ''}; valid filters: {', '.join(valid)}",
            code="invalid_event_filter",
            field="events",
        )
    if ALL in cleaned:
        return [ALL]
    return sorted(cleaned)


def index_keys(filters: Iterable[str]) -> list[str]:
    """The index keys an endpoint is stored under (an empty filter list means `*`)."""
    keys = sorted(set(filters))
    return keys or [ALL]

"""Event filter patterns, as Lambda event source mappings (and EventBridge) evaluate them.

A pattern is a JSON object whose leaves are arrays of matchers; an event matches when every key of
the pattern matches. Supported matchers: exact values (strings, numbers, booleans, null), and the
objects `prefix`, `suffix`, `equals-ignore-case`, `anything-but` (a value, a list, or `prefix` /
`suffix`), `exists` and `numeric` (comparison pairs such as `[">", 0, "<=", 5]`). When the event
value is an array, the key matches if any element does. A mapping's `FilterCriteria` holds up to
five patterns; a record is passed on when any of them matches.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_MISSING = object()
_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class PatternError(ValueError):
    """The filter pattern is not valid."""


def parse(pattern: str | Mapping[str, Any]) -> dict[str, Any]:
    """A pattern from its JSON text (as in FilterCriteria) or an already parsed object, checked."""
    value = json.loads(pattern) if isinstance(pattern, str) else dict(pattern)
    if not isinstance(value, dict):
        raise PatternError("a filter pattern must be a JSON object")
    _check(value)
    return value


def _check(pattern: Mapping[str, Any]) -> None:
    for key, spec in pattern.items():
        if isinstance(spec, Mapping):
            _check(spec)
        elif isinstance(spec, list):
            for matcher in spec:
                if isinstance(matcher, Mapping):
                    _check_operator(matcher)
                elif isinstance(matcher, list):
                    raise PatternError(f"{key}: nested arrays are not allowed in a pattern")
        else:
            raise PatternError(f"{key}: pattern values must be objects or arrays, got {spec!r}")


def _check_operator(matcher: Mapping[str, Any]) -> None:
    if len(matcher) != 1:
        raise PatternError(f"a matcher object has exactly one operator, got {dict(matcher)!r}")
    name, argument = next(iter(matcher.items()))
    if name in ("prefix", "suffix", "equals-ignore-case"):
        if not isinstance(argument, str):
            raise PatternError(f"{name} takes a string")
    elif name == "exists":
        if not isinstance(argument, bool):
            raise PatternError("exists takes true or false")
    elif name == "numeric":
        _numeric_pairs(argument)
    elif name == "anything-but":
        if isinstance(argument, Mapping):
            _check_operator(argument)
    else:
        raise PatternError(f"unsupported filter operator {name!r}")


def _numeric_pairs(argument: Any) -> list[tuple[str, float]]:
    if not isinstance(argument, list) or not argument or len(argument) % 2:
        raise PatternError("numeric takes pairs of operator and number, e.g. ['>', 0, '<=', 5]")
    pairs: list[tuple[str, float]] = []
    for op, number in zip(argument[::2], argument[1::2], strict=True):
        if op not in _NUMERIC_OPS or isinstance(number, bool) or not isinstance(number, int | float):
            raise PatternError(f"numeric: invalid comparison {op!r} {number!r}")
        pairs.append((op, float(number)))
    return pairs


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """True if `event` satisfies every key of `pattern`."""
    for key, spec in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(spec, Mapping):
            if not isinstance(value, Mapping) or not matches(spec, value):
                return False
        elif not _matches_any(spec, value):
            return False
    return True


def matches_any(patterns: Sequence[Mapping[str, Any]], event: Mapping[str, Any]) -> bool:
    """True if there are no patterns or any one matches (FilterCriteria semantics)."""
    return not patterns or any(matches(p, event) for p in patterns)


def _matches_any(matchers: Iterable[Any], value: Any) -> bool:
    candidates = value if isinstance(value, list) else [value]
    for matcher in matchers:
        if isinstance(matcher, Mapping) and "exists" in matcher:
            present = value is not _MISSING
            if present == matcher["exists"]:
                return True
            continue
        if value is _MISSING:
            continue
        if any(_matches_one(matcher, candidate) for candidate in candidates):
            return True
    return False


def _matches_one(matcher: Any, value: Any) -> bool:
    if not isinstance(matcher, Mapping):
        return _equal(matcher, value)
    name, argument = next(iter(matcher.items()))
    if name == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if name == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if name == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == str(argument).casefold()
    if name == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return all(_NUMERIC_OPS[op](float(value), bound) for op, bound in _numeric_pairs(argument))
    if name == "anything-but":
        if isinstance(argument, Mapping):
            return not _matches_one(argument, value)
        excluded = argument if isinstance(argument, list) else [argument]
        return not any(_equal(e, value) for e in excluded)
    return False


def _equal(expected: Any, value: Any) -> bool:
    if expected is None or value is None:
        return expected is None and value is None
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return float(expected) == float(value)
    return type(expected) is type(value) and bool(expected == value)

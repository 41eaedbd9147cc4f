"""Event filter patterns (FilterCriteria), as Lambda evaluates them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshanics_local import filters
from tests.local.conftest import EVENTS

INSERT = json.loads((EVENTS / "fanout-stream-insert.json").read_text())["Records"][0]


def match(pattern: dict[str, Any] | str, event: dict[str, Any]) -> bool:
    return filters.matches(filters.parse(pattern), event)


def test_the_templates_insert_only_pattern() -> None:
    pattern = '{"eventName": ["INSERT"]}'
    assert match(pattern, INSERT)
    assert not match(pattern, INSERT | {"eventName": "MODIFY"})
    assert not match(pattern, INSERT | {"eventName": "REMOVE"})
    assert not match(pattern, {"dynamodb": {}})


def test_nested_objects_match_dynamodb_json() -> None:
    assert match({"dynamodb": {"NewImage": {"type": {"S": ["rollout.state_changed"]}}}}, INSERT)
    assert not match({"dynamodb": {"NewImage": {"type": {"S": ["device.enrolled"]}}}}, INSERT)
    assert not match({"dynamodb": {"OldImage": {"type": {"S": ["rollout.state_changed"]}}}}, INSERT)


def test_any_of_several_values_and_array_event_values() -> None:
    assert match({"a": ["x", "y"]}, {"a": "y"})
    assert match({"tags": ["blue"]}, {"tags": ["red", "blue"]})
    assert not match({"tags": ["green"]}, {"tags": ["red", "blue"]})


def test_exact_values_keep_their_types() -> None:
    assert match({"n": [5]}, {"n": 5.0})
    assert not match({"n": [5]}, {"n": "5"})
    assert match({"b": [True]}, {"b": True})
    assert not match({"b": [True]}, {"b": 1})
    assert match({"v": [None]}, {"v": None})
    assert not match({"v": [None]}, {})


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        ({"prefix": "rollout."}, "rollout.created", True),
        ({"prefix": "rollout."}, "device.enrolled", False),
        ({"suffix": ".created"}, "rollout.created", True),
        ({"equals-ignore-case": "insert"}, "INSERT", True),
        ({"anything-but": "REMOVE"}, "INSERT", True),
        ({"anything-but": ["INSERT", "MODIFY"]}, "INSERT", False),
        ({"anything-but": {"prefix": "test."}}, "rollout.created", True),
        ({"anything-but": {"prefix": "test."}}, "test.ping", False),
        ({"numeric": [">", 0, "<=", 5]}, 5, True),
        ({"numeric": [">", 0, "<=", 5]}, 6, False),
        ({"numeric": ["=", 3]}, "3", False),
    ],
)
def test_operators(matcher: dict[str, Any], value: Any, expected: bool) -> None:
    assert match({"k": [matcher]}, {"k": value}) is expected


def test_exists() -> None:
    assert match({"k": [{"exists": True}]}, {"k": "anything"})
    assert not match({"k": [{"exists": True}]}, {})
    assert match({"k": [{"exists": False}]}, {})
    assert not match({"k": [{"exists": False}]}, {"k": 1})


def test_filter_criteria_pass_a_record_if_any_pattern_matches() -> None:
    patterns = [filters.parse({"eventName": ["MODIFY"]}), filters.parse({"eventName": ["INSERT"]})]
    assert filters.matches_any(patterns, INSERT)
    assert filters.matches_any([], INSERT)
    assert not filters.matches_any(patterns[:1], INSERT)


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",
        {"k": "INSERT"},
        {"k": [{"prefix": 1}]},
        {"k": [{"numeric": [">"]}]},
        {"k": [{"regex": ".*"}]},
        {"k": [{"prefix": "a", "suffix": "b"}]},
        {"k": [["nested"]]},
    ],
)
def test_invalid_patterns_are_refused(bad: Any) -> None:
    with pytest.raises(filters.PatternError):
        filters.parse(bad)

"""Event filter patterns (FilterCriteria), matched by moto's EventBridge pattern matcher as Lambda does.

Checked here: that moto's matcher has Lambda's rules for the template's pattern and the usual
matchers, and the one piece the local platform adds (patterns with an operator Lambda does not know
are refused: moto would let such a matcher match everything).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshanics_local.functions import EventSourceMapping, filter_pattern
from meshanics_local.template import TemplateError
from tests.local.conftest import EVENTS

INSERT = json.loads((EVENTS / "fanout-stream-insert.json").read_text())["Records"][0]


def match(pattern: dict[str, Any] | str, event: dict[str, Any]) -> bool:
    return filter_pattern(pattern if isinstance(pattern, str) else json.dumps(pattern)).matches_event(event)


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


def test_exact_values() -> None:
    assert match({"n": [5]}, {"n": 5.0})
    assert not match({"n": [5]}, {"n": "5"})
    assert match({"b": [True]}, {"b": True})
    assert match({"v": [None]}, {"v": None})
    assert not match({"v": [None]}, {})
    # Not played faithfully (the template does not rely on it): moto compares with Python's ==, so a
    # pattern value true also matches the number 1, which Lambda does not.


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
    def mapping(*patterns: str) -> EventSourceMapping:
        return EventSourceMapping(
            "M", "F", "arn", "dynamodb", 100, 0, filter_patterns=tuple(map(filter_pattern, patterns))
        )

    assert mapping('{"eventName": ["MODIFY"]}', '{"eventName": ["INSERT"]}').passes(INSERT)
    assert mapping().passes(INSERT)
    assert not mapping('{"eventName": ["MODIFY"]}').passes(INSERT)


@pytest.mark.parametrize(
    "bad",
    ["[1, 2]", "{", {"k": "INSERT"}, {"k": []}, {"k": [{"regex": ".*"}]}, {"k": [{"prefix": "a", "suffix": "b"}]}],
)
def test_invalid_patterns_are_refused(bad: Any) -> None:
    with pytest.raises(TemplateError):
        filter_pattern(bad if isinstance(bad, str) else json.dumps(bad))

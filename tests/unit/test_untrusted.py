"""untrusted.loads: JSON from outside parses as json.loads does, or fails with Unparseable only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshanics import untrusted
from meshanics.untrusted import Unparseable

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(document=_json)
def test_ordinary_json_parses_as_json_loads_does(document: Any) -> None:
    text = json.dumps(document)
    assert untrusted.loads(text) == json.loads(text)
    assert untrusted.loads(text.encode()) == json.loads(text)


_hostile_pieces = st.sampled_from(["[", "]", "{", "}", '"a":', ",", "9" * 4400, '"\\ud800"', '"x"', "1", " "])


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(raw=st.binary(max_size=300) | st.text(max_size=300) | st.lists(_hostile_pieces, max_size=60).map("".join))
def test_anything_else_fails_with_unparseable_only(raw: bytes | str) -> None:
    try:
        untrusted.loads(raw)
    except Unparseable as error:
        assert error.kind in ("syntax", "depth", "number", "text")


@pytest.mark.parametrize(
    ("raw", "kind", "field"),
    [
        ("[" * 100_000, "depth", None),
        ("[" * 5000 + "]" * 5000, "depth", None),
        ('{"a":' * 65 + "1" + "}" * 65, "depth", None),
        ('{"a": [1, {"b": ' + "9" * 5000 + "}]}", "number", "a.1.b"),
        ("-" + "9" * 5000, "number", None),
        ('{"a": {"b": ["ok", "\\udfff"]}}', "text", "a.b.1"),
        ('{"a": {"\\ud800": 1}}', "text", "a"),
        ('"\\ude00\\ud83d"', "text", None),
        (b'{"a": "\xff"}', "syntax", None),
        ("{not json", "syntax", None),
    ],
)
def test_refusals_say_what_and_where(raw: str | bytes, kind: str, field: str | None) -> None:
    with pytest.raises(Unparseable) as refused:
        untrusted.loads(raw)
    assert (refused.value.kind, refused.value.field) == (kind, field)
    assert isinstance(refused.value, ValueError)  # existing `except ValueError` handlers still catch it


def test_limits_are_inclusive_and_pairs_are_text() -> None:
    assert untrusted.loads('{"a":' * 63 + "[1]" + "}" * 63) is not None  # 64 levels
    assert untrusted.loads("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(Unparseable):
        untrusted.loads("[[1]]", max_depth=1)
    assert untrusted.loads("9" * 4300) == int("9" * 4300)
    assert untrusted.loads('"\\ud83d\\ude80"') == "\U0001f680"

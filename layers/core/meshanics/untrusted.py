"""JSON from outside the platform (request bodies, cursors, upstream registries), parsed safely.

`json.loads` fails in ways a caller catching JSONDecodeError does not expect, and accepts text
nothing downstream can use:

* nesting deep enough raises RecursionError (where depends on the caller's own stack depth);
* an integer of more than 4,300 digits raises a plain ValueError (Python's int-from-text limit);
* `"\\ud800"` parses to a lone UTF-16 surrogate, which no UTF-8 encoder (boto3, Powertools, a
  receiver) can write later.

`loads` turns each into one `Unparseable` (a ValueError), naming the field when it can, and refuses
nesting past a fixed depth, so nothing that recurses over the result later can hit the limit either.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal, NoReturn

MAX_DEPTH: Final = 64
"""Nesting allowed by default: far beyond any document the platform reads (bodies, cursors and
manifests nest a few levels), far below the recursion limit."""

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

Kind = Literal["syntax", "depth", "number", "text"]


class Unparseable(ValueError):
    """JSON that cannot be taken in. `kind`: syntax (not JSON, or not UTF-8), depth, number (too many
    digits) or text (a lone surrogate); `field`: the dotted path of the value at fault, when known."""

    def __init__(self, message: str, kind: Kind, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.field = field


class _TooManyDigits:
    """Stands in for an integer json could not convert, so the walk can say where it was."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _integer(text: str) -> int | _TooManyDigits:
    try:
        return int(text)
    except ValueError:  # past sys.get_int_max_str_digits(); the grammar guarantees digits otherwise
        return _TooManyDigits(len(text.lstrip("-")))


def loads(raw: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text from outside; raise `Unparseable` for anything that cannot be used as is."""
    try:
        document = json.loads(raw, parse_int=_integer)
    except RecursionError:
        raise Unparseable("the JSON is nested too deeply", "depth") from None
    except UnicodeDecodeError:
        raise Unparseable("the JSON is not valid UTF-8", "syntax") from None
    except ValueError as error:  # JSONDecodeError
        raise Unparseable(f"not valid JSON: {error}", "syntax") from None
    _check(document, max_depth)
    return document


def _check(document: Any, max_depth: int) -> None:
    """Walk the parsed document depth-first without recursion (its depth is what is checked). One
    iterator per open container: the walk needs memory for the depth, not for the document's size."""
    containers: list[Iterator[tuple[Any, Any]]] = []
    path: list[str | int] = []  # the key being visited in each open container
    value = document
    while True:
        if isinstance(value, dict | list):
            if len(containers) >= max_depth:
                raise Unparseable(f"the JSON is nested more than {max_depth} levels deep", "depth")
            containers.append(iter(value.items()) if isinstance(value, dict) else enumerate(value))
            path.append("")
        elif isinstance(value, str):
            if _SURROGATE.search(value):
                _refuse_surrogate(path)
        elif isinstance(value, _TooManyDigits):
            field = _dotted(path)
            limit = sys.get_int_max_str_digits()
            message = f"a number has {value.digits} digits, more than the {limit} that can be read"
            raise Unparseable(f"{field}: {message}" if field else message, "number", field)
        while containers:  # on to the next value: the next item of the innermost open container
            step = next(containers[-1], None)
            if step is not None:
                path[-1], value = step
                if isinstance(path[-1], str) and _SURROGATE.search(path[-1]):
                    _refuse_surrogate(path[:-1], key=True)
                break
            containers.pop()
            path.pop()
        else:
            return


def _refuse_surrogate(path: Sequence[str | int], *, key: bool = False) -> NoReturn:
    field = _dotted(path)
    what = "a field name" if key else "text"
    message = f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which cannot be encoded as UTF-8"
    raise Unparseable(f"{field}: {message}" if field else message, "text", field)


def _dotted(path: Sequence[str | int]) -> str | None:
    dotted = ".".join(str(part) for part in path)
    return (dotted[:200] + "...") if len(dotted) > 200 else dotted or None  # names come from outside

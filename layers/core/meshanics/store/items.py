"""Item plumbing for the stores: (de)serialization, pagination cursors, update expressions."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from meshanics.clock import parse_moment
from meshanics.errors import InvalidInput

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value)  # type: ignore[call-overload]  # Binary implements __bytes__
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values -> DynamoDB attribute values (None values are left out)."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def to_value(value: Any) -> Any:
    return _serializer.serialize(value)


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values -> plain Python (ints, not Decimals; bytes, not Binary)."""
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Already-deserialized values (e.g. a stream image) -> plain Python."""
    return {k: _plain(v) for k, v in values.items()}


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(from_item(last_key), separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, partition: str, sort_prefix: str) -> dict[str, Any] | None:
    """An ExclusiveStartKey from a cursor, accepted only if it is one this listing handed out: a
    base table key inside `partition` whose sort key starts with `sort_prefix`."""
    from meshanics import untrusted  # here: only the API reads cursors

    if not cursor:
        return None
    invalid = InvalidInput("cursor is not valid", code="invalid_cursor", field="cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # The client's text: untrusted.loads also refuses nesting, huge numbers and lone surrogates.
        values = untrusted.loads(base64.urlsafe_b64decode(padded.encode()), max_depth=1)  # one flat object
    except (ValueError, binascii.Error):  # untrusted.Unparseable is a ValueError
        raise invalid from None
    if not isinstance(values, dict) or set(values) != {"pk", "sk"} or values["pk"] != partition:
        raise invalid
    sort_key = values["sk"]
    if not isinstance(sort_key, str) or not sort_key.startswith(sort_prefix) or len(sort_key) > 1024:
        raise invalid
    return to_item(values)


def query_page(
    client: Any, table: str, *, partition: str, sort_prefix: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a partition's items whose sort key starts with `sort_prefix`, and the next cursor."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": to_item({":pk": partition, ":prefix": sort_prefix}),
        "Limit": limit,
    }
    start = decode_cursor(cursor, partition=partition, sort_prefix=sort_prefix)
    if start:
        kwargs["ExclusiveStartKey"] = start
    response = client.query(**kwargs)
    return response.get("Items", []), encode_cursor(response.get("LastEvaluatedKey"))


def update_expression(
    sets: Mapping[str, Any], removes: Iterable[str] = ()
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """SET/REMOVE expression with placeholder names and values for every attribute."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts: list[str] = []
    for i, (attr, value) in enumerate(sets.items()):
        names[f"#s{i}"] = attr
        values[f":s{i}"] = to_value(value)
        parts.append(f"#s{i} = :s{i}")
    expression = "SET " + ", ".join(parts) if parts else ""
    removed = list(removes)
    if removed:
        for i, attr in enumerate(removed):
            names[f"#r{i}"] = attr
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
    return expression.strip(), names, values


# "YYYY-MM-DDTHH:MM:SS": how much of a stored time sorts as text. Times are written both with and
# without milliseconds (`...:05Z`, `...:05.250Z`), and within one second those sort apart.
SECOND = len("0000-00-00T00:00:00")


def time_window(placeholder: str, since: str | None, until: str | None, values: dict[str, Any]) -> list[str]:
    """FilterExpression conditions that keep the items whose stored time (the attribute named by
    `placeholder`) is in [since, until), to the second: a superset the caller narrows exactly."""
    conditions: list[str] = []
    if since is not None:
        values[":since"] = since[:SECOND]
        conditions.append(f"{placeholder} >= :since")
    if until is not None:
        end = parse_moment(until)
        whole = end.replace(microsecond=0)
        try:
            values[":until"] = (whole if whole == end else whole + timedelta(seconds=1)).isoformat()[:SECOND]
            conditions.append(f"{placeholder} < :until")
        except OverflowError:  # nothing is that recent
            pass
    return conditions

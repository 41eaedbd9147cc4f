"""DynamoDB plumbing shared by the stores: item (de)serialization, keys, pagination cursors.

Only the store modules import this; the rest of the core speaks in domain objects.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from meshanics import untrusted
from meshanics.errors import InvalidInput, TransientFailure

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


class StoreThrottled(TransientFailure):
    """DynamoDB still left part of a batch unprocessed after every retry (throttling).

    Never a "not found": callers leave their work to be retried later.
    """


# Pauses between re-sends of what a batch call left unprocessed (on top of botocore's own retries).
BATCH_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8)


def batch_get(
    client: Any,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    projection: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Items by (pk, sk), read consistently, 100 keys per BatchGetItem; missing keys are absent.

    Raises StoreThrottled if keys stay unprocessed: a throttled key must never look like a deleted item.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for chunk in chunks(keys, 100):
        request: dict[str, Any] = {table: {"Keys": list(chunk), "ConsistentRead": True}}
        if projection:
            request[table]["ProjectionExpression"] = projection
        if names:
            request[table]["ExpressionAttributeNames"] = dict(names)
        for pause in (0.0, *BATCH_PAUSES):
            time.sleep(pause)
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found[(item["pk"]["S"], item["sk"]["S"])] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise StoreThrottled(f"DynamoDB left {len(request[table]['Keys'])} keys unread after retries")
    return found


def batch_write(client: Any, table: str, requests: Sequence[Mapping[str, Any]]) -> None:
    """PutRequest/DeleteRequest entries, 25 per BatchWriteItem; raises StoreThrottled if some stay unwritten."""
    for chunk in chunks(requests, 25):
        pending: dict[str, Any] = {table: list(chunk)}
        for pause in (0.0, *BATCH_PAUSES):
            time.sleep(pause)
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
        else:
            raise StoreThrottled(f"DynamoDB left {len(pending[table])} writes unprocessed after retries")


# Keys. Tenant-owned items live under partitions that start with the tenant id, so a key built
# from the caller's tenant can never address another tenant's item.
def tenant_pk(tenant_id: str) -> str:
    return f"T#{tenant_id}"


TENANT_SK = "#TENANT"


def subscription_pk(tenant_id: str, key: str) -> str:
    return f"T#{tenant_id}#SUB#{key}"


def deliveries_pk(tenant_id: str, endpoint_id: str) -> str:
    return f"T#{tenant_id}#EP#{endpoint_id}"


def delivery_sk(sequence: int) -> str:
    return f"D#{sequence:020d}"


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(from_item(last_key), separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, partition: str, sort_prefix: str) -> dict[str, Any] | None:
    """An ExclusiveStartKey from a cursor, accepted only if it is one this listing handed out: a
    base table key inside `partition` whose sort key starts with `sort_prefix`."""
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

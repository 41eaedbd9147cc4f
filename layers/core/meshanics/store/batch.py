"""One way to call DynamoDB in batches and transactions, with one retry policy.

BatchGetItem and BatchWriteItem may leave part of a request unprocessed (throttling); what is left
is asked again after a short pause (on top of the SDK's own retries), and what is still left after
that raises StoreThrottled, never a silent loss and never a "not found".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from meshanics.errors import TransientFailure
from meshanics.store.items import chunks, from_item


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


def transact(client: Any, items: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """Write `items` all or nothing. None if committed; else each item's cancellation reason
    ("ConditionalCheckFailed", or "None" for an item that passed), for the caller to decide.

    A transaction cancelled by a concurrent one or by throttling raises StoreThrottled (retry later).
    """
    try:
        client.transact_write_items(TransactItems=list(items))
    except ClientError as error:
        if error.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        raw = error.response.get("CancellationReasons") or []
        reasons = [str(r.get("Code", "None")) for r in raw]
        if "TransactionConflict" in reasons or "ThrottlingError" in reasons:
            raise StoreThrottled(f"the transaction met a concurrent one or throttling: {reasons}") from error
        return reasons + ["None"] * (len(items) - len(reasons))
    return None


def conditional(
    write: Callable[..., Any], params: Mapping[str, Any], *, ours: Callable[[dict[str, Any]], bool]
) -> bool:
    """A conditional write; False if its condition failed because of someone else's write.

    When the SDK re-sends a write whose answer was lost, the condition fails on the first send's own
    effect: the item the failed condition returns (ALL_OLD) shows it (`ours`), and that is success.
    """
    try:
        write(**params, ReturnValuesOnConditionCheckFailure="ALL_OLD")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        found: dict[str, Any] = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
        return bool(found) and ours(from_item(found))
    return True

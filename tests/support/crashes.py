"""Kill a function between two AWS calls, in-process: the crash-point tests of docs/guarantees.md.

`crash_at("SendMessageBatch")` makes the next SendMessageBatch raise `SimulatedCrash` before the
request is made (or, with `when="after"`, once it has been made and before its answer is used).
`SimulatedCrash` is a BaseException, so no `except Exception` in the code under test can swallow
it: like a killed process, the invocation simply stops there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import botocore.client

from meshanics_local.awscalls import RawBody


class SimulatedCrash(BaseException):
    """The function's process died at this point."""


@contextlib.contextmanager
def _patched(wrapper: Callable[[Callable[..., Any], Any, str, Any], Any]) -> Iterator[None]:
    original = botocore.client.BaseClient._make_api_call

    def call(self: Any, operation: str, params: Any) -> Any:
        return wrapper(original, self, operation, params)

    botocore.client.BaseClient._make_api_call = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


@contextlib.contextmanager
def crash_at(operation: str, *, nth: int = 1, when: Literal["before", "after"] = "before") -> Iterator[None]:
    """Crash at the `nth` call of `operation` (a botocore operation name such as UpdateItem)."""
    seen: list[str] = []  # the calls of `operation` so far, up to the crash

    def wrapper(original: Callable[..., Any], client: Any, name: str, params: Any) -> Any:
        if name != operation or len(seen) >= nth:
            return original(client, name, params)
        seen.append(name)
        if len(seen) < nth:
            return original(client, name, params)
        if when == "after":
            original(client, name, params)
        raise SimulatedCrash(f"killed {when} {operation} #{nth}")

    with _patched(wrapper):
        yield
    assert len(seen) == nth, f"the code never reached {operation} #{nth}: the crash point is stale"


@contextlib.contextmanager
def unprocessed(operation: Literal["BatchGetItem", "BatchWriteItem"]) -> Iterator[list[int]]:
    """DynamoDB throttles every key of `operation`: each call answers all of it as unprocessed."""
    calls: list[int] = []

    def wrapper(original: Callable[..., Any], client: Any, name: str, params: Any) -> Any:
        if name != operation:
            return original(client, name, params)
        calls.append(1)
        if operation == "BatchGetItem":
            return {"Responses": {}, "UnprocessedKeys": params["RequestItems"]}
        return {"UnprocessedItems": params["RequestItems"]}

    with _patched(wrapper):
        yield calls


@contextlib.contextmanager
def recorded_calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every AWS call made inside the block, with its parameters."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def wrapper(original: Callable[..., Any], client: Any, name: str, params: Any) -> Any:
        calls.append((name, dict(params)))
        return original(client, name, params)

    with _patched(wrapper):
        yield calls


@contextlib.contextmanager
def answer_lost(operation: str) -> Iterator[list[str]]:
    """The next `operation` reaches AWS and is done, but its answer is lost (a 500 instead), so the
    SDK sends it again: the second send meets the first one's effect."""
    from botocore.awsrequest import AWSResponse
    from botocore.endpoint import Endpoint

    original = Endpoint._do_get_response  # type: ignore[attr-defined]
    fired: list[str] = []

    def get_response(self: Any, request: Any, operation_model: Any, context: Any) -> Any:
        result = original(self, request, operation_model, context)
        if operation_model.name != operation or fired:
            return result
        fired.append(operation)
        headers: Any = {}
        lost = AWSResponse(request.url, 500, headers, RawBody(b"{}"))
        error = {"Error": {"Code": "InternalServerError", "Message": "the answer was lost"}}
        return (lost, {**error, "ResponseMetadata": {"HTTPStatusCode": 500}}), None

    Endpoint._do_get_response = get_response  # type: ignore[attr-defined]
    try:
        yield fired
    finally:
        Endpoint._do_get_response = original  # type: ignore[attr-defined]
    assert fired, f"the code never called {operation}"


@contextlib.contextmanager
def refused(operation: str) -> Iterator[list[int]]:
    """AWS keeps throttling `operation`: every call fails (after what would be the SDK's retries)."""
    from botocore.exceptions import ClientError

    calls: list[int] = []

    def wrapper(original: Callable[..., Any], client: Any, name: str, params: Any) -> Any:
        if name != operation:
            return original(client, name, params)
        calls.append(1)
        error = {"Error": {"Code": "ThrottlingException", "Message": "throttled (injected)"}}
        raise ClientError(error, name)  # type: ignore[arg-type]

    with _patched(wrapper):
        yield calls

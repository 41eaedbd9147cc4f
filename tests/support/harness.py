"""The platform in one process: the real handlers, wired as API Gateway, DynamoDB Streams and SQS would.

`api()` runs the authorizer then the API function (like API Gateway); `pump()` runs the fan-out on
new audit-log stream records and the delivery function on visible queue messages (like the pollers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3

from meshanics import services
from meshanics_local.apigateway import proxy_response
from meshanics_local.workers import LambdaContext
from tests.conftest import load_handler
from tests.support.lambda_events import (
    Context,
    StreamReader,
    api_event,
    authorizer_context,
    delete_succeeded,
    sqs_event,
)


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Platform:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.handlers: dict[str, ModuleType] = {}
        self.stream = StreamReader(env["AUDIT_TABLE"])
        self.last_delivery_event: dict[str, Any] = {"Records": []}

    def handler(self, name: str) -> ModuleType:
        if name not in self.handlers:
            self.handlers[name] = load_handler(name)
        return self.handlers[name]

    def key(self, tenant: str, scopes: list[str]) -> str:
        key, _ = services.api_keys().create(tenant, scopes)
        return key

    def authorize(self, authorization: str | None) -> dict[str, Any] | None:
        """What API Gateway's REQUEST authorizer step yields: the context, or None for a 401."""
        if not authorization:
            return None
        event = {
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:local/dev/GET/v1/webhooks",
            "headers": {"Authorization": authorization},
        }
        try:
            policy = self.handler("authorizer").lambda_handler(event, Context("authorizer"))
        except Exception as error:
            assert str(error) == "Unauthorized"
            return None
        return {**policy["context"], "principalId": policy["principalId"]}

    def api(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        query: dict[str, str] | None = None,
        raw_body: bytes | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        context: dict[str, Any] | None = None,
    ) -> ApiResponse:
        if context is None:
            context = self.authorize(f"Bearer {key}" if key else None)
            if context is None:
                return ApiResponse(
                    401, {}, b'{"error":{"code":"unauthorized","message":"a valid API key is required"}}'
                )
        # As template.yaml routes: /v2 and /v2/{proxy+} to the pull facade, every /v1 route to the API.
        function = "registry" if path == "/v2" or path.startswith("/v2/") else "api"
        event = api_event(method, path, body=body, query=query, raw_body=raw_body, headers=headers, authorizer=context)
        result = self.handler(function).lambda_handler(event, Context(function))
        response = proxy_response(result)  # as the API front reads it (None: API Gateway's 502)
        assert response is not None, f"a malformed Lambda proxy result: {result!r}"
        return ApiResponse(response.status, dict(response.headers), response.body)

    def api_as(self, tenant: str, scopes: list[str], method: str, path: str, **kwargs: Any) -> ApiResponse:
        return self.api(method, path, context=authorizer_context(tenant, scopes), **kwargs)

    def fan_out(self) -> dict[str, Any]:
        event = self.stream.event()
        if not event["Records"]:
            return {"batchItemFailures": []}
        return self.handler("fanout").lambda_handler(event, Context("fanout"))  # type: ignore[no-any-return]

    def deliver(
        self, *, max_messages: int = 10, context: LambdaContext | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """One delivery invocation on the visible jobs; returns (event, response)."""
        queue = self.env["DELIVERY_QUEUE_URL"]
        event = sqs_event(queue, max_messages=max_messages)
        if not event["Records"]:
            return event, {"batchItemFailures": []}
        self.last_delivery_event = event  # for `expire` when the invocation dies
        response = self.handler("deliver").lambda_handler(event, context or Context("deliver"))
        delete_succeeded(queue, event, response)
        return event, response

    def expire(self, event: dict[str, Any], queue_url: str | None = None) -> None:
        """The visibility timeout of an invocation that died passes: its messages are visible again."""
        sqs = boto3.client("sqs")
        for record in event["Records"]:
            sqs.change_message_visibility(
                QueueUrl=queue_url or self.env["DELIVERY_QUEUE_URL"],
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=0,
            )

    def pump(self, rounds: int = 5) -> None:
        """Fan out new audit records and deliver what is visible, until nothing is left to do."""
        for _ in range(rounds):
            self.fan_out()
            event, _ = self.deliver()
            if not event["Records"] and not self.stream.event()["Records"]:
                return

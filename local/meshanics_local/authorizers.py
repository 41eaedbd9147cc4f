"""Lambda authorizers as API Gateway runs them: identity sources, invocation, policy, cache.

* A missing identity source (with caching on) is UNAUTHORIZED without invoking the authorizer.
* A raised error whose message is exactly "Unauthorized" is UNAUTHORIZED (401); any other error
  is AUTHORIZER_FAILURE (500); a result without principalId and policyDocument, or with a context
  value that is not a string, number or boolean, is AUTHORIZER_CONFIGURATION_ERROR (500).
* The policy must Allow `execute-api:Invoke` on the method ARN (IAM wildcards `*` and `?`) and not
  Deny it; otherwise ACCESS_DENIED.
* Results (the policy, principal and context) are cached by identity-source values for
  authorizerResultTtlInSeconds and evaluated against each request's method ARN.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshanics_local.events import (
    ApiContext,
    HttpRequest,
    authorizer_request_event,
    authorizer_token_event,
    method_arn,
)
from meshanics_local.routes import Authorizer
from meshanics_local.workers import Invocation


@dataclass(frozen=True)
class Decision:
    """`response_type` is None when the request may proceed, else the gateway response to give."""

    response_type: str | None
    principal_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    latency_ms: int = 0

    @property
    def allowed(self) -> bool:
        return self.response_type is None


@dataclass(frozen=True)
class _Result:
    principal_id: str
    policy: Mapping[str, Any]
    context: dict[str, Any]


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.DOTALL)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def evaluate(policy: Mapping[str, Any], method_arn: str) -> str:
    """'allow', 'deny' (explicit) or 'implicit' (no statement allows it)."""
    allowed = False
    for statement in _as_list(policy.get("Statement") or []):
        if not isinstance(statement, Mapping):
            continue
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        if not any(_pattern(a.lower()).fullmatch("execute-api:invoke") for a in actions):
            continue
        resources = [str(r) for r in _as_list(statement.get("Resource", []))]
        if not any(_pattern(r).fullmatch(method_arn) for r in resources):
            continue
        effect = str(statement.get("Effect", "")).lower()
        if effect == "deny":
            return "deny"
        allowed = allowed or effect == "allow"
    return "allow" if allowed else "implicit"


def identity(
    authorizer: Authorizer, request: HttpRequest, path_parameters: Mapping[str, str]
) -> tuple[str, ...] | None:
    """The identity-source values, or None if one is missing."""
    query = dict(request.query)
    values: list[str] = []
    for source in authorizer.identity_sources:
        value: str | None
        if source.startswith("method.request.header."):
            value = request.header(source.removeprefix("method.request.header."))
        elif source.startswith("method.request.querystring."):
            value = query.get(source.removeprefix("method.request.querystring."))
        elif source.startswith("method.request.path."):
            value = path_parameters.get(source.removeprefix("method.request.path."))
        else:
            value = ""  # stage variables and context sources: not played locally
        if not value:
            return None
        values.append(value)
    return tuple(values)


def _check_result(result: Any) -> _Result | None:
    if not isinstance(result, Mapping):
        return None
    principal = result.get("principalId")
    policy = result.get("policyDocument")
    context = result.get("context") or {}
    if principal is None or not isinstance(policy, Mapping) or not isinstance(context, Mapping):
        return None
    if any(isinstance(v, (dict, list)) for v in context.values()):
        return None
    return _Result(str(principal), policy, dict(context))


class AuthorizerCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[float, _Result]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, key: tuple[str, ...]) -> _Result | None:
        with self._lock:
            entry = self._entries.get((name, key))
            if entry is None or entry[0] < time.monotonic():
                return None
            return entry[1]

    def put(self, name: str, key: tuple[str, ...], result: _Result, ttl: int) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._entries[(name, key)] = (time.monotonic() + ttl, result)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def authorize(
    authorizer: Authorizer,
    request: HttpRequest,
    api: ApiContext,
    *,
    region: str,
    invoke: Callable[[dict[str, Any]], Invocation],
    cache: AuthorizerCache,
) -> Decision:
    key = identity(authorizer, request, api.path_parameters)
    if key is None and (authorizer.ttl_seconds > 0 or authorizer.kind == "TOKEN"):
        return Decision("UNAUTHORIZED")
    if (
        authorizer.kind == "TOKEN"
        and key is not None
        and authorizer.validation_expression
        and not re.fullmatch(authorizer.validation_expression, key[0])
    ):
        return Decision("UNAUTHORIZED")
    result = cache.get(authorizer.name, key) if key is not None else None
    latency = 0
    if result is None:
        if authorizer.kind == "TOKEN":
            event = authorizer_token_event(key[0] if key else "", request, api, region=region)
        else:
            event = authorizer_request_event(request, api, region=region)
        started = time.perf_counter()
        invocation = invoke(event)
        latency = round((time.perf_counter() - started) * 1000)
        if not invocation.ok:
            if invocation.error_message == "Unauthorized":
                return Decision("UNAUTHORIZED")
            return Decision("AUTHORIZER_FAILURE", message="Internal server error")
        result = _check_result(invocation.result)
        if result is None:
            return Decision("AUTHORIZER_CONFIGURATION_ERROR", message="Internal server error")
        if key is not None:
            cache.put(authorizer.name, key, result, authorizer.ttl_seconds)
    verdict = evaluate(result.policy, method_arn(region, api, request.method, request.path))
    if verdict != "allow":
        message = (
            "User is not authorized to access this resource with an explicit deny"
            if verdict == "deny"
            else "User is not authorized to access this resource"
        )
        return Decision("ACCESS_DENIED", principal_id=result.principal_id, message=message)
    return Decision(None, principal_id=result.principal_id, context=result.context, latency_ms=latency)

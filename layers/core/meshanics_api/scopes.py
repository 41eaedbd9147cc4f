"""The caller (from the authorizer, never from the request), its scopes, and the scopes routes declare."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshanics.errors import Forbidden, Unauthenticated

Scopes = tuple[str, ...]

# Scopes that imply others: an administrator can read what it manages.
IMPLIED: dict[str, Scopes] = {"integrations:read": ("integrations:admin",)}


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"apikey:{self.key_id}"

    def require(self, scope: str) -> Caller:
        if permits(self.scopes, (scope,)):
            return self
        raise missing_scope((scope,))


def permits(scopes: frozenset[str], accepted: Scopes) -> bool:
    """True if the key holds one of the accepted scopes (or a scope that implies one)."""
    return any(a in scopes or any(s in scopes for s in IMPLIED.get(a, ())) for a in accepted)


def missing_scope(accepted: Scopes) -> Forbidden:
    return Forbidden(f"this API key lacks the {' or '.join(accepted)} scope", code="missing_scope")


def authorizer_context(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the API key authorizer put in the request context (empty without an authorizer)."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    return context if isinstance(context, Mapping) else {}


def caller_of(event: Mapping[str, Any]) -> Caller:
    """The authenticated caller of a proxy event: the tenant comes only from the authorizer."""
    context = authorizer_context(event)
    tenant = context.get("tenant_id")
    if not tenant:
        raise Unauthenticated("a valid API key is required")
    return Caller(str(tenant), str(context.get("key_id", "")), frozenset(str(context.get("scopes", "")).split()))


@dataclass(frozen=True)
class DeclaredRoute:
    method: str
    rule: str
    pattern: re.Pattern[str]
    scopes: Scopes | None  # None: the route declares no scope (`caller` refuses it; it may check its own)


class ScopeRegistry:
    """The scopes each route declared with its decorator (any one opens the route).

    Matched as Powertools matches routes: the same compiled rule, static routes before dynamic ones,
    in the order they were declared.
    """

    def __init__(self) -> None:
        self._static: list[DeclaredRoute] = []
        self._dynamic: list[DeclaredRoute] = []

    def declare(self, method: str, rule: str, pattern: re.Pattern[str], scopes: Scopes | None) -> None:
        route = DeclaredRoute(method.upper(), rule, pattern, scopes)
        (self._dynamic if pattern.groups else self._static).append(route)

    def route(self, method: str, path: str) -> DeclaredRoute | None:
        """The route a request goes to, or None if no route matches it."""
        method = method.upper()
        for route in (*self._static, *self._dynamic):
            if route.method == method and route.pattern.match(path):
                return route
        return None

    def required(self, method: str, rule: str) -> Scopes | None:
        """The scopes declared for a route, by method and rule as written (`/v1/webhooks/<webhook_id>`)."""
        for route in (*self._static, *self._dynamic):
            if route.method == method.upper() and route.rule == rule.rstrip("/"):
                return route.scopes
        return None

    def refusal(self, method: str, path: str, event: Mapping[str, Any]) -> Unauthenticated | Forbidden | None:
        """Why the caller may not use the route the request goes to; None if it may, or if the route
        declares no scope (it is public or checks its own) or does not exist (Powertools answers 404)."""
        route = self.route(method, path)
        if route is None or route.scopes is None:
            return None
        try:
            who = caller_of(event)
        except Unauthenticated as error:
            return error
        return None if permits(who.scopes, route.scopes) else missing_scope(route.scopes)

    def caller(self, method: str, path: str, event: Mapping[str, Any]) -> Caller:
        """The caller, holding a scope the route declares; a route that declares none fails closed."""
        who = caller_of(event)
        route = self.route(method, path)
        if route is None or route.scopes is None:
            raise Forbidden("this route declares no scope", code="missing_scope")
        if not permits(who.scopes, route.scopes):
            raise missing_scope(route.scopes)
        return who


def describe(scopes: Scopes) -> str:
    """The scope requirement in words, for the OpenAPI document."""
    named = ", ".join(f"`{s}`" for s in scopes)
    text = f"Requires the {named} scope" if len(scopes) == 1 else f"Requires one of the scopes {named}"
    implied = [f"`{i}` includes `{s}`" for s in scopes for i in IMPLIED.get(s, ()) if i not in scopes]
    return text + (f" ({'; '.join(implied)})." if implied else ".")

"""ApiRouter: Powertools' Router whose routes declare their scopes, for routes kept in their own module.

    router = ApiRouter(max_request_bytes=limits.max_request_bytes, error_notes={404: "No such registry"})

    @router.post("/v1/registries", scopes=(OPERATOR,), responses=router.documented(201, 400, 409))
    def connect_registry(body: Annotated[RegistryCreate, Body()]) -> Registry:
        who = router.caller()
        ...

    app.include_router(router)  # app: the function's ApiResolver

The routes are documented here (scopes, 401/403, this router's words for each error) and their
scopes recorded, so the resolver that includes the router checks them exactly as its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.constants import (
    DEFAULT_OPENAPI_RESPONSE_DESCRIPTION,
    DEFAULT_STATUS_CODE,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from meshanics_api import openapi
from meshanics_api.resolver import ApiResolver, DeclaredScopes, methods_of, refuse_empty_scopes
from meshanics_api.scopes import Caller, Scopes

F = TypeVar("F", bound=Callable[..., Any])


class ApiRouter(Router):
    """Routes declared in another module, with `scopes=` and the door's documentation."""

    def __init__(self, *, max_request_bytes: int, error_notes: Mapping[int, str] | None = None) -> None:
        """`error_notes`: what an error status means for these routes (e.g. what a 404 means)."""
        super().__init__()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated
        self.max_request_bytes = max_request_bytes
        self.error_notes = dict(error_notes or {})
        self.declared_scopes: DeclaredScopes = {}

    def route(
        self,
        rule: str,
        method: str | list[str] | tuple[str],
        cors: bool | None = None,
        compress: bool = False,
        cache_control: str | None = None,
        summary: str | None = None,
        description: str | None = None,
        responses: dict[int, OpenAPIResponse] | None = None,
        response_description: str | None = DEFAULT_OPENAPI_RESPONSE_DESCRIPTION,
        tags: list[str] | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
        security: list[dict[str, list[str]]] | None = None,
        openapi_extensions: dict[str, Any] | None = None,
        deprecated: bool = False,
        enable_validation: bool | None = None,
        custom_response_validation_http_code: int | HTTPStatus | None = None,
        status_code: int = DEFAULT_STATUS_CODE,
        middlewares: list[Callable[..., Any]] | None = None,
        *,
        scopes: Scopes | None = None,
    ) -> Callable[[F], F]:
        """Powertools' route decorator, and `scopes`: the API key scopes that open the route (any one)."""
        refuse_empty_scopes(rule, scopes)
        if scopes is not None:
            description, responses, openapi_extensions = openapi.with_scopes(
                scopes, description, responses, openapi_extensions
            )
            for item in methods_of(method):
                self.declared_scopes[(item, rule.rstrip("/"))] = scopes
        decorate: Callable[[F], F] = super().route(
            rule,
            method,
            cors,
            compress,
            cache_control,
            summary,
            description,
            responses,
            response_description,
            tags,
            operation_id,
            include_in_schema,
            security,
            openapi_extensions,
            deprecated,
            enable_validation,
            custom_response_validation_http_code,
            status_code,
            middlewares,
        )
        return decorate

    def get(self, rule: str, *args: Any, scopes: Scopes | None = None, **options: Any) -> Callable[[F], F]:
        return self.route(rule, "GET", *args, scopes=scopes, **options)

    def post(self, rule: str, *args: Any, scopes: Scopes | None = None, **options: Any) -> Callable[[F], F]:
        return self.route(rule, "POST", *args, scopes=scopes, **options)

    def put(self, rule: str, *args: Any, scopes: Scopes | None = None, **options: Any) -> Callable[[F], F]:
        return self.route(rule, "PUT", *args, scopes=scopes, **options)

    def patch(self, rule: str, *args: Any, scopes: Scopes | None = None, **options: Any) -> Callable[[F], F]:
        return self.route(rule, "PATCH", *args, scopes=scopes, **options)

    def delete(self, rule: str, *args: Any, scopes: Scopes | None = None, **options: Any) -> Callable[[F], F]:
        return self.route(rule, "DELETE", *args, scopes=scopes, **options)

    def head(self, rule: str, *args: Any, scopes: Scopes | None = None, **options: Any) -> Callable[[F], F]:
        return self.route(rule, "HEAD", *args, scopes=scopes, **options)

    # -- at request time: the resolver that included the router ------------------------------------
    @property
    def resolver(self) -> ApiResolver:
        if not isinstance(self.api_resolver, ApiResolver):
            raise RuntimeError("include this router into an ApiResolver (app.include_router) before it serves")
        return self.api_resolver

    def caller(self) -> Caller:
        """The authenticated caller, holding a scope the current route declares (as ApiResolver.caller)."""
        return self.resolver.caller()

    def once(
        self, key: str | None, produce: Callable[[], Mapping[str, Any]], *, sealed: Collection[str] = ()
    ) -> dict[str, Any]:
        """`produce()`'s answer, run once per Idempotency-Key (as ApiResolver.once)."""
        return self.resolver.once(key, produce, sealed=sealed)

    def documented(
        self, status: int, *errors: int, description: str = "Successful Response"
    ) -> dict[int, OpenAPIResponse]:
        """A route's responses: its success and the errors it can answer (401/403 come with its scopes)."""
        return openapi.documented(
            status, errors, description=description, notes=self.error_notes, max_request_bytes=self.max_request_bytes
        )

"""ApiResolver: Powertools' REST resolver with the door built in.

    app = ApiResolver(max_request_bytes=limits.max_request_bytes, error_notes={404: "No such webhook"})

    @app.post("/v1/webhooks", scopes=(ADMIN,), responses=app.documented(201, 400, 409))
    def create_webhook(body: Annotated[WebhookCreate, Body()]) -> WebhookWithSecret:
        who = app.caller()  # the tenant and key, holding a scope the route declares
        ...

A route's scopes are declared once, in its decorator: they are checked before the request is
validated, again by `caller()` inside the route, and stated in the OpenAPI document (description,
`x-required-scopes`, 401 and 403). A route declared without scopes fails closed in `caller()`;
routes that check their own (the registry's /v2) use `authenticated()`.

Routes may live in other modules on an `ApiRouter` (the same decorators, `scopes=` included),
included with `app.include_router(router)`: one resolver, one OpenAPI document.

Built with `idempotency=`, routes that take an `Idempotency-Key` run their work through `once()`
(see meshanics_api.idempotency).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.constants import (
    DEFAULT_OPENAPI_RESPONSE_DESCRIPTION,
    DEFAULT_STATUS_CODE,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics_api import errors, guards, openapi
from meshanics_api.scopes import Caller, ScopeRegistry, Scopes, caller_of

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import Router

    from meshanics_api.idempotency import IdempotentRequests

F = TypeVar("F", bound=Callable[..., Any])

# A route's method and rule (as Powertools stores it: no trailing slash) -> the scopes it declared.
DeclaredScopes = dict[tuple[str, str], Scopes]


def methods_of(method: str | list[str] | tuple[str]) -> tuple[str, ...]:
    return tuple(m.upper() for m in ((method,) if isinstance(method, str) else method))


def refuse_empty_scopes(rule: str, scopes: Scopes | None) -> None:
    if scopes is not None and not scopes:
        raise ValueError(f"{rule}: scopes=() would open the route to no key; declare at least one")


class ApiResolver(APIGatewayRestResolver):
    """Routes that declare their scopes, one error shape, request guards ahead of validation."""

    def __init__(
        self,
        *,
        max_request_bytes: int,
        json_bodies_under: str | None = "/v1/",
        error_notes: Mapping[int, str] | None = None,
        idempotency: IdempotentRequests | None = None,
    ) -> None:
        """`json_bodies_under`: under this path prefix every request body must be a JSON object.
        `error_notes`: this API's words for an error status in the document (e.g. what a 404 means).
        `idempotency`: where `once()` keeps the answers to requests with an Idempotency-Key."""
        super().__init__(enable_validation=True)
        self.scopes = ScopeRegistry()
        self.max_request_bytes = max_request_bytes
        self.json_bodies_under = json_bodies_under
        self.error_notes = dict(error_notes or {})
        self.idempotency = idempotency
        # The scopes of the routes of a router being included (see include_router).
        self._included_scopes: DeclaredScopes = {}
        errors.install(self)

    # -- routes declare their scopes ---------------------------------------------------------------
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
        response_description: str = DEFAULT_OPENAPI_RESPONSE_DESCRIPTION,
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
        rule = rule.rstrip("/")  # as Powertools' REST resolver stores it
        for item in methods_of(method):
            # A router's route arrives documented already; its scopes were recorded by the router.
            declared = scopes if scopes is not None else self._included_scopes.get((item, rule))
            self.scopes.declare(item, rule, self._compile_regex(rule), declared)
        return super().route(
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

    def include_router(self, router: Router, prefix: str | None = None) -> None:
        """Powertools' include_router; an ApiRouter's routes keep the scopes they declared."""
        declared: DeclaredScopes = getattr(router, "declared_scopes", {})
        if declared and prefix:
            raise ValueError("an ApiRouter's routes are declared with their full path: include it without a prefix")
        self._included_scopes = declared
        try:
            super().include_router(router, prefix)
        finally:
            self._included_scopes = {}

    # -- the caller --------------------------------------------------------------------------------
    def caller(self) -> Caller:
        """The authenticated caller, holding a scope the current route declares (403 if it declares none)."""
        event = self.current_event
        return self.scopes.caller(event.http_method, event.path, event.raw_event)

    def authenticated(self) -> Caller:
        """The authenticated caller whatever its scopes, for routes that check their own."""
        return caller_of(self.current_event.raw_event)

    # -- Idempotency-Key ---------------------------------------------------------------------------
    def once(
        self, key: str | None, produce: Callable[[], Mapping[str, Any]], *, sealed: Collection[str] = ()
    ) -> dict[str, Any]:
        """`produce()`'s answer, or, for a key seen before, the first answer (meshanics_api.idempotency).

        `key`: the route's validated Idempotency-Key header; `sealed`: fields of the answer that
        are stored sealed."""
        if key is None:
            return dict(produce())
        if self.idempotency is None:
            raise RuntimeError("a route takes an Idempotency-Key, but the resolver was built without idempotency=")
        from meshanics_api.idempotency import Request

        event = self.current_event
        request = Request(self.caller().tenant_id, f"{event.http_method.upper()} {event.path}", key, event.json_body)
        return self.idempotency.run(request, produce, sealed=sealed, context=self.lambda_context)

    # -- the door, ahead of Powertools -------------------------------------------------------------
    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        # Not a middleware: Powertools runs request validation (and body parsing) before every middleware.
        refused = self.door(event) if isinstance(event, dict) else None
        return refused if refused is not None else super().resolve(event, context)

    def door(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The refusal of a request Powertools must not see, as a proxy response; None to let it in."""
        method, path = str(event.get("httpMethod", "")), str(event.get("path", ""))
        # Before validation (Powertools validates ahead of any middleware): a key without the scope learns nothing.
        forbidden = self.scopes.refusal(method, path, event)
        if forbidden is not None:
            return errors.proxy_error(forbidden.status, forbidden.code, forbidden.message)
        # Before parsing: Powertools would read an oversized body whole, then parse it.
        too_large = guards.oversized(event, self.max_request_bytes)
        if too_large is not None:
            return too_large
        if self.idempotency is not None:
            repeated = guards.one_header(event, self.idempotency.header)
            if repeated is not None:
                return repeated
        if self.json_bodies_under is not None and path.startswith(self.json_bodies_under):
            # Before parsing: Powertools accepts form and multipart bodies and fails with a 500 on some JSON.
            refusal = guards.json_body_refusal(event)
            if refusal is not None:
                return refusal
            guards.lower_content_type(event)
        return None

    # -- the OpenAPI document ----------------------------------------------------------------------
    def documented(
        self, status: int, *errors: int, description: str = "Successful Response"
    ) -> dict[int, OpenAPIResponse]:
        """A route's responses: its success and the errors it can answer (401/403 come with its scopes)."""
        return openapi.documented(
            status, errors, description=description, notes=self.error_notes, max_request_bytes=self.max_request_bytes
        )

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        return openapi.without_default_422(super().get_openapi_schema(*args, **kwargs))

    def openapi_document(self, *, title: str, version: str) -> str:
        """The OpenAPI document as JSON, with the API key as its security scheme (built on request)."""
        from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

        self.configure_openapi(
            title=title,
            version=version,
            security_schemes={"apiKey": HTTPBearer(description="API key: Authorization: Bearer <key>")},
            security=[{"apiKey": []}],
        )
        return self.get_openapi_json_schema()

    def openapi_response(self, *, title: str, version: str) -> Response[str]:
        document = self.openapi_document(title=title, version=version)
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)

    def docs_response(self, *, title: str, version: str) -> Response[str]:
        page = openapi.swagger_page(self.openapi_document(title=title, version=version))
        return Response(status_code=200, content_type="text/html", body=page)

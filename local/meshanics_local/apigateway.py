"""The API front: API Gateway (REST API, Lambda proxy integration, payload format 1.0) on loopback.

The REST API (routes, authorizers, settings) is read from the OpenAPI body SAM generates. Matching
follows API Gateway (werkzeug's URL map does it: `{param}` and `{proxy+}` become `<param>` and
`<path:proxy>`): per path segment a static resource beats `{param}`, which beats a greedy
`{proxy+}`; a trailing slash is ignored (`/v2/` is `/v2`); the method must be declared on the
matched resource, else `ANY` (`x-amazon-apigateway-any-method`) applies.

Serves the template's REST API at the root (no stage prefix). For each request: match the route
(none: MISSING_AUTHENTICATION_TOKEN), run the route's Lambda authorizer, build the proxy event
(base64 body when the Content-Type matches a binary media type), invoke the function, and turn its
result into the HTTP response. A function error or a malformed result is a 502
`{"message": "Internal server error"}`, as API Gateway answers. Response headers that API Gateway
remaps for REST APIs (WWW-Authenticate, Authorization, ...) arrive as `x-amzn-Remapped-<name>`.

Gateway responses (the answers the gateway itself gives) use the API's configuration
(`x-amazon-apigateway-gateway-responses`) for their type, else DEFAULT_4XX / DEFAULT_5XX (whose
status code, when set, replaces the type's default). Header values are `'literal'` strings or
`method.request.header.<name>`; body templates get `$context.error.messageString` (the message as a
JSON string), `$context.error.message`, `$context.error.responseType` and a few other `$context`
variables substituted.

Lambda authorizers of type REQUEST (the template's kind; a TOKEN authorizer is refused) as API
Gateway runs them:
* A missing identity source (with caching on) is UNAUTHORIZED without invoking the authorizer.
* A raised error whose message is exactly "Unauthorized" is UNAUTHORIZED (401); any other error
  is AUTHORIZER_FAILURE (500); a result without principalId and policyDocument, or with a context
  value that is not a string, number or boolean, is AUTHORIZER_CONFIGURATION_ERROR (500).
* The policy must Allow `execute-api:Invoke` on the method ARN and not Deny it, else ACCESS_DENIED;
  moto's IAM policy evaluation decides (its wildcards are `*` only: `?` is not played).
* Results (the policy, principal and context) are cached by identity-source values for
  authorizerResultTtlInSeconds and evaluated against each request's method ARN.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.routing import Map, MapAdapter, Rule
from werkzeug.serving import DechunkedInput

from meshanics_local.events import (
    ApiContext,
    HttpRequest,
    authorizer_request_event,
    forwarded_headers,
    method_arn,
    proxy_event,
)
from meshanics_local.template import TemplateError
from meshanics_local.workers import Invocation

log = logging.getLogger("meshanics_local.api")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
INTEGRATION_TIMEOUT = 29.0
INTERNAL_ERROR = b'{"message": "Internal server error"}'
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
_REMAPPED = frozenset(
    [
        "authorization",
        "www-authenticate",
        "proxy-authenticate",
        "server",
        "connection",
        "transfer-encoding",
        "upgrade",
        "via",
        "warn",
        "te",
        "trailer",
        "max-forwards",
        "expect",
        "host",
        "user-agent",
    ]
)
_REPLACED_REQUEST_HEADERS = frozenset({"transfer-encoding", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"})

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
ANY = "ANY"
_FUNCTION_URI = re.compile(r":lambda:path/[^/]+/functions/(.+?)/invocations$")

InvokeFunction = Callable[[str, dict[str, Any], float], Invocation]


# ------------------------------------------------------------------------------- the REST API
@dataclass(frozen=True)
class Authorizer:
    name: str
    function: str
    kind: str  # "REQUEST"
    identity_sources: tuple[str, ...]  # e.g. method.request.header.Authorization
    ttl_seconds: int = 300


@dataclass(frozen=True)
class Route:
    resource_path: str
    method: str
    function: str | None  # logical id of the proxied function (None: an integration not played locally)
    authorizer: str | None = None
    integration: str = "aws_proxy"


@dataclass(frozen=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


@dataclass
class RestApi:
    logical_id: str
    api_id: str
    stage: str
    routes: dict[str, dict[str, Route]]
    authorizers: dict[str, Authorizer] = field(default_factory=dict)
    binary_media_types: tuple[str, ...] = ()
    gateway_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    _urls: MapAdapter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rules = [Rule(re.sub(r"\{(\w+)(\+?)\}", _converter, p), endpoint=p) for p in self.routes]
        self._urls = Map(rules, strict_slashes=False, merge_slashes=False).bind("local")

    def resource_for(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The resource a request path addresses, with its path parameters."""
        try:
            resource, parameters = self._urls.match(path.rstrip("/") or "/")
        except NotFound:
            return None
        return str(resource), dict(parameters)

    def match(self, method: str, path: str) -> Match | None:
        """The route for a request, or None (API Gateway answers MISSING_AUTHENTICATION_TOKEN)."""
        found = self.resource_for(path)
        if found is None:
            return None
        resource_path, parameters = found
        methods = self.routes[resource_path]
        route = methods.get(method.upper()) or methods.get(ANY)
        return Match(route, parameters) if route else None

    def is_binary(self, content_type: str | None) -> bool:
        return any(_media_type_matches(pattern, content_type) for pattern in self.binary_media_types)


def _converter(match: re.Match[str]) -> str:
    return f"<path:{match.group(1)}>" if match.group(2) else f"<{match.group(1)}>"


def _media_type_matches(pattern: str, content_type: str | None) -> bool:
    if pattern == "*/*":
        return True
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, sub = pattern.lower().partition("/")
    media_kind, _, media_sub = media.partition("/")
    return kind in ("*", media_kind) and sub in ("*", media_sub)


# ------------------------------------------------------------------------------- reading the body
def function_from_uri(uri: str, arn_to_function: Callable[[str], str | None]) -> str | None:
    match = _FUNCTION_URI.search(uri)
    return arn_to_function(match.group(1)) if match else None


def read_authorizers(body: Mapping[str, Any], arn_to_function: Callable[[str], str | None]) -> dict[str, Authorizer]:
    authorizers: dict[str, Authorizer] = {}
    schemes = (body.get("components") or {}).get("securitySchemes") or body.get("securityDefinitions") or {}
    for name, scheme in schemes.items():
        config = scheme.get("x-amazon-apigateway-authorizer")
        if not config:
            continue
        kind = str(config.get("type", "token")).upper()
        function = function_from_uri(str(config.get("authorizerUri", "")), arn_to_function)
        if function is None:
            continue
        if kind != "REQUEST":
            raise TemplateError(f"authorizer {name}: {kind} authorizers are not played locally (REQUEST are)")
        sources = config.get("identitySource") or f"method.request.header.{scheme.get('name', 'Authorization')}"
        identity = tuple(source.strip() for source in str(sources).split(",") if source.strip())
        ttl = int(config.get("authorizerResultTtlInSeconds", 300))
        authorizers[name] = Authorizer(name, function, kind, identity, ttl)
    return authorizers


def read_routes(
    body: Mapping[str, Any], authorizers: Mapping[str, Authorizer], arn_to_function: Callable[[str], str | None]
) -> dict[str, dict[str, Route]]:
    default_security = body.get("security")
    routes: dict[str, dict[str, Route]] = {}
    for path, item in (body.get("paths") or {}).items():
        for key, operation in item.items():
            method = ANY if key == "x-amazon-apigateway-any-method" else key.upper()
            if method != ANY and method not in HTTP_METHODS:
                continue
            integration = operation.get("x-amazon-apigateway-integration") or {}
            kind = str(integration.get("type", "")).lower()
            function = function_from_uri(str(integration.get("uri", "")), arn_to_function) if kind else None
            security = operation.get("security", default_security) or []
            authorizer = next((name for entry in security for name in entry if name in authorizers), None)
            routes.setdefault(path, {})[method] = Route(path, method, function, authorizer, kind or "none")
    return routes


def read_rest_api(
    logical_id: str,
    api_id: str,
    stage: str,
    properties: Mapping[str, Any],
    arn_to_function: Callable[[str], str | None],
) -> RestApi:
    """A RestApi from its resolved CloudFormation properties (the Body SAM generated)."""
    body = properties.get("Body") or {}
    authorizers = read_authorizers(body, arn_to_function)
    binary = body.get("x-amazon-apigateway-binary-media-types") or [
        t.replace("~1", "/") for t in properties.get("BinaryMediaTypes", [])
    ]
    routes = read_routes(body, authorizers, arn_to_function)
    responses = dict(body.get("x-amazon-apigateway-gateway-responses") or {})
    return RestApi(logical_id, api_id, stage, routes, authorizers, tuple(binary), responses)


# ------------------------------------------------------------------------------- responses
@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def proxy_response(result: Any) -> Response | None:
    """The HTTP response of a proxy integration result, or None if the result is malformed."""
    if not isinstance(result, Mapping):
        return None
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    headers = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    body = result.get("body")
    if not isinstance(headers, Mapping) or not isinstance(multi, Mapping) or not isinstance(body, str | None):
        return None
    if any(isinstance(v, dict | list) for v in headers.values()) or any(
        not isinstance(v, list) for v in multi.values()
    ):
        return None
    merged: list[tuple[str, str]] = [(str(k), _text(v)) for k, values in multi.items() for v in values]
    merged += [(str(k), _text(v)) for k, v in headers.items() if k not in multi]
    if body is None:
        data = b""
    elif result.get("isBase64Encoded") is True:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        data = body.encode("utf-8")
    return Response(status, merged, data)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _outgoing_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in _REMAPPED:
            out.append((f"x-amzn-Remapped-{name}", value))
        elif lowered not in _HOP_BY_HOP:
            out.append((name, value))
    return out


# ------------------------------------------------------------------------------- gateway responses
# type -> (default status, default message, x-amzn-ErrorType)
RESPONSE_TYPES: dict[str, tuple[int, str, str]] = {
    "ACCESS_DENIED": (403, "User is not authorized to access this resource", "AccessDeniedException"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error", "ApiConfigurationException"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, "Internal server error", "AuthorizerConfigurationException"),
    "AUTHORIZER_FAILURE": (500, "Internal server error", "AuthorizerFailureException"),
    "BAD_REQUEST_PARAMETERS": (400, "Bad request", "BadRequestException"),
    "BAD_REQUEST_BODY": (400, "Bad request", "BadRequestException"),
    "DEFAULT_4XX": (400, "Bad request", "BadRequestException"),
    "DEFAULT_5XX": (500, "Internal server error", "InternalServerErrorException"),
    "EXPIRED_TOKEN": (403, "Token expired", "ExpiredTokenException"),
    "INTEGRATION_FAILURE": (504, "Internal server error", "IntegrationFailureException"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out", "IntegrationTimeoutException"),
    "INVALID_API_KEY": (403, "Forbidden", "InvalidApiKeyException"),
    "INVALID_SIGNATURE": (403, "Forbidden", "InvalidSignatureException"),
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token", "MissingAuthenticationTokenException"),
    "QUOTA_EXCEEDED": (429, "Limit Exceeded", "LimitExceededException"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long", "RequestTooLargeException"),
    "RESOURCE_NOT_FOUND": (404, "Not Found", "ResourceNotFoundException"),
    "THROTTLED": (429, "Too Many Requests", "TooManyRequestsException"),
    "UNAUTHORIZED": (401, "Unauthorized", "UnauthorizedException"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type", "UnsupportedMediaTypeException"),
    "WAF_FILTERED": (403, "Forbidden", "WafFilteredException"),
}
DEFAULT_TEMPLATE = '{"message":$context.error.messageString}'
_VARIABLE = re.compile(r"\$(?:\{context\.([A-Za-z0-9_.]+)\}|context\.([A-Za-z0-9_.]*[A-Za-z0-9_]))")


def render(
    response_type: str,
    configured: Mapping[str, Mapping[str, Any]],
    *,
    message: str | None = None,
    request_headers: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
) -> Response:
    """The gateway's answer of `response_type` under the API's configuration."""
    default_status, default_message, error_type = RESPONSE_TYPES[response_type]
    message = default_message if message is None else message
    config = configured.get(response_type)
    if config is None:
        config = configured.get("DEFAULT_5XX" if default_status >= 500 else "DEFAULT_4XX") or {}
    status = int(config.get("statusCode") or default_status)
    lowered = {k.lower(): v for k, v in (request_headers or {}).items()}
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}
    for name, source in (config.get("responseParameters") or {}).items():
        value = str(source)
        if value.startswith("method.request.header."):
            value = lowered.get(value.removeprefix("method.request.header.").lower(), "")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        else:
            continue  # other sources (context variables, stage variables) are not played
        if name.startswith("gatewayresponse.header.") and value:
            headers[name.removeprefix("gatewayresponse.header.")] = value
    templates = config.get("responseTemplates") or {}
    template = templates.get("application/json") or next(iter(templates.values()), None) or DEFAULT_TEMPLATE
    variables = {
        "error.messageString": json.dumps(message),
        "error.message": message,
        "error.responseType": response_type,
        **{k: "" if v is None else str(v) for k, v in (context or {}).items()},
    }
    body = _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), template)
    return Response(status, list(headers.items()), body.encode("utf-8"))


# ------------------------------------------------------------------------------- authorizers
@dataclass(frozen=True)
class Decision:
    """`response_type` is None when the request may proceed, else the gateway response to give."""

    response_type: str | None
    principal_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    latency_ms: int = 0


@dataclass(frozen=True)
class _Result:
    principal_id: str
    policy: Mapping[str, Any]
    context: dict[str, Any]


def evaluate(policy: Mapping[str, Any], method: str) -> str:
    """'allow', 'deny' (explicit) or 'implicit' (no statement allows it), by moto's IAM evaluation."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    try:
        verdict = IAMPolicy(json.dumps(policy)).is_action_permitted("execute-api:Invoke", method)
    except (KeyError, TypeError, AttributeError, ValueError):
        return "implicit"
    return {PermissionResult.PERMITTED: "allow", PermissionResult.DENIED: "deny"}.get(verdict, "implicit")


def identity(
    authorizer: Authorizer, request: HttpRequest, path_parameters: Mapping[str, str]
) -> tuple[str, ...] | None:
    """The identity-source values, or None if one is missing."""
    sources: dict[str, Callable[[str], str | None]] = {
        "header": request.header,
        "querystring": dict(request.query).get,
        "path": path_parameters.get,
    }
    values = []
    for source in authorizer.identity_sources:
        kind, _, name = source.removeprefix("method.request.").partition(".")
        value = sources[kind](name) if kind in sources else ""  # stage variables, context: not played
        if not value:
            return None
        values.append(value)
    return tuple(values)


def _check_result(result: Any) -> _Result | None:
    if not isinstance(result, Mapping):
        return None
    principal, policy, context = result.get("principalId"), result.get("policyDocument"), result.get("context") or {}
    if principal is None or not isinstance(policy, Mapping) or not isinstance(context, Mapping):
        return None
    if any(isinstance(v, (dict, list)) for v in context.values()):
        return None
    return _Result(str(principal), policy, dict(context))


class AuthorizerCache(dict[tuple[str, tuple[str, ...]], tuple[float, _Result]]):
    """Authorizer results by authorizer name and identity-source values, with their expiry (monotonic)."""

    def fresh(self, name: str, key: tuple[str, ...]) -> _Result | None:
        entry = self.get((name, key))
        return entry[1] if entry is not None and entry[0] >= time.monotonic() else None


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
    if key is None and authorizer.ttl_seconds > 0:
        return Decision("UNAUTHORIZED")
    result = cache.fresh(authorizer.name, key) if key is not None else None
    latency = 0
    if result is None:
        started = time.perf_counter()
        invocation = invoke(authorizer_request_event(request, api, region=region))
        latency = round((time.perf_counter() - started) * 1000)
        if not invocation.ok:
            if invocation.error_message == "Unauthorized":
                return Decision("UNAUTHORIZED")
            return Decision("AUTHORIZER_FAILURE", message="Internal server error")
        result = _check_result(invocation.result)
        if result is None:
            return Decision("AUTHORIZER_CONFIGURATION_ERROR", message="Internal server error")
        if key is not None and authorizer.ttl_seconds > 0:
            cache[(authorizer.name, key)] = (time.monotonic() + authorizer.ttl_seconds, result)
    verdict = evaluate(result.policy, method_arn(region, api, request.method, request.path))
    if verdict != "allow":
        explicit = " with an explicit deny" if verdict == "deny" else ""
        message = f"User is not authorized to access this resource{explicit}"
        return Decision("ACCESS_DENIED", principal_id=result.principal_id, message=message)
    return Decision(None, principal_id=result.principal_id, context=result.context, latency_ms=latency)


# ------------------------------------------------------------------------------- the front
class ApiFront:
    def __init__(
        self,
        api: RestApi,
        invoke: InvokeFunction,
        *,
        port: int,
        region: str,
        function_timeouts: Mapping[str, float],
    ) -> None:
        self.api = api
        self._invoke = invoke
        self._region = region
        self._timeouts = function_timeouts
        self.authorizer_cache = AuthorizerCache()
        handler = type("Handler", (_Handler,), {"front": self})
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as error:
            raise RuntimeError(f"the API front cannot listen on 127.0.0.1:{port}: {error}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="api-front", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- one request ------------------------------------------------------------------------------
    def gateway(
        self, response_type: str, request: HttpRequest, context: ApiContext, message: str | None = None
    ) -> Response:
        return render(
            response_type,
            self.api.gateway_responses,
            message=message,
            request_headers=dict(request.headers),
            context={
                "requestId": context.request_id,
                "stage": context.stage,
                "resourcePath": context.resource_path,
                "httpMethod": request.method,
                "apiId": context.api_id,
            },
        )

    def handle(self, request: HttpRequest, *, domain: str) -> Response:
        context = ApiContext(
            api_id=self.api.api_id,
            stage=self.api.stage,
            resource_path="",
            request_id=str(uuid.uuid4()),
            request_time=time.time(),
            domain_name=domain,
        )
        match = self.api.match(request.method, request.path)
        if match is None:
            return self.gateway("MISSING_AUTHENTICATION_TOKEN", request, context)
        route = match.route
        context = replace(context, resource_path=route.resource_path, path_parameters=match.path_parameters)
        if route.function is None or route.integration != "aws_proxy":
            return self.gateway("API_CONFIGURATION_ERROR", request, context)
        authorizer_context: dict[str, Any] | None = None
        if route.authorizer is not None:
            authorizer = self.api.authorizers[route.authorizer]
            decision = authorize(
                authorizer,
                request,
                context,
                region=self._region,
                invoke=lambda event: self._invoke(authorizer.function, event, INTEGRATION_TIMEOUT),
                cache=self.authorizer_cache,
            )
            if decision.response_type is not None:
                return self.gateway(decision.response_type, request, context, decision.message)
            authorizer_context = {
                **decision.context,
                "principalId": decision.principal_id,
                "integrationLatency": decision.latency_ms,
            }
        event = proxy_event(
            request, context, authorizer=authorizer_context, binary=self.api.is_binary(request.header("Content-Type"))
        )
        if len(json.dumps(event)) > MAX_EVENT_BYTES:
            return self.gateway("REQUEST_TOO_LARGE", request, context)
        invocation = self._invoke(route.function, event, INTEGRATION_TIMEOUT)
        request_header = [("x-amzn-RequestId", context.request_id)]
        if not invocation.ok:
            timed_out = (invocation.error or {}).get("errorType") == "Sandbox.Timedout"
            if timed_out and self._timeouts.get(route.function, 0) > INTEGRATION_TIMEOUT:
                return self.gateway("INTEGRATION_TIMEOUT", request, context)
            log.info("%s %s: function error: %s", request.method, request.path, invocation.error_message)
            return Response(502, [("Content-Type", "application/json"), *request_header], INTERNAL_ERROR)
        response = proxy_response(invocation.result)
        if response is None:
            log.info("%s %s: malformed Lambda proxy response", request.method, request.path)
            return Response(502, [("Content-Type", "application/json"), *request_header], INTERNAL_ERROR)
        head_length = response.header("Content-Length") if request.method == "HEAD" else None
        headers = _outgoing_headers(response.headers) + request_header
        if head_length is not None:
            headers.append(("Content-Length", head_length))
        if response.header("Content-Type") is None:
            headers.append(("Content-Type", "application/json"))
        return Response(response.status, headers, response.body)


class _Handler(BaseHTTPRequestHandler):
    front: ApiFront
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY a kept-alive client waits
    # out its delayed ACK (about 40 ms) on every response.
    disable_nagle_algorithm = True
    server_version = "meshanics-local"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _read_body(self) -> bytes | None:
        """The request body (chunked transfer encoding decoded by werkzeug), or None if it exceeds API
        Gateway's limit."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = DechunkedInput(self.rfile).read(MAX_REQUEST_BYTES + 1) or b""  # type: ignore[arg-type]
            return body if len(body) <= MAX_REQUEST_BYTES else None
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length <= MAX_REQUEST_BYTES else None

    def _serve(self) -> None:
        started = time.perf_counter()
        body = self._read_body()
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=[
                *((k, v) for k, v in self.headers.items() if k.lower() not in _REPLACED_REQUEST_HEADERS),
                *forwarded_headers(self.client_address[0], self.front.port),
            ],
            body=body or b"",
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        domain = self.headers.get("Host") or f"127.0.0.1:{self.front.port}"
        if body is None:
            self.close_connection = True
            response = self.front.gateway(
                "REQUEST_TOO_LARGE", request, ApiContext(self.front.api.api_id, self.front.api.stage, "")
            )
        else:
            try:
                response = self.front.handle(request, domain=domain)
            except Exception:
                log.exception("%s %s failed in the local API front", self.command, self.path)
                response = Response(500, [("Content-Type", "application/json")], INTERNAL_ERROR)
        self._write(response)
        log.info(
            "%s %s -> %d (%d bytes, %.0f ms)",
            self.command,
            self.path,
            response.status,
            len(response.body),
            (time.perf_counter() - started) * 1000,
        )

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        has_length = False
        for name, value in response.headers:
            has_length = has_length or name.lower() == "content-length"
            self.send_header(name, value)
        if not has_length:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

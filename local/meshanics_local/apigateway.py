"""The API front: API Gateway (REST API, Lambda proxy integration, payload format 1.0) on loopback.

Serves the template's REST API at the root (no stage prefix). For each request: match the route
(none: MISSING_AUTHENTICATION_TOKEN), run the route's Lambda authorizer, build the proxy event
(base64 body when the Content-Type matches a binary media type), invoke the function, and turn its
result into the HTTP response. A function error or a malformed result is a 502
`{"message": "Internal server error"}`, as API Gateway answers. Response headers that API Gateway
remaps for REST APIs (WWW-Authenticate, Authorization, ...) arrive as `x-amzn-Remapped-<name>`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from meshanics_local import gatewayresponses
from meshanics_local.authorizers import AuthorizerCache, authorize
from meshanics_local.events import ApiContext, HttpRequest, forwarded_headers, proxy_event
from meshanics_local.routes import RestApi
from meshanics_local.workers import Invocation

log = logging.getLogger("meshanics_local.api")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
INTEGRATION_TIMEOUT = 29.0
INTERNAL_ERROR = b'{"message": "Internal server error"}'
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
_REMAPPED = frozenset(
    {
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
    }
)

_REPLACED_REQUEST_HEADERS = frozenset({"transfer-encoding", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"})

InvokeFunction = Callable[[str, dict[str, Any], float], Invocation]


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
        rendered = gatewayresponses.render(
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
        return Response(rendered.status, list(rendered.headers.items()), rendered.body)

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
        context = ApiContext(
            api_id=context.api_id,
            stage=context.stage,
            resource_path=route.resource_path,
            path_parameters=match.path_parameters,
            request_id=context.request_id,
            request_time=context.request_time,
            domain_name=domain,
        )
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
            if not decision.allowed:
                assert decision.response_type is not None
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
        """The request body, or None if it exceeds API Gateway's limit."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(chunks)
                if len(chunks) + size > MAX_REQUEST_BYTES:
                    return None
                chunks += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None
        remaining, parts = length, []
        while remaining > 0:
            part = self.rfile.read(min(remaining, 1 << 20))
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)

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
        if self.command != "HEAD" and response.body:
            view = memoryview(response.body)
            for start in range(0, len(view), 1 << 16):
                self.wfile.write(view[start : start + (1 << 16)])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

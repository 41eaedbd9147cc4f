"""The upstream client: reads manifests and blobs by digest from a tenant's registry, and only reads.

Every connection goes through the egress guard with the connection's policy: the upstream itself,
the token realm its challenge names and every redirect hop (all tenant-controlled URLs). Redirects
are followed here, hop by hop (at most MAX_REDIRECTS), and the upstream credentials are sent only
to the upstream's own origin, never to a storage host a blob redirect points at.

Authentication follows the distribution spec: an unauthenticated request is answered 401 with a
`WWW-Authenticate` challenge; `Basic` is answered with the basic credentials, `Bearer` by asking
the challenge's realm for a token for the repository's pull scope (basic credentials go to the
realm as Basic; a token is exchanged as an OAuth2 refresh token). Tokens are cached per
(connection, credentials version, realm, service, scope) until shortly before they expire, and the
scheme an upstream asked for is remembered so later requests authenticate up front.

Upstream failures become OciErrors: 401 -> UNAUTHORIZED, 403 -> DENIED (both 403: the device's own
key was fine, the connection's credentials were not), 404 -> *_UNKNOWN, 429 -> TOOMANYREQUESTS,
5xx, unreachable, too many redirects -> 502 UNAVAILABLE, timeouts -> 504 UNAVAILABLE, an address
the egress guard refuses -> 502 DENIED. Nothing waits longer than the request's deadline.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.response import BaseHTTPResponse

from meshanics import egress, untrusted
from meshanics.errors import EgressRefused
from meshanics.model import Credentials
from meshanics.registry.oci import MAX_MANIFEST_BYTES, UPSTREAM_ACCEPT, ErrorCode, Kind, OciError

MAX_REDIRECTS: Final = 5
MAX_ERROR_BODY: Final = 16 * 1024
MAX_TOKEN_RESPONSE: Final = 64 * 1024
DEFAULT_TOKEN_SECONDS: Final = 60
USER_AGENT: Final = "meshanics-registry-facade/1"
CHUNK: Final = 1024 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BEARER: Final = re.compile(r"[\x21-\x7e]+")  # visible ASCII: anything else cannot go into a header
_DIGITS: Final = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Upstream:
    """One approved connection, as the client needs it."""

    registry_id: str
    base_url: str
    policy: egress.EgressPolicy
    credentials: Credentials = field(repr=False)
    credentials_version: str = ""

    def url(self, repository: str, kind: Kind, digest: str) -> str:
        return f"{self.base_url}/v2/{repository}/{'manifests' if kind == 'manifest' else 'blobs'}/{digest}"


# -- WWW-Authenticate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: Mapping[str, str]


def parse_challenges(values: list[str]) -> list[Challenge]:
    """`WWW-Authenticate` values -> challenges (scheme lower-cased, parameter names lower-cased)."""
    challenges: list[Challenge] = []
    for header in values:
        text, i = header, 0
        scheme: str | None = None
        params: dict[str, str] = {}
        while i < len(text):
            while i < len(text) and text[i] in " \t,":
                i += 1
            match = _TOKEN.match(text, i)
            if match is None:
                break
            name, j = match.group(), match.end()
            k = j
            while k < len(text) and text[k] in " \t":
                k += 1
            if scheme is not None and k < len(text) and text[k] == "=":
                k += 1
                while k < len(text) and text[k] in " \t":
                    k += 1
                if k < len(text) and text[k] == '"':
                    value, k = _quoted(text, k)
                else:
                    end = k
                    while end < len(text) and text[end] not in ", \t":
                        end += 1
                    value, k = text[k:end], end
                params[name.lower()] = value
                i = k
                continue
            if scheme is not None:
                challenges.append(Challenge(scheme, params))
            scheme, params, i = name.lower(), {}, j
        if scheme is not None:
            challenges.append(Challenge(scheme, params))
    return challenges


def _quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i


# -- token cache --------------------------------------------------------------------------------
class TokenCache:
    """Bearer tokens until shortly before they expire; bounded, thread-safe, per process."""

    def __init__(self, *, size: int = 512, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, ...], tuple[float, str]] = OrderedDict()
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, ...], token: str, lifetime: float) -> None:
        # Renew before expiry: 10% of the lifetime, at least 5 s, never below 1 s of use.
        usable = max(1.0, lifetime - max(5.0, lifetime * 0.1))
        with self._lock:
            self._entries[key] = (self._clock() + usable, token)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def drop(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._entries.pop(key, None)


# -- responses ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FetchedManifest:
    body: bytes
    content_type: str | None


class BlobStream:
    """An upstream blob body, read in chunks within the deadline; close() releases the connection."""

    def __init__(self, response: BaseHTTPResponse, deadline: float, host: str) -> None:
        self._response = response
        self._deadline = deadline
        self._host = host
        self.length = _number(response.headers.get("Content-Length"))

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        while True:
            if time.monotonic() > self._deadline:
                raise _timeout(self._host)
            try:
                # read1: whatever has arrived (up to size), so a slow drip cannot outlive the deadline.
                chunk = self._response.read1(size)
            except ReadTimeoutError:
                raise _timeout(self._host) from None
            except (HTTPError, OSError) as error:
                raise _unreachable(self._host, error) from None
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        _discard(self._response)


def _timeout(host: str) -> OciError:
    return OciError("UNAVAILABLE", f"the upstream registry {host} did not answer in time", status=504)


def _unreachable(host: str, error: BaseException) -> OciError:
    reason = type(error).__name__
    return OciError("UNAVAILABLE", f"the upstream registry {host} is unreachable ({reason})", status=502)


def _discard(response: BaseHTTPResponse) -> None:
    """Give the connection back: drained if little is left, else closed (never read 50 MB to reuse it)."""
    remaining = getattr(response, "length_remaining", None)
    with contextlib.suppress(Exception):
        if remaining is not None and remaining <= MAX_ERROR_BODY:
            response.drain_conn()
        else:
            response.close()
    response.release_conn()


def _number(value: str | None) -> int | None:
    """A header's non-negative integer, or None: isdigit() also takes '²' and other digits int() refuses
    (or reads), and int() refuses more than 4,300 digits."""
    return int(value) if value and _DIGITS.fullmatch(value) else None


def _origin(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)
    except ValueError:  # a URL the upstream named (a redirect, a token realm): bad brackets, bad port
        raise OciError("UNAVAILABLE", "the upstream registry named a URL that does not parse", status=502) from None


# -- the client ---------------------------------------------------------------------------------
class UpstreamClient:
    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        tokens: TokenCache | None = None,
        pools: Callable[[egress.EgressPolicy], urllib3.PoolManager] = egress.pool_manager,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tokens = tokens or TokenCache()
        self._pools = pools
        self._schemes: dict[tuple[str, str], Challenge] = {}
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------------
    def manifest(self, up: Upstream, repository: str, digest: str, *, deadline: float) -> FetchedManifest:
        """The manifest's exact bytes (at most MAX_MANIFEST_BYTES) and the upstream's Content-Type."""
        response = self._open(up, "GET", repository, "manifest", digest, deadline=deadline)
        stream = BlobStream(response, deadline, _origin(up.base_url)[1])
        try:
            if stream.length is not None and stream.length > MAX_MANIFEST_BYTES:
                raise OciError("MANIFEST_INVALID", "the upstream manifest exceeds 4 MiB", status=502)
            body = bytearray()
            for chunk in stream.chunks(256 * 1024):
                body += chunk
                if len(body) > MAX_MANIFEST_BYTES:
                    raise OciError("MANIFEST_INVALID", "the upstream manifest exceeds 4 MiB", status=502)
        finally:
            stream.close()
        return FetchedManifest(bytes(body), response.headers.get("Content-Type"))

    def blob(self, up: Upstream, repository: str, digest: str, *, deadline: float) -> BlobStream:
        """The blob's body as a stream (the caller verifies and closes it)."""
        response = self._open(up, "GET", repository, "blob", digest, deadline=deadline)
        return BlobStream(response, deadline, _origin(up.base_url)[1])

    def head_blob(self, up: Upstream, repository: str, digest: str, *, deadline: float) -> int | None:
        """The blob's size as the upstream states it (None if it does not), or an OciError."""
        response = self._open(up, "HEAD", repository, "blob", digest, deadline=deadline)
        length = _number(response.headers.get("Content-Length"))
        _discard(response)
        return length

    # -- requests -------------------------------------------------------------------------------
    def _open(
        self, up: Upstream, method: str, repository: str, kind: Kind, digest: str, *, deadline: float
    ) -> BaseHTTPResponse:
        url = up.url(repository, kind, digest)
        scope = f"repository:{repository}:pull"
        headers = {"User-Agent": USER_AGENT}
        if kind == "manifest":
            headers["Accept"] = UPSTREAM_ACCEPT
        auth = self._known_auth(up, scope, deadline)
        response = self._send(up, method, url, headers | auth, deadline)
        if response.status == 401:
            challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
            _discard(response)
            auth = self._answer(up, challenges, scope, deadline, stale=auth)
            response = self._send(up, method, url, headers | auth, deadline)
        response = self._follow(up, method, url, response, headers, auth, deadline)
        if 200 <= response.status < 300:
            return response
        raise self._failure(up, response, kind, repository, digest)

    def _send(
        self,
        up: Upstream,
        method: str,
        url: str,
        headers: Mapping[str, str],
        deadline: float,
        body: bytes | None = None,
    ) -> BaseHTTPResponse:
        host = _origin(url)[1]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(host)
        timeout = urllib3.Timeout(
            connect=min(self._connect_timeout, remaining), read=min(self._read_timeout, remaining)
        )
        try:
            return self._pools(up.policy).request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=timeout,
                preload_content=False,
                redirect=False,
                retries=False,
            )
        except EgressRefused as refused:
            message = f"the egress policy refuses {host}: {refused.message}"
            raise OciError("DENIED", message, status=502, detail={"rule": refused.code}) from None
        except NewConnectionError as error:  # (a subclass of ConnectTimeoutError, so first)
            raise _unreachable(host, error) from None
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
            raise _timeout(host) from None
        except (HTTPError, OSError) as error:
            raise _unreachable(host, error) from None

    def _follow(
        self,
        up: Upstream,
        method: str,
        url: str,
        response: BaseHTTPResponse,
        headers: Mapping[str, str],
        auth: Mapping[str, str],
        deadline: float,
    ) -> BaseHTTPResponse:
        home = _origin(up.base_url)
        for _ in range(MAX_REDIRECTS):
            if response.status not in _REDIRECTS:
                return response
            location = response.headers.get("Location")
            _discard(response)
            if not location:
                raise OciError("UNAVAILABLE", "the upstream redirected without a Location", status=502)
            try:
                url = urljoin(url, location)
            except ValueError:
                raise OciError(
                    "UNAVAILABLE", "the upstream redirected to a URL that does not parse", status=502
                ) from None
            if response.status == 303:
                method = "GET" if method != "HEAD" else method
            # Credentials only ever go to the upstream's own origin (not to blob storage hosts).
            hop_headers = dict(headers) | (dict(auth) if _origin(url) == home else {})
            response = self._send(up, method, url, hop_headers, deadline)
        if response.status in _REDIRECTS:
            _discard(response)
            raise OciError("UNAVAILABLE", f"the upstream redirected more than {MAX_REDIRECTS} times", status=502)
        return response

    def _failure(self, up: Upstream, response: BaseHTTPResponse, kind: Kind, repository: str, digest: str) -> OciError:
        status = response.status
        host = _origin(up.base_url)[1]
        upstream_code = _error_code(response)
        retry_after = response.headers.get("Retry-After")
        _discard(response)
        detail = {"upstream_status": status}
        if status == 401:
            return OciError(
                "UNAUTHORIZED",
                f"the upstream registry {host} refused this connection's credentials; an operator must update them",
                status=403,
                detail=detail,
            )
        if status == 403:
            return OciError("DENIED", f"the upstream registry {host} denied access to {repository}", detail=detail)
        if status == 404:
            unknown: ErrorCode = "MANIFEST_UNKNOWN" if kind == "manifest" else "BLOB_UNKNOWN"
            code: ErrorCode = "NAME_UNKNOWN" if upstream_code == "NAME_UNKNOWN" else unknown
            return OciError(code, f"{repository}@{digest} is not known to the upstream registry", detail=detail)
        if status == 429:
            wait = _number(retry_after)
            headers = {"Retry-After": str(wait)} if wait is not None else {}
            return OciError(
                "TOOMANYREQUESTS", f"the upstream registry {host} is rate limiting; retry later", headers=headers
            )
        if status >= 500:
            return OciError(
                "UNAVAILABLE", f"the upstream registry {host} failed (HTTP {status})", status=502, detail=detail
            )
        message = f"the upstream registry {host} answered HTTP {status} unexpectedly"
        return OciError("UNAVAILABLE", message, status=502, detail=detail)

    # -- authentication -------------------------------------------------------------------------
    def _scheme_key(self, up: Upstream) -> tuple[str, str]:
        return (up.registry_id, up.credentials_version)

    def _known_auth(self, up: Upstream, scope: str, deadline: float) -> dict[str, str]:
        """Authorization to send up front: what this upstream asked for before, if anything."""
        with self._lock:
            known = self._schemes.get(self._scheme_key(up))
        if known is None:
            if up.credentials.auth_type == "token":
                return {"Authorization": f"Bearer {up.credentials.secret}"}
            return {}
        if known.scheme == "basic":
            return self._basic(up)
        return {"Authorization": f"Bearer {self._token(up, known, scope, deadline, fresh=False)}"}

    def _answer(
        self, up: Upstream, challenges: list[Challenge], scope: str, deadline: float, *, stale: Mapping[str, str]
    ) -> dict[str, str]:
        """Authorization answering the upstream's challenge (a rejected cached token is renewed)."""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        chosen = bearer or basic
        if chosen is None:
            return dict(stale)  # no usable challenge: the retry fails and reports 401
        with self._lock:
            self._schemes[self._scheme_key(up)] = chosen
        if chosen.scheme == "basic":
            return self._basic(up)
        return {"Authorization": f"Bearer {self._token(up, chosen, scope, deadline, fresh=True)}"}

    def _basic(self, up: Upstream) -> dict[str, str]:
        creds = up.credentials
        if creds.auth_type != "basic":
            return {"Authorization": f"Bearer {creds.secret}"}
        raw = f"{creds.username}:{creds.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    def _token(self, up: Upstream, challenge: Challenge, scope: str, deadline: float, *, fresh: bool) -> str:
        realm = challenge.params["realm"]
        service = challenge.params.get("service", "")
        wanted = (challenge.params.get("scope") or scope) if fresh else scope
        key = (up.registry_id, up.credentials_version, realm, service, wanted)
        if fresh:
            self._tokens.drop(key)
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        token, lifetime = self._fetch_token(up, realm, service, wanted, deadline)
        self._tokens.put(key, token, lifetime)
        return token

    def _fetch_token(self, up: Upstream, realm: str, service: str, scope: str, deadline: float) -> tuple[str, float]:
        """Ask the realm (a tenant-controlled URL, so through the egress guard) for a pull token."""
        creds = up.credentials
        host = _origin(realm)[1] if "://" in realm else realm
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if creds.auth_type == "basic":
            sep = "&" if "?" in realm else "?"
            response = self._send(up, "GET", f"{realm}{sep}{urlencode(query)}", headers | self._basic(up), deadline)
        else:
            form = urlencode(
                query | {"grant_type": "refresh_token", "refresh_token": creds.secret, "client_id": "meshanics"}
            )
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = self._send(up, "POST", realm, headers, deadline, body=form.encode())
        try:
            if response.status in (401, 403):
                raise OciError(
                    "UNAUTHORIZED",
                    f"the token service {host} refused this connection's credentials; an operator must update them",
                    status=403,
                    detail={"upstream_status": response.status},
                )
            if response.status == 429:
                raise OciError("TOOMANYREQUESTS", f"the token service {host} is rate limiting; retry later")
            if response.status != 200:
                raise OciError(
                    "UNAVAILABLE",
                    f"the token service {host} answered HTTP {response.status}",
                    status=502,
                    detail={"upstream_status": response.status},
                )
            raw = response.read(MAX_TOKEN_RESPONSE + 1, decode_content=True)
        except (HTTPError, OSError) as error:
            raise _unreachable(host, error) from None
        finally:
            _discard(response)
        return _token_from(raw, host)


def _token_from(raw: bytes, host: str) -> tuple[str, float]:
    invalid = OciError("UNAUTHORIZED", f"the token service {host} answered without a usable token", status=502)
    if len(raw) > MAX_TOKEN_RESPONSE:
        raise invalid
    try:
        document: Any = untrusted.loads(raw)
    except untrusted.Unparseable:
        raise invalid from None
    if not isinstance(document, dict):
        raise invalid
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not _BEARER.fullmatch(token):
        raise invalid
    lifetime = document.get("expires_in", DEFAULT_TOKEN_SECONDS)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_SECONDS
    return token, float(min(lifetime, 24 * 3600))


def _error_code(response: BaseHTTPResponse) -> str | None:
    """The first OCI error code of an upstream error body, if it has one."""
    try:
        raw = response.read(MAX_ERROR_BODY, decode_content=True)
        document = untrusted.loads(raw) if raw else None
    except (HTTPError, OSError, ValueError):  # untrusted.Unparseable is a ValueError
        return None
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return code if isinstance(code, str) else None
    return None

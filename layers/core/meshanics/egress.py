"""The egress guard: SSRF protection for every outbound HTTP connection the platform makes.

Webhook deliveries to tenant URLs, registry upstream fetches, token realms and redirect hops all
go through :class:`GuardedPoolManager`. Every *new* connection resolves the host, checks every
address it resolves to against an explicit table of refused networks (fail closed if any one is
refused) and then connects only to an address that was checked, so DNS rebinding between a check
and the connect cannot reach an internal address. TLS still verifies the certificate against the
original hostname (SNI and hostname check use the name; only the socket destination is the IP).

Refusals come in two tiers: always refused (metadata, link-local, multicast, reserved, ...) and
private (loopback, RFC 1918, CGNAT, unique-local), which an endpoint may opt into with
``allow_private_network``. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64,
6to4, Teredo) are unwrapped and the embedded address is checked with the same table. The table is
explicit on purpose: ``ipaddress``'s ``is_global``/``is_private`` misclassify several of these
forms on CPython 3.11.

Evaluated and rejected: requests-hardened (it checks only the first resolved address, relies on
``is_private``, unwraps only IPv4-mapped, and has no tier that allows private networks while still
refusing link-local/metadata).

Import cost matters at cold start: only the standard library and urllib3 are imported here.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.response import BaseHTTPResponse

from meshanics.errors import EgressRefused

__all__ = [
    "RULES",
    "EgressPolicy",
    "GuardedHTTPConnection",
    "GuardedHTTPConnectionPool",
    "GuardedHTTPSConnection",
    "GuardedHTTPSConnectionPool",
    "GuardedPoolManager",
    "RequestDeadline",
    "Resolver",
    "Rule",
    "Target",
    "Tier",
    "check_address",
    "parse_target",
    "pool_manager",
    "refusal_for",
    "request_deadline",
    "resolve_checked",
    "system_resolver",
    "validate_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the IP address strings the host resolves to."""


@dataclass(frozen=True)
class EgressPolicy:
    """What an outbound connection may reach.

    ``allow_private_network`` opts in to the private tier (loopback, RFC 1918, CGNAT,
    unique-local); the always-refused tier stays refused. ``require_https`` refuses plain
    ``http`` unless the endpoint opted in to private networks.
    """

    allow_private_network: bool = False
    require_https: bool = False


class Tier(enum.Enum):
    ALWAYS = "always"
    PRIVATE = "private"


@dataclass(frozen=True)
class Rule:
    """One refused network: `name` is the stable rule name used in the error code."""

    name: str
    tier: Tier
    network: IPNetwork
    description: str

    @property
    def code(self) -> str:
        return f"egress.{self.name}"


def _rule(name: str, tier: Tier, network: str, description: str) -> Rule:
    return Rule(name, tier, ipaddress.ip_network(network), description)


_A = Tier.ALWAYS
_P = Tier.PRIVATE
_METADATA = "a cloud metadata address"

# First match wins, so the specific metadata addresses come before the ranges that contain them.
_V4_RULES: Final[tuple[Rule, ...]] = (
    _rule("metadata", _A, "169.254.169.254/32", _METADATA),
    _rule("metadata", _A, "169.254.170.2/32", _METADATA),
    _rule("metadata", _A, "169.254.169.123/32", _METADATA),
    _rule("metadata", _A, "100.100.100.200/32", _METADATA),
    _rule("metadata", _A, "168.63.129.16/32", _METADATA),
    _rule("unspecified", _A, "0.0.0.0/8", 'in the unspecified "this network" range 0.0.0.0/8'),
    _rule("link_local", _A, "169.254.0.0/16", "a link-local address"),
    _rule("multicast", _A, "224.0.0.0/4", "a multicast address"),
    _rule("reserved", _A, "255.255.255.255/32", "the limited broadcast address"),
    _rule("reserved", _A, "240.0.0.0/4", "in the reserved range 240.0.0.0/4"),
    _rule("documentation", _A, "192.0.2.0/24", "in a documentation range (TEST-NET-1)"),
    _rule("documentation", _A, "198.51.100.0/24", "in a documentation range (TEST-NET-2)"),
    _rule("documentation", _A, "203.0.113.0/24", "in a documentation range (TEST-NET-3)"),
    _rule("benchmarking", _A, "198.18.0.0/15", "in the benchmarking range 198.18.0.0/15"),
    _rule("protocol_assignment", _A, "192.0.0.0/24", "in the IETF protocol assignments range 192.0.0.0/24"),
    _rule("relay_anycast", _A, "192.88.99.0/24", "in the deprecated 6to4 relay anycast range"),
    _rule("loopback", _P, "127.0.0.0/8", "a loopback address"),
    _rule("private", _P, "10.0.0.0/8", "in a private range (RFC 1918)"),
    _rule("private", _P, "172.16.0.0/12", "in a private range (RFC 1918)"),
    _rule("private", _P, "192.168.0.0/16", "in a private range (RFC 1918)"),
    _rule("cgnat", _P, "100.64.0.0/10", "in the carrier-grade NAT range (RFC 6598)"),
)

_V6_RULES: Final[tuple[Rule, ...]] = (
    _rule("metadata", _A, "fd00:ec2::254/128", _METADATA),
    _rule("metadata", _A, "fd00:ec2::123/128", _METADATA),
    _rule("unspecified", _A, "::/128", "the unspecified address"),
    _rule("loopback", _P, "::1/128", "a loopback address"),
    _rule("link_local", _A, "fe80::/10", "a link-local address"),
    _rule("multicast", _A, "ff00::/8", "a multicast address"),
    _rule("documentation", _A, "2001:db8::/32", "in a documentation range"),
    _rule("documentation", _A, "3fff::/20", "in a documentation range"),
    _rule("benchmarking", _A, "2001:2::/48", "in the benchmarking range 2001:2::/48"),
    _rule("discard", _A, "100::/64", "in the discard-only range 100::/64"),
    _rule("orchid", _A, "2001:10::/28", "an ORCHID address"),
    _rule("orchid", _A, "2001:20::/28", "an ORCHIDv2 address"),
    _rule("srv6", _A, "5f00::/16", "in the SRv6 SID range 5f00::/16"),
    _rule("local_nat64", _A, "64:ff9b:1::/48", "in the local-use NAT64 range 64:ff9b:1::/48"),
    _rule("site_local", _A, "fec0::/10", "a deprecated site-local address"),
    _rule("unique_local", _P, "fc00::/7", "a unique-local address (RFC 4193)"),
)

RULES: Final[tuple[Rule, ...]] = _V4_RULES + _V6_RULES
"""Every refused network, in match order (IPv4 then IPv6)."""

_MASK32: Final = 0xFFFFFFFF
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_TRANSLATED: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address embeds, each with the name of the form."""
    value = int(ip)
    low = value & _MASK32
    if ip in _MAPPED:
        return [("IPv4-mapped", ipaddress.IPv4Address(low))]
    if ip in _TRANSLATED:
        return [("IPv4-translated", ipaddress.IPv4Address(low))]
    if ip in _COMPATIBLE:
        # :: and ::1 are the unspecified and loopback addresses themselves (matched by the table).
        return [("IPv4-compatible", ipaddress.IPv4Address(low))] if value > 1 else []
    if ip in _NAT64:
        return [("NAT64", ipaddress.IPv4Address(low))]
    if ip in _SIX_TO_FOUR:
        return [("6to4", ipaddress.IPv4Address((value >> 80) & _MASK32))]
    if ip in _TEREDO:
        return [
            ("Teredo server", ipaddress.IPv4Address((value >> 64) & _MASK32)),
            ("Teredo client", ipaddress.IPv4Address(~low & _MASK32)),
        ]
    return []


def _match(ip: IPAddress) -> Rule | None:
    rules = _V4_RULES if ip.version == 4 else _V6_RULES
    for rule in rules:
        if ip in rule.network:
            return rule
    return None


@dataclass(frozen=True)
class _Finding:
    rule: Rule
    via: tuple[str, ipaddress.IPv4Address] | None  # (form, embedded IPv4) when unwrapped


def _findings(ip: IPAddress) -> list[_Finding]:
    found: list[_Finding] = []
    direct = _match(ip)
    if direct is not None:
        found.append(_Finding(direct, None))
    if isinstance(ip, ipaddress.IPv6Address):
        for form, inner in _embedded_ipv4(ip):
            rule = _match(inner)
            if rule is not None:
                found.append(_Finding(rule, (form, inner)))
    return found


def _parse_ip(address: str | IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        # A zone id is only meaningful for IPv6 (IPv6Address keeps it as scope_id).
        return ipaddress.IPv6Address(text)
    return ipaddress.ip_address(text)


def _message(ip: IPAddress, finding: _Finding) -> str:
    rule = finding.rule
    if finding.via is None:
        what = f"address {ip} is {rule.description}"
    else:
        form, inner = finding.via
        what = f"address {ip} embeds {inner} ({form}), which is {rule.description}"
    if rule.tier is Tier.PRIVATE:
        return f"{what}; set allow_private_network to deliver to it"
    return f"{what}; it is always refused"


def refusal_for(
    address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, policy: EgressPolicy
) -> EgressRefused | None:
    """The refusal for this address under this policy, or None if allowed.

    Accepts canonical IPv4/IPv6 strings (including zone ids like ``fe80::1%eth0`` and bracketed
    ``[::1]``) or ``ipaddress`` objects. Anything that is not an IP address is refused.
    """
    try:
        ip = _parse_ip(address)
    except ValueError:
        return EgressRefused(f"{address!r} is not an IP address", code="egress.invalid_address")
    refused = [f for f in _findings(ip) if f.rule.tier is Tier.ALWAYS or not policy.allow_private_network]
    if not refused:
        return None
    chosen = next((f for f in refused if f.rule.tier is Tier.ALWAYS), refused[0])
    return EgressRefused(_message(ip, chosen), code=chosen.rule.code)


def check_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, policy: EgressPolicy) -> None:
    """Raise EgressRefused if the policy refuses this address."""
    refusal = refusal_for(address, policy)
    if refusal is not None:
        raise refusal


@dataclass(frozen=True)
class Target:
    """Where a URL points: scheme, host (name or IP literal, no brackets, lower-cased) and port."""

    scheme: str
    host: str
    port: int


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_HOSTNAME_RE: Final = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*\.?")
_UNSAFE_CHARS_RE: Final = re.compile(r"[\x00-\x20\x7f]")


def _refuse(message: str, rule: str) -> EgressRefused:
    return EgressRefused(message, code=f"egress.{rule}")


def _parse_host(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise _refuse(f"host {host!r} is not a valid IPv6 literal", "host")
        literal = host[1:-1].lower()
        address, _, zone = literal.partition("%")
        if zone.startswith("25"):  # the zone id separator is percent-encoded in URLs (RFC 6874)
            zone = zone[2:]
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise _refuse(f"host {host!r} is not a valid IPv6 literal", "host") from None
        if "%" in literal and not zone:
            raise _refuse(f"host {host!r} has an empty zone id", "host")
        return f"{address}%{zone}" if zone else address
    if not host:
        raise _refuse("the URL has no host", "host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refuse(f"host {host!r} is not a valid hostname", "host") from None
    host = host.lower()
    if not _HOSTNAME_RE.fullmatch(host):
        raise _refuse(f"host {host!r} is not a valid hostname", "host")
    return host


def parse_target(url: str, policy: EgressPolicy) -> Target:
    """Check a URL's scheme, userinfo, host and port (and ``require_https``).

    Raises EgressRefused with code ``egress.url`` (malformed), ``egress.scheme``,
    ``egress.credentials``, ``egress.host`` or ``egress.port``.
    """
    if not isinstance(url, str) or _UNSAFE_CHARS_RE.search(url):
        raise _refuse("the URL is malformed (whitespace or control characters)", "url")
    scheme_match = _SCHEME_RE.match(url)
    if scheme_match is None:
        raise _refuse("the URL has no scheme; use http or https", "scheme")
    scheme = scheme_match.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        raise _refuse(f"scheme {scheme!r} is not allowed; use http or https", "scheme")
    if scheme == "http" and policy.require_https and not policy.allow_private_network:
        raise _refuse("plain http is not allowed for this receiver; use https", "scheme")
    rest = url[scheme_match.end() :]
    if not rest.startswith("//"):
        raise _refuse("the URL has no host", "host")
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    if "@" in authority:
        raise _refuse("credentials (userinfo) are not allowed in the URL", "credentials")
    if "\\" in authority:
        raise _refuse("the URL host contains a backslash", "host")

    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _refuse(f"host {authority!r} is not a valid IPv6 literal", "host")
        host_part, port_part = authority[: end + 1], authority[end + 1 :]
        if port_part and not port_part.startswith(":"):
            raise _refuse(f"host {authority!r} is not a valid IPv6 literal", "host")
    else:
        if authority.count(":") > 1:
            raise _refuse(f"host {authority!r} is not valid (IPv6 literals need brackets)", "host")
        host_part, colon, port_part = authority.partition(":")
        port_part = colon + port_part

    host = _parse_host(host_part)
    if port_part:
        digits = port_part[1:]
        if not digits.isdigit() or not digits.isascii() or len(digits) > 5:
            raise _refuse(f"port {digits!r} is not valid; use 1-65535", "port")
        port = int(digits)
        if not 1 <= port <= 65535:
            raise _refuse(f"port {port} is not valid; use 1-65535", "port")
    else:
        port = _DEFAULT_PORTS[scheme]
    return Target(scheme=scheme, host=host, port=port)


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with ``socket.getaddrinfo`` (stream sockets): the unique addresses, in order.

    Resolution failure raises EgressRefused(code="egress.unresolvable").
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise _refuse(f"host {host} could not be resolved ({exc})", "unresolvable") from exc
    addresses: list[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def resolve_checked(host: str, port: int, policy: EgressPolicy, resolver: Resolver = system_resolver) -> list[str]:
    """Every address `host` resolves to, each checked; fail closed on the first refused one.

    Returns canonical address strings (the ones to connect to); raises ``egress.unresolvable``
    if the host resolves to nothing.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    answers = list(resolver(host, port))
    if not answers:
        raise _refuse(f"host {host} did not resolve to any address", "unresolvable")
    checked: list[str] = []
    for answer in answers:
        refusal = refusal_for(answer, policy)
        if refusal is not None:
            if answer != host:
                refusal = EgressRefused(f"host {host}: {refusal.message}", code=refusal.code)
            raise refusal
        canonical = str(_parse_ip(answer))
        if canonical not in checked:
            checked.append(canonical)
    return checked


def validate_url(url: str, policy: EgressPolicy, resolver: Resolver = system_resolver) -> Target:
    """Check a URL when an endpoint or upstream is created or updated: parse, resolve, check."""
    target = parse_target(url, policy)
    resolve_checked(target.host, target.port, policy, resolver)
    return target


_STRICTEST: Final = EgressPolicy()


def _connect_checked(conn: HTTPConnection, policy: EgressPolicy, resolver: Resolver) -> socket.socket:
    """Resolve, check every address, then connect to a checked address (in order)."""
    if conn.proxy is not None:
        raise _refuse("outbound connections may not go through a proxy", "proxy")
    host = conn._dns_host
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = conn.port
    addresses = resolve_checked(host, port, policy, resolver)

    error: OSError | None = None
    for address in addresses:
        sock: socket.socket | None = None
        try:
            # AI_NUMERICHOST: only turns the checked literal into a sockaddr, never a DNS lookup.
            family, socktype, proto, _canon, sockaddr = socket.getaddrinfo(
                address, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )[0]
            sock = socket.socket(family, socktype, proto)
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            if sock is not None:
                sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock

    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


# -- whole-request deadlines ----------------------------------------------------------------------
# urllib3's timeouts bound each connect and each socket read, never a whole request: a receiver that
# drips a byte every few seconds would hold a POST open forever. A deadline shuts the request's
# sockets down when it passes, which wakes any read blocked on them. Written here because urllib3
# has no whole-request timeout and a thread per request would cost more than one shared watchdog.
class RequestDeadline:
    """The end of one request on this thread; sockets it opens or reuses are attached to it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS sockets: SSLSocket.shutdown would drop its state under
    # a reader on another thread, while shutting the descriptor makes that read return at once.
    with contextlib.suppress(OSError):  # already closed: nothing left to wake
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires deadlines as they pass."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, RequestDeadline] = {}
        self._thread: threading.Thread | None = None

    def arm(self, deadline: RequestDeadline) -> None:
        with self._cond:
            self._armed[id(deadline)] = deadline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="egress-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self, deadline: RequestDeadline) -> None:
        with self._cond:
            self._armed.pop(id(deadline), None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, deadline in list(self._armed.items()):
                    if deadline.expires_at <= now:
                        del self._armed[key]
                        deadline.expire()
                upcoming = min((d.expires_at for d in self._armed.values()), default=None)
                self._cond.wait(None if upcoming is None else max(0.0, upcoming - now))


_WATCHDOG: Final = _Watchdog()
_current = threading.local()


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[RequestDeadline]:
    """Bound every request this thread makes inside the block to `seconds` in all."""
    deadline = RequestDeadline(seconds)
    _current.deadline = deadline
    _WATCHDOG.arm(deadline)
    try:
        yield deadline
    finally:
        _WATCHDOG.disarm(deadline)
        _current.deadline = None


def _attach(sock: socket.socket | None) -> None:
    deadline: RequestDeadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(sock)


class GuardedHTTPConnection(HTTPConnection):
    """An HTTP connection whose socket only ever goes to an address the policy allows."""

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        egress_policy: EgressPolicy = _STRICTEST,
        egress_resolver: Resolver = system_resolver,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, **kwargs)
        self.egress_policy = egress_policy
        self.egress_resolver = egress_resolver

    def _new_conn(self) -> socket.socket:
        sock = _connect_checked(self, self.egress_policy, self.egress_resolver)
        _attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)  # a kept-alive connection: its socket joins this request's deadline
        super().request(*args, **kwargs)


class GuardedHTTPSConnection(HTTPSConnection):
    """An HTTPS connection whose socket only ever goes to an address the policy allows.

    Only the socket destination changes: SNI and certificate hostname verification still use
    the hostname (``self.host``), as in urllib3's ``HTTPSConnection.connect``.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        egress_policy: EgressPolicy = _STRICTEST,
        egress_resolver: Resolver = system_resolver,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, **kwargs)
        self.egress_policy = egress_policy
        self.egress_resolver = egress_resolver

    def _new_conn(self) -> socket.socket:
        sock = _connect_checked(self, self.egress_policy, self.egress_resolver)
        _attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)  # a kept-alive connection: its socket joins this request's deadline
        super().request(*args, **kwargs)


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


_PROXY_KWARGS: Final = ("_proxy", "_proxy_headers", "_proxy_config", "_socks_options")


class GuardedPoolManager(urllib3.PoolManager):
    """A PoolManager whose every new connection (http and https) is resolved and checked.

    Each new connection resolves the host with `resolver`, checks every address with the policy
    (fail closed) and connects only to a checked address, trying them in order. TLS verification
    and SNI use the hostname. Requests whose URL fails :func:`parse_target` are refused before
    any connection. Redirects are never followed here (callers follow them, re-checking each
    hop), retries default to off, and environment proxy settings are never read.
    """

    def __init__(self, policy: EgressPolicy, *, resolver: Resolver = system_resolver, **pool_kwargs: Any) -> None:
        for key in _PROXY_KWARGS:
            if key in pool_kwargs:
                raise ValueError("GuardedPoolManager connects directly; proxies are not supported")
        pool_kwargs.setdefault("retries", False)
        super().__init__(**pool_kwargs)
        self.policy = policy
        self.resolver = resolver
        self.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        # The policy travels to the connections as connection keyword arguments; it is not part
        # of the pool key (one manager serves one policy).
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["egress_policy"] = self.policy
        context["egress_resolver"] = self.resolver
        return super()._new_pool(scheme, host, port, context)

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> BaseHTTPResponse:
        parse_target(url, self.policy)
        kw.setdefault("retries", False)
        return super().urlopen(method, url, redirect=False, **kw)


_MANAGERS: dict[EgressPolicy, GuardedPoolManager] = {}
_MANAGERS_LOCK = threading.Lock()


def pool_manager(policy: EgressPolicy) -> GuardedPoolManager:
    """The process-wide GuardedPoolManager for `policy` (kept across invocations for keep-alive)."""
    manager = _MANAGERS.get(policy)
    if manager is None:
        with _MANAGERS_LOCK:
            manager = _MANAGERS.get(policy)
            if manager is None:
                manager = GuardedPoolManager(policy, maxsize=10, block=False)
                _MANAGERS[policy] = manager
    return manager

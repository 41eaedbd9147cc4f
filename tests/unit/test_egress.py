"""The egress guard: address table, URL parsing, connect-time checks, TLS, proxies, redirects."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any

import pytest
import urllib3
from urllib3.exceptions import ConnectTimeoutError, SSLError
from urllib3.util.retry import Retry

from meshanics import egress
from meshanics.egress import (
    EgressPolicy,
    GuardedPoolManager,
    Target,
    check_address,
    parse_target,
    pool_manager,
    refusal_for,
    resolve_checked,
    system_resolver,
    validate_url,
)
from meshanics.errors import EgressRefused

STRICT = EgressPolicy()
OPT_IN = EgressPolicy(allow_private_network=True)
HTTPS_ONLY = EgressPolicy(require_https=True)

# --------------------------------------------------------------------------------------------
# The address table, through the real system resolver (getaddrinfo resolves literals offline)
# --------------------------------------------------------------------------------------------

# Private tier: refused by default, allowed with allow_private_network.
PRIVATE_FORMS = [
    ("127.0.0.1", "egress.loopback"),
    ("127.255.255.254", "egress.loopback"),
    ("2130706433", "egress.loopback"),
    ("0177.0.0.1", "egress.loopback"),
    ("0x7f000001", "egress.loopback"),
    ("0x7f.1", "egress.loopback"),
    ("127.1", "egress.loopback"),
    ("017700000001", "egress.loopback"),
    ("10.1", "egress.private"),
    ("10.0.0.5", "egress.private"),
    ("0xa000005", "egress.private"),
    ("172.16.0.1", "egress.private"),
    ("172.31.255.255", "egress.private"),
    ("192.168.1.1", "egress.private"),
    ("0xc0a80101", "egress.private"),
    ("100.64.0.1", "egress.cgnat"),
    ("100.127.255.254", "egress.cgnat"),
    ("[::1]", "egress.loopback"),
    ("[0:0:0:0:0:0:0:1]", "egress.loopback"),
    ("[::ffff:127.0.0.1]", "egress.loopback"),
    ("[::ffff:7f00:1]", "egress.loopback"),
    ("[::127.0.0.1]", "egress.loopback"),
    ("[::ffff:0:7f00:1]", "egress.loopback"),
    ("[64:ff9b::7f00:1]", "egress.loopback"),
    ("[64:ff9b::a00:1]", "egress.private"),
    ("[2002:7f00:1::]", "egress.loopback"),
    ("[2002:c0a8:101::1]", "egress.private"),
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "egress.loopback"),  # Teredo client 127.0.0.1
    ("[2001:0:a00:1::f7f7:f7f7]", "egress.private"),  # Teredo server 10.0.0.1, client 8.8.8.8
    ("[::ffff:10.0.0.1]", "egress.private"),
    ("[::ffff:100.64.0.1]", "egress.cgnat"),
    ("[fc00::1]", "egress.unique_local"),
    ("[fd12:3456:789a::1]", "egress.unique_local"),
]

# Always refused, even with allow_private_network.
ALWAYS_FORMS = [
    ("169.254.169.254", "egress.metadata"),
    ("0xa9fea9fe", "egress.metadata"),
    ("2852039166", "egress.metadata"),
    ("169.254.170.2", "egress.metadata"),
    ("169.254.169.123", "egress.metadata"),
    ("100.100.100.200", "egress.metadata"),
    ("168.63.129.16", "egress.metadata"),
    ("0.0.0.0", "egress.unspecified"),
    ("0", "egress.unspecified"),
    ("0.1.2.3", "egress.unspecified"),
    ("169.254.1.1", "egress.link_local"),
    ("224.0.0.1", "egress.multicast"),
    ("239.255.255.250", "egress.multicast"),
    ("240.0.0.1", "egress.reserved"),
    ("255.255.255.255", "egress.reserved"),
    ("192.0.2.1", "egress.documentation"),
    ("198.51.100.7", "egress.documentation"),
    ("203.0.113.9", "egress.documentation"),
    ("198.18.0.1", "egress.benchmarking"),
    ("198.19.255.254", "egress.benchmarking"),
    ("192.0.0.1", "egress.protocol_assignment"),
    ("192.88.99.1", "egress.relay_anycast"),
    ("[::]", "egress.unspecified"),
    ("[::0.0.0.2]", "egress.unspecified"),
    ("[::ffff:0.0.0.0]", "egress.unspecified"),
    ("[::ffff:a9fe:a9fe]", "egress.metadata"),
    ("[64:ff9b::a9fe:a9fe]", "egress.metadata"),
    ("[2002:a9fe:a9fe::1]", "egress.metadata"),
    ("[2002:e000:1::]", "egress.multicast"),
    ("[2001:0:a9fe:a9fe::ffff:ffff]", "egress.metadata"),  # Teredo server 169.254.169.254
    ("[2001:0:4136:e378:8000:63bf:5601:5601]", "egress.metadata"),  # Teredo client 169.254.169.254
    ("[fe80::1]", "egress.link_local"),
    ("[febf:ffff::1]", "egress.link_local"),
    ("[fd00:ec2::254]", "egress.metadata"),
    ("[fd00:ec2::123]", "egress.metadata"),
    ("[ff02::1]", "egress.multicast"),
    ("[ff05::1:3]", "egress.multicast"),
    ("[2001:db8::1]", "egress.documentation"),
    ("[3fff::1]", "egress.documentation"),
    ("[2001:2::1]", "egress.benchmarking"),
    ("[100::1]", "egress.discard"),
    ("[2001:10::1]", "egress.orchid"),
    ("[2001:20::1]", "egress.orchid"),
    ("[5f00::1]", "egress.srv6"),
    ("[64:ff9b:1::1]", "egress.local_nat64"),
    ("[fec0::1]", "egress.site_local"),
]

PUBLIC_FORMS = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "134744072",  # 8.8.8.8 as a decimal
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above CGNAT
    "172.32.0.1",  # just above 172.16/12
    "169.255.0.1",
    "[2606:4700:4700::1111]",
    "[2001:4860:4860::8888]",
    "[64:ff9b::808:808]",  # NAT64 of 8.8.8.8
    "[2002:808:808::1]",  # 6to4 of 8.8.8.8
    "[::ffff:8.8.8.8]",
    "[2001:0:4136:e378:8000:63bf:f7f7:f7f7]",  # Teredo: public server, client 8.8.8.8
    "[2001:3::1]",
]


def _teredo_client(address: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(~int(ipaddress.IPv6Address(address)) & 0xFFFFFFFF)


def test_the_table_has_at_least_forty_forms() -> None:
    assert len(PRIVATE_FORMS) + len(ALWAYS_FORMS) >= 40
    assert str(_teredo_client("2001:0:4136:e378:8000:63bf:5601:5601")) == "169.254.169.254"


@pytest.mark.parametrize(("host", "code"), PRIVATE_FORMS)
def test_private_tier_refused_by_default_allowed_with_opt_in(host: str, code: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        validate_url(f"http://{host}/", STRICT)
    assert refused.value.code == code
    assert "allow_private_network" in refused.value.message
    assert validate_url(f"http://{host}/", OPT_IN).port == 80


@pytest.mark.parametrize(("host", "code"), ALWAYS_FORMS)
def test_always_tier_refused_even_with_opt_in(host: str, code: str) -> None:
    for policy in (STRICT, OPT_IN):
        with pytest.raises(EgressRefused) as refused:
            validate_url(f"https://{host}/", policy)
        assert refused.value.code == code
        assert "always refused" in refused.value.message


@pytest.mark.parametrize("host", PUBLIC_FORMS)
def test_public_addresses_pass(host: str) -> None:
    target = validate_url(f"https://{host}/path", STRICT)
    assert target == Target("https", host.strip("[]").lower(), 443)


def test_refusal_for_objects_brackets_and_zone_ids() -> None:
    assert refusal_for(ipaddress.IPv4Address("8.8.8.8"), STRICT) is None
    loopback = refusal_for(ipaddress.IPv6Address("::1"), STRICT)
    assert loopback is not None and loopback.code == "egress.loopback"
    bracketed = refusal_for("[::1]", STRICT)
    assert bracketed is not None and bracketed.code == "egress.loopback"
    zoned = refusal_for("fe80::1%eth0", OPT_IN)
    assert zoned is not None and zoned.code == "egress.link_local"
    assert "fe80::1%eth0" in zoned.message
    ula = refusal_for("fd00::1%eth0", STRICT)
    assert ula is not None and ula.code == "egress.unique_local"
    assert refusal_for("fd00::1%eth0", OPT_IN) is None


@pytest.mark.parametrize("text", ["0x7f.1", "127.1", "010.0.0.1", "example.com", "", "1.2.3.4%eth0", "[::1"])
def test_refusal_for_refuses_non_canonical_text(text: str) -> None:
    refusal = refusal_for(text, OPT_IN)
    assert refusal is not None and refusal.code == "egress.invalid_address"


def test_messages_name_the_address_and_the_rule() -> None:
    private = refusal_for("10.0.0.5", STRICT)
    assert private is not None
    assert private.message == (
        "address 10.0.0.5 is in a private range (RFC 1918); set allow_private_network to deliver to it"
    )
    metadata = refusal_for("169.254.169.254", OPT_IN)
    assert metadata is not None
    assert metadata.message == "address 169.254.169.254 is a cloud metadata address; it is always refused"
    embedded = refusal_for("64:ff9b::7f00:1", STRICT)
    assert embedded is not None and "127.0.0.1 (NAT64)" in embedded.message
    assert private.status == 400


def test_teredo_with_one_always_refused_side_reports_it_under_opt_in() -> None:
    # Server 10.0.0.1 (private tier), client 169.254.169.254 (always refused).
    client = ~int(ipaddress.IPv4Address("169.254.169.254")) & 0xFFFFFFFF
    address = ipaddress.IPv6Address((0x2001 << 112) | (0x0A000001 << 64) | client)
    for policy in (STRICT, OPT_IN):
        refusal = refusal_for(address, policy)
        assert refusal is not None and refusal.code == "egress.metadata"


def test_check_address_raises() -> None:
    check_address("8.8.8.8", STRICT)
    check_address("127.0.0.1", OPT_IN)
    with pytest.raises(EgressRefused, match="loopback"):
        check_address("127.0.0.1", STRICT)


def test_every_rule_has_a_stable_code() -> None:
    codes = {rule.code for rule in egress.RULES}
    assert codes == {
        "egress.metadata",
        "egress.unspecified",
        "egress.loopback",
        "egress.private",
        "egress.cgnat",
        "egress.unique_local",
        "egress.link_local",
        "egress.multicast",
        "egress.reserved",
        "egress.documentation",
        "egress.benchmarking",
        "egress.protocol_assignment",
        "egress.relay_anycast",
        "egress.discard",
        "egress.orchid",
        "egress.srv6",
        "egress.local_nat64",
        "egress.site_local",
    }


# --------------------------------------------------------------------------------------------
# URL parsing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/", "egress.scheme"),
        ("file:///etc/passwd", "egress.scheme"),
        ("gopher://example.com:70/_x", "egress.scheme"),
        ("javascript:alert(1)", "egress.scheme"),
        ("//example.com/", "egress.scheme"),
        ("example.com/path", "egress.scheme"),
        ("http://user:pass@example.com/", "egress.credentials"),
        ("http://user@example.com/", "egress.credentials"),
        ("http://@example.com/", "egress.credentials"),
        ("http://example.com:80@127.0.0.1/", "egress.credentials"),
        ("https://a%40b@example.com/", "egress.credentials"),
        ("http:///path", "egress.host"),
        ("http://", "egress.host"),
        ("http://:80/", "egress.host"),
        ("http:example.com", "egress.host"),
        ("http://exa%6dple.com/", "egress.host"),
        ("http://example.com\\@127.0.0.1/", "egress.credentials"),
        ("http://127.0.0.1\\.example.com/", "egress.host"),
        ("http://::1/", "egress.host"),
        ("http://[::1/", "egress.host"),
        ("http://[not-ip]/", "egress.host"),
        ("http://[::1]x/", "egress.host"),
        ("http://a..b/", "egress.host"),
        ("http://example.com:0/", "egress.port"),
        ("http://example.com:65536/", "egress.port"),
        ("http://example.com:99999999/", "egress.port"),
        ("http://example.com:abc/", "egress.port"),
        ("http://example.com:-1/", "egress.port"),
        ("http://example.com:/", "egress.port"),
        ("http://[::1]:0/", "egress.port"),
        ("http://exa mple.com/", "egress.url"),
        ("http://example.com/\r\nHost: x", "egress.url"),
        (" http://example.com/", "egress.url"),
    ],
)
def test_parse_target_refusals(url: str, code: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        parse_target(url, OPT_IN)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://Example.COM/x", Target("http", "example.com", 80)),
        ("HTTPS://example.com", Target("https", "example.com", 443)),
        ("https://example.com:1/?q=@x#@y", Target("https", "example.com", 1)),
        ("https://example.com:65535", Target("https", "example.com", 65535)),
        ("http://[2606:4700:4700::1111]:8080/", Target("http", "2606:4700:4700::1111", 8080)),
        ("http://[FE80::1%25eth0]/", Target("http", "fe80::1%eth0", 80)),
        ("http://example.com./", Target("http", "example.com.", 80)),
        ("http://xn--bcher-kva.example/", Target("http", "xn--bcher-kva.example", 80)),
        ("http://bücher.example/", Target("http", "xn--bcher-kva.example", 80)),
        ("http://0x7f.1/", Target("http", "0x7f.1", 80)),
    ],
)
def test_parse_target_accepts(url: str, target: Target) -> None:
    assert parse_target(url, STRICT) == target


def test_require_https() -> None:
    with pytest.raises(EgressRefused) as refused:
        parse_target("http://example.com/", HTTPS_ONLY)
    assert refused.value.code == "egress.scheme"
    assert parse_target("https://example.com/", HTTPS_ONLY).scheme == "https"
    opted_in = EgressPolicy(allow_private_network=True, require_https=True)
    assert parse_target("http://receiver.internal/", opted_in).scheme == "http"
    assert parse_target("http://example.com/", STRICT).scheme == "http"


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def _static(answers: dict[str, Sequence[str]]) -> Callable[[str, int], Sequence[str]]:
    def resolve(host: str, port: int) -> Sequence[str]:
        return answers.get(host, [])

    return resolve


def test_resolve_checked_fails_closed_on_any_refused_address() -> None:
    resolver = _static(
        {
            "mixed.test": ["93.184.216.34", "10.0.0.1"],
            "mixed2.test": ["10.0.0.1", "93.184.216.34"],
            "meta.test": ["127.0.0.1", "169.254.169.254"],
            "public.test": ["93.184.216.34", "2606:4700:4700::1111", "93.184.216.34"],
        }
    )
    for host in ("mixed.test", "mixed2.test"):
        with pytest.raises(EgressRefused) as refused:
            resolve_checked(host, 443, STRICT, resolver)
        assert refused.value.code == "egress.private"
        assert host in refused.value.message
    with pytest.raises(EgressRefused) as refused:
        resolve_checked("meta.test", 443, OPT_IN, resolver)
    assert refused.value.code == "egress.metadata"
    assert resolve_checked("mixed.test", 443, OPT_IN, resolver) == ["93.184.216.34", "10.0.0.1"]
    assert resolve_checked("public.test", 443, STRICT, resolver) == ["93.184.216.34", "2606:4700:4700::1111"]
    with pytest.raises(EgressRefused) as refused:
        resolve_checked("nothing.test", 443, STRICT, resolver)
    assert refused.value.code == "egress.unresolvable"


def test_resolver_answers_that_are_not_addresses_are_refused() -> None:
    with pytest.raises(EgressRefused) as refused:
        resolve_checked("odd.test", 80, OPT_IN, _static({"odd.test": ["0x7f.1"]}))
    assert refused.value.code == "egress.invalid_address"


def test_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    assert system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
    assert system_resolver("::1", 80) == ["::1"]

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(EgressRefused) as refused:
        system_resolver("nowhere.invalid", 80)
    assert refused.value.code == "egress.unresolvable"


# --------------------------------------------------------------------------------------------
# Loopback servers
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.accepts = 0
        self.paths: list[str] = []
        self.server_names: list[str | None] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            tls.sni_callback = self._record_sni
        self.thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def server_bind(self) -> None:  # skip HTTPServer's reverse lookup of the bind address
        TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        self.accepts += 1
        if self.tls is not None:
            sock.settimeout(5)
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, address

    def _record_sni(self, sock: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        self.server_names.append(server_name)

    @property
    def port(self) -> int:
        return self.server_port

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    yield httpd
    httpd.stop()


class _Listener:
    """A listening socket that must never see a connection."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def accepted(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[_Listener]:
    lst = _Listener()
    yield lst
    lst.sock.close()


# --------------------------------------------------------------------------------------------
# Connect-time checks
# --------------------------------------------------------------------------------------------


def test_rebinding_is_caught_at_connect_time(listener: _Listener) -> None:
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["93.184.216.34"] if len(calls) == 1 else ["127.0.0.1"]

    url = f"http://rebind.test:{listener.port}/hook"
    assert validate_url(url, STRICT, rebinding) == Target("http", "rebind.test", listener.port)
    manager = GuardedPoolManager(STRICT, resolver=rebinding)
    with pytest.raises(EgressRefused) as refused:
        manager.request("GET", url, timeout=2)
    assert refused.value.code == "egress.loopback"
    assert "rebind.test" in refused.value.message
    assert calls == ["rebind.test", "rebind.test"]
    assert listener.accepted() == 0


def test_fail_closed_before_any_connection(listener: _Listener) -> None:
    # The first answer is allowed (and listening), but the second is metadata: nothing connects.
    manager = GuardedPoolManager(OPT_IN, resolver=_static({"mixed.test": ["127.0.0.1", "169.254.169.254"]}))
    with pytest.raises(EgressRefused) as refused:
        manager.request("GET", f"http://mixed.test:{listener.port}/", timeout=2)
    assert refused.value.code == "egress.metadata"
    assert listener.accepted() == 0


def test_refused_address_never_receives_a_connection(listener: _Listener) -> None:
    for url in (
        f"http://127.0.0.1:{listener.port}/",
        f"https://127.0.0.1:{listener.port}/",
        f"http://localhost:{listener.port}/",
        f"http://0x7f.1:{listener.port}/",
        f"http://[::ffff:127.0.0.1]:{listener.port}/",
    ):
        with pytest.raises(EgressRefused):
            GuardedPoolManager(STRICT).request("GET", url, timeout=2)
    assert listener.accepted() == 0


def test_refusal_is_not_wrapped_even_with_retries(listener: _Listener) -> None:
    manager = GuardedPoolManager(STRICT)
    for retries in (3, Retry(total=5, connect=5), None):
        kwargs: dict[str, Any] = {} if retries is None else {"retries": retries}
        with pytest.raises(EgressRefused):
            manager.request("GET", f"http://127.0.0.1:{listener.port}/", timeout=2, **kwargs)
    assert listener.accepted() == 0


def test_direct_pool_use_is_still_checked(listener: _Listener) -> None:
    pool = GuardedPoolManager(STRICT).connection_from_url(f"http://127.0.0.1:{listener.port}/")
    with pytest.raises(EgressRefused):
        pool.urlopen("GET", "/", retries=False)
    assert listener.accepted() == 0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:{port}/",
        "http://user:secret@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}@127.0.0.1:{port}/",
        "gopher://127.0.0.1:{port}/",
    ],
)
def test_manager_refuses_bad_urls_before_connecting(listener: _Listener, url: str) -> None:
    with pytest.raises(EgressRefused):
        GuardedPoolManager(OPT_IN).request("GET", url.format(port=listener.port), timeout=2)
    assert listener.accepted() == 0


def test_manager_enforces_require_https(server: _Server) -> None:
    with pytest.raises(EgressRefused) as refused:
        GuardedPoolManager(HTTPS_ONLY, resolver=_static({"public.test": ["93.184.216.34"]})).request(
            "GET", f"http://public.test:{server.port}/"
        )
    assert refused.value.code == "egress.scheme"
    assert server.accepts == 0


def test_loopback_server_with_opt_in_and_keep_alive(server: _Server) -> None:
    manager = GuardedPoolManager(OPT_IN)
    url = f"http://127.0.0.1:{server.port}/hook"
    first = manager.request("GET", url, timeout=5)
    second = manager.request("GET", url, timeout=5)
    assert (first.status, first.data, second.status, second.data) == (200, b"ok", 200, b"ok")
    assert server.accepts == 1
    assert server.paths == ["/hook", "/hook"]
    manager.clear()


def test_loopback_server_refused_without_opt_in(server: _Server) -> None:
    with pytest.raises(EgressRefused) as refused:
        GuardedPoolManager(STRICT).request("GET", f"http://127.0.0.1:{server.port}/", timeout=5)
    assert refused.value.code == "egress.loopback"
    assert server.accepts == 0
    assert server.paths == []


def test_checked_addresses_are_tried_in_order(server: _Server) -> None:
    # Nothing listens on 127.0.0.2 at this port: the next checked address is used.
    resolver = _static({"two.test": ["127.0.0.2", "127.0.0.1"]})
    response = GuardedPoolManager(OPT_IN, resolver=resolver).request(
        "GET", f"http://two.test:{server.port}/", timeout=5
    )
    assert response.status == 200
    assert server.accepts == 1


def test_connection_failure_is_a_urllib3_error(listener: _Listener) -> None:
    port = listener.port
    listener.sock.close()
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        GuardedPoolManager(OPT_IN).request("GET", f"http://127.0.0.1:{port}/", timeout=2)


def test_connect_timeout_applies() -> None:
    # A listener with a full accept queue drops further SYNs, so the connect hangs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        timeout = urllib3.Timeout(connect=0.3, read=5)
        with pytest.raises(ConnectTimeoutError):
            GuardedPoolManager(OPT_IN).request("GET", f"http://127.0.0.1:{port}/", timeout=timeout)
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


def test_redirect_is_returned_not_followed(server: _Server) -> None:
    manager = GuardedPoolManager(OPT_IN)
    url = f"http://127.0.0.1:{server.port}/redirect"
    for kwargs in ({}, {"redirect": True}, {"retries": Retry(total=5, redirect=5)}):
        response = manager.request("GET", url, timeout=5, **kwargs)
        assert response.status == 302
        assert response.headers["Location"].endswith("/landed")
    assert server.paths == ["/redirect"] * 3
    manager.clear()


def test_proxy_kwargs_are_refused() -> None:
    with pytest.raises(ValueError, match="proxies"):
        GuardedPoolManager(STRICT, _proxy=urllib3.util.parse_url("http://127.0.0.1:3128"))


def test_environment_proxies_do_not_route_around_the_guard(
    monkeypatch: pytest.MonkeyPatch, server: _Server, listener: _Listener
) -> None:
    proxy = f"http://127.0.0.1:{listener.port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    response = GuardedPoolManager(OPT_IN).request("GET", f"http://127.0.0.1:{server.port}/direct", timeout=5)
    assert response.status == 200
    assert server.paths == ["/direct"]
    with pytest.raises(EgressRefused):
        GuardedPoolManager(STRICT).request("GET", f"http://127.0.0.1:{server.port}/refused", timeout=5)
    assert server.paths == ["/direct"]
    assert listener.accepted() == 0


# --------------------------------------------------------------------------------------------
# HTTPS: the socket goes to the checked IP, TLS verifies the hostname
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path, Path]) -> Iterator[_Server]:
    _, cert_path, key_path = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    httpd = _Server(tls=context)
    yield httpd
    httpd.stop()


TLS_RESOLVER = _static({"localhost": ["127.0.0.1"], "receiver.test": ["127.0.0.1"]})


def test_https_verifies_the_hostname_not_the_ip(tls_server: _Server, tls_files: tuple[Path, Path, Path]) -> None:
    ca_path = str(tls_files[0])
    manager = GuardedPoolManager(OPT_IN, resolver=TLS_RESOLVER, ca_certs=ca_path)
    response = manager.request("GET", f"https://localhost:{tls_server.port}/secure", timeout=5)
    assert (response.status, response.data) == (200, b"ok")
    manager.request("GET", f"https://localhost:{tls_server.port}/again", timeout=5)
    assert tls_server.accepts == 1  # keep-alive over TLS too

    with pytest.raises(SSLError) as failed:
        manager.request("GET", f"https://receiver.test:{tls_server.port}/", timeout=5)
    assert "receiver.test" in str(failed.value)
    assert tls_server.server_names[:2] == ["localhost", "receiver.test"]
    assert tls_server.paths == ["/secure", "/again"]
    manager.clear()


def test_https_untrusted_ca_fails(tls_server: _Server) -> None:
    manager = GuardedPoolManager(OPT_IN, resolver=TLS_RESOLVER)
    with pytest.raises(SSLError):
        manager.request("GET", f"https://localhost:{tls_server.port}/", timeout=5)
    assert tls_server.paths == []


def test_https_refused_without_opt_in(tls_server: _Server, tls_files: tuple[Path, Path, Path]) -> None:
    manager = GuardedPoolManager(STRICT, resolver=TLS_RESOLVER, ca_certs=str(tls_files[0]))
    with pytest.raises(EgressRefused) as refused:
        manager.request("GET", f"https://localhost:{tls_server.port}/", timeout=5)
    assert refused.value.code == "egress.loopback"
    assert tls_server.accepts == 0


def test_https_ignores_environment_proxies(
    monkeypatch: pytest.MonkeyPatch,
    tls_server: _Server,
    tls_files: tuple[Path, Path, Path],
    listener: _Listener,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{listener.port}")
    manager = GuardedPoolManager(OPT_IN, resolver=TLS_RESOLVER, ca_certs=str(tls_files[0]))
    assert manager.request("GET", f"https://localhost:{tls_server.port}/", timeout=5).status == 200
    assert listener.accepted() == 0
    manager.clear()


# --------------------------------------------------------------------------------------------
# The shared managers and import cost
# --------------------------------------------------------------------------------------------


def test_pool_manager_is_cached_per_policy() -> None:
    policy = EgressPolicy(allow_private_network=True, require_https=True)
    results: list[GuardedPoolManager] = []
    threads = [threading.Thread(target=lambda: results.append(pool_manager(policy))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(manager) for manager in results}) == 1
    manager = results[0]
    assert pool_manager(EgressPolicy(allow_private_network=True, require_https=True)) is manager
    assert pool_manager(STRICT) is not manager
    assert manager.policy == policy
    assert manager.connection_pool_kw["maxsize"] == 10
    assert manager.connection_pool_kw["block"] is False


def test_import_is_light() -> None:
    code = (
        "import sys, meshanics.egress; "
        "print(sorted(m for m in ('boto3', 'botocore', 'requests', 'cryptography') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

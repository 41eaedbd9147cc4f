"""Signing and receiver-side verification, including interop with the Standard Webhooks library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from meshanics import signing
from meshanics.signing import SignatureVerificationError, verify

BODY = b'{"specversion":"1.0","type":"rollout.created","sequence":7}'


def test_secret_format_is_whsec_and_32_random_bytes() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != signing.generate_secret()


def test_header_is_hmac_sha256_over_timestamp_dot_body_keyed_with_the_secret_string() -> None:
    secret = signing.generate_secret()
    header = signing.meshanics_signature([secret], 1_700_000_000, BODY)
    expected = hmac.new(secret.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_signed_headers_carry_every_companion_header() -> None:
    secret = signing.generate_secret()
    headers = signing.signed_headers(
        body=BODY, event_type="rollout.created", idempotency_key="7-abc", spec_version="1.0", secrets=[secret]
    )
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Meshanics-Event"] == "rollout.created"
    assert headers["X-Meshanics-Delivery"] == "7-abc"
    assert headers["X-Meshanics-Spec"] == "1.0"
    assert headers["User-Agent"].startswith("Meshanics-Webhooks/")
    assert headers["webhook-id"] == "7-abc"
    assert verify(BODY, headers["X-Meshanics-Signature"], secret) == int(headers["webhook-timestamp"])


def test_standard_webhooks_library_verifies_our_headers() -> None:
    secret = signing.generate_secret()
    headers = signing.signed_headers(
        body=BODY, event_type="rollout.created", idempotency_key="7-abc", spec_version="1.0", secrets=[secret]
    )
    assert Webhook(secret).verify(BODY, headers)["sequence"] == 7
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY, headers)


def test_rotation_signs_with_both_secrets_and_either_verifies() -> None:
    new, old = signing.generate_secret(), signing.generate_secret()
    headers = signing.signed_headers(
        body=BODY, event_type="t", idempotency_key="1-a", spec_version="1.0", secrets=[new, old]
    )
    assert headers["X-Meshanics-Signature"].count("v1=") == 2
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(BODY, headers["X-Meshanics-Signature"], new)
    verify(BODY, headers["X-Meshanics-Signature"], old)
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda b, h, s: (b + b" ", h, s), "no signature matches"),
        (lambda b, h, s: (b, h, signing.generate_secret()), "no signature matches"),
        (lambda b, h, s: (b, h.replace("v1=", "v0="), s), "must carry"),
        (lambda b, h, s: (b, "", s), "must carry"),
        (lambda b, h, s: (b, "t=abc,v1=00", s), "malformed timestamp"),
        (lambda b, h, s: (b.replace(b"7", b"8"), h, s), "no signature matches"),
    ],
)
def test_verify_rejects_tampering(tamper, reason) -> None:  # type: ignore[no-untyped-def]
    secret = signing.generate_secret()
    header = signing.meshanics_signature([secret], int(time.time()), BODY)
    body, header, secret = tamper(BODY, header, secret)
    with pytest.raises(SignatureVerificationError, match=reason):
        verify(body, header, secret)


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 10_000])
def test_verify_rejects_stale_and_future_timestamps(offset: int) -> None:
    secret = signing.generate_secret()
    now = 1_800_000_000
    header = signing.meshanics_signature([secret], now + offset, BODY)
    with pytest.raises(SignatureVerificationError, match="tolerance"):
        verify(BODY, header, secret, now=now)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_verify_accepts_within_tolerance(offset: int) -> None:
    secret = signing.generate_secret()
    now = 1_800_000_000
    header = signing.meshanics_signature([secret], now + offset, BODY)
    assert verify(BODY, header, secret, now=now) == now + offset


def test_verify_accepts_str_bodies_and_custom_tolerance() -> None:
    secret = signing.generate_secret()
    header = signing.meshanics_signature([secret], 1000, BODY)
    assert verify(BODY.decode(), header, secret, tolerance=10, now=1005) == 1000
    with pytest.raises(SignatureVerificationError):
        verify(BODY, header, secret, tolerance=10, now=1011)


def test_verify_uses_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    secret = signing.generate_secret()
    header = signing.meshanics_signature([secret, signing.generate_secret()], int(time.time()), BODY)
    verify(BODY, header, secret)
    assert len(calls) == 2  # every candidate compared, matched or not


def test_signing_module_imports_without_boto3() -> None:
    code = (
        "import sys; import meshanics.signing; "
        "bad = [m for m in ('boto3', 'botocore', 'urllib3', 'cryptography') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- hostile headers: a receiver catching SignatureVerificationError must never see another error --
NOW = 1_800_000_000
HEX = "0123456789abcdef" * 4
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))  # isdigit() is True


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (f"t={NOW},v1=é{HEX[1:]}", "malformed signature"),  # compare_digest: TypeError on non-ASCII
        (f"t={NOW},v1=\U0001f600", "malformed signature"),
        (f"t={NOW},v1={HEX[:-1]}", "malformed signature"),  # 63 hex digits
        (f"t={NOW},v1={HEX}0", "malformed signature"),  # 65
        (f"t={NOW},v1={'g' * 64}", "malformed signature"),
        (f"t={NOW},v1=", "malformed signature"),
        ("t=²,v1=" + HEX, "malformed timestamp"),  # '²'.isdigit() is True, int('²') fails
        ("t=" + str(NOW).translate(ARABIC_INDIC) + ",v1=" + HEX, "malformed timestamp"),  # int() takes them
        ("t=" + "9" * 5000 + ",v1=" + HEX, "malformed timestamp"),  # int(): more than 4300 digits
        ("t=" + "1" * 13 + ",v1=" + HEX, "malformed timestamp"),
        ("t=+1800000000,v1=" + HEX, "malformed timestamp"),
        ("t=-1,v1=" + HEX, "malformed timestamp"),
        ("t=1 800,v1=" + HEX, "malformed timestamp"),
        ("t=,v1=" + HEX, "malformed timestamp"),
    ],
)
def test_verify_refuses_hostile_headers_with_a_verification_error(header: str, reason: str) -> None:
    with pytest.raises(SignatureVerificationError, match=reason):
        verify(BODY, header, signing.generate_secret(), now=NOW)


@pytest.mark.parametrize("header", [None, b"t=1800000000,v1=00", 1_800_000_000, ["t=1800000000"]])
def test_verify_refuses_a_header_that_is_not_text(header: object) -> None:
    with pytest.raises(SignatureVerificationError, match="must be text"):
        verify(BODY, header, signing.generate_secret(), now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", ["\ud800", None, 42])
def test_verify_refuses_a_body_that_is_not_raw_bytes_or_utf8_text(body: object) -> None:
    secret = signing.generate_secret()
    header = signing.meshanics_signature([secret], NOW, BODY)
    with pytest.raises(SignatureVerificationError, match="raw request body"):
        verify(body, header, secret, now=NOW)  # type: ignore[arg-type]


def test_verify_accepts_upper_case_hex_and_whitespace_around_items() -> None:
    secret = signing.generate_secret()
    header = signing.meshanics_signature([secret], NOW, BODY)
    t, v1 = header.split(",")
    assert verify(BODY, f" {t} , {v1.upper().replace('V1=', 'v1=')} ", secret, now=NOW) == NOW


# Header-like text: items of known and unknown keys with well-formed, near-miss and arbitrary values.
_anything = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
_values = st.one_of(
    st.just(str(NOW)),
    st.text("0123456789", min_size=1, max_size=14).map(lambda v: str(NOW)[: -len(v)] + v if len(v) < 10 else v),
    st.text("0123456789abcdefABCDEF", min_size=60, max_size=68),
    st.text("0123456789\u00b2\u00b3\u00b9 " + "0123456789".translate(ARABIC_INDIC), min_size=1, max_size=16),
    _anything,
)
_items = st.tuples(st.sampled_from(["t", "v1", "v0", " t", "v1 ", "T", ""]), st.sampled_from(["=", "", "=="]), _values)
_headers = st.lists(_items, max_size=6).map(lambda items: ",".join(k + sep + v for k, sep, v in items))
_bodies = st.one_of(st.binary(max_size=200), st.text(st.characters(codec=None, exclude_categories=()), max_size=200))


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(header=st.one_of(_headers, _anything), body=_bodies)
@example(header=f"t={NOW},v1=é", body=BODY)
@example(header=f"t=²,v1={HEX}", body=BODY)
@example(header="t=" + "1" * 5000 + f",v1={HEX}", body=BODY)
def test_verify_raises_nothing_but_verification_errors(header: str, body: bytes | str) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    try:
        timestamp = verify(body, header, secret, now=NOW)
    except SignatureVerificationError:
        return
    assert timestamp == NOW  # only a genuine signature passes, and none is generated here
    raise AssertionError(f"an unsigned header was accepted: {header!r}")


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(body=_bodies, extra=st.lists(_values, max_size=3), tolerance=st.integers(0, 10**6))
def test_a_genuine_signature_still_verifies_among_hostile_neighbours(
    body: bytes | str, extra: list[str], tolerance: int
) -> None:
    secret = signing.generate_secret()
    try:
        raw = body.encode() if isinstance(body, str) else body
    except UnicodeEncodeError:
        return  # not a body anyone could have signed
    header = signing.meshanics_signature([secret], NOW, raw)
    hostile = header + "".join(f",x-{i}={v}" for i, v in enumerate(extra) if "," not in v)
    assert verify(body, hostile, secret, tolerance=tolerance, now=NOW) == NOW

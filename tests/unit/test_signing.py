"""Signing and receiver-side verification, including interop with the Standard Webhooks library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import time

import pytest
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

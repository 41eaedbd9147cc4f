"""Webhook signatures: signing on the platform side, `verify` on the receiver side.

Pure standard library, so receivers can vendor this one file. Two schemes are sent together:

* `X-Meshanics-Signature: t=<unix-seconds>,v1=<hex>[,v1=<hex>]`: HMAC-SHA256 over
  `"<t>.<raw body>"`, keyed with the endpoint secret string exactly as shown (UTF-8).
* Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`): HMAC-SHA256
  over `"<id>.<t>.<body>"`, keyed with the base64-decoded part of the `whsec_` secret.

During a secret rotation's overlap window the body is signed with every live secret (newest first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as _random
import time
from collections.abc import Sequence

from meshanics import PRODUCT, __version__

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32
DEFAULT_TOLERANCE = 300

SIGNATURE_HEADER = "X-Meshanics-Signature"
EVENT_HEADER = "X-Meshanics-Event"
DELIVERY_HEADER = "X-Meshanics-Delivery"
SPEC_HEADER = "X-Meshanics-Spec"
USER_AGENT = f"{PRODUCT}/{__version__}"

# What the header's values may be, checked before any conversion or comparison: str.isdigit() and
# int() accept non-ASCII digits (and int() fails past 4,300 of them), and hmac.compare_digest()
# raises TypeError on non-ASCII text. ASCII-only classes, so a header cannot reach either.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


class SignatureVerificationError(ValueError):
    """The request is not a fresh, authentic delivery; the message says why."""


def generate_secret() -> str:
    """A new endpoint secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks compatible)."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def _hex_hmac(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return mac.hexdigest()


def _standard_key(secret: str) -> bytes:
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(encoded)


def meshanics_signature(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    parts = [f"t={timestamp}"] + [f"v1={_hex_hmac(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)


def standard_signature(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    sigs = [
        "v1," + base64.b64encode(hmac.new(_standard_key(s), signed, hashlib.sha256).digest()).decode() for s in secrets
    ]
    return " ".join(sigs)


def signed_headers(
    *,
    body: bytes,
    event_type: str,
    idempotency_key: str,
    spec_version: str,
    secrets: Sequence[str],
    timestamp: int | None = None,
) -> dict[str, str]:
    """Every header of a delivery request, signed over `body` with each live secret."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    t = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: meshanics_signature(secrets, t, body),
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: idempotency_key,
        SPEC_HEADER: spec_version,
        "webhook-id": idempotency_key,
        "webhook-timestamp": str(t),
        "webhook-signature": standard_signature(secrets, idempotency_key, t, body),
    }


def verify(
    body: bytes | str,
    header: str,
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> int:
    """Check an `X-Meshanics-Signature` header against the raw body; return its timestamp.

    Raises SignatureVerificationError, and nothing else whatever the header holds, if the header is
    not text or is malformed (`t` must be 1-12 ASCII digits, each `v1` 64 hex digits), the timestamp
    is more than `tolerance` seconds in the past or future (replay protection), or no `v1` signature
    matches. Comparison is constant-time. Pass the raw request body, not a re-serialized one.
    """
    if not isinstance(header, str):
        raise SignatureVerificationError("signature header must be text")
    raw = _raw_body(body)
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureVerificationError("signature header has a malformed timestamp")
            timestamp = int(value)
        elif key == "v1":
            if not _HEX_SIGNATURE.fullmatch(value):
                raise SignatureVerificationError("signature header has a malformed signature (64 hex digits)")
            candidates.append(value.lower())  # hexdigest() is lower-case
    if timestamp is None or not candidates:
        raise SignatureVerificationError("signature header must carry t=<timestamp> and v1=<signature>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureVerificationError(
            f"signature timestamp is outside the {tolerance}-second tolerance (stale or from the future)"
        )
    expected = _hex_hmac(secret, timestamp, raw)
    matched = False
    for candidate in candidates:
        # Compare against every candidate so timing does not reveal which one matched.
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureVerificationError("no signature matches the body and secret")
    return timestamp


def _raw_body(body: bytes | str) -> bytes:
    """The signed bytes; anything that cannot be them fails verification (never a TypeError)."""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not text that came off the wire as UTF-8
            raise SignatureVerificationError("pass the raw request body: this text is not valid UTF-8") from None
    raise SignatureVerificationError("pass the raw request body (bytes)")

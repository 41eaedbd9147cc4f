"""Secrets sealed at rest: KMS envelope encryption with AES-256-GCM.

Each seal asks KMS for a fresh data key (GenerateDataKey, AES_256) under the sealing key, bound to an
encryption context (tenant, resource, purpose); the secret is encrypted with AES-256-GCM using the
context as associated data; only the KMS-encrypted data key, nonce and ciphertext are stored.
Unsealing decrypts the data key with the same context, so a sealed value moved to another tenant or
endpoint does not open. Written here rather than with the AWS Encryption SDK: that SDK's message
format, signing suite and imports add cold-start and per-message cost for a 50-byte secret.

Unsealed data keys are cached briefly in memory (keyed by their encrypted blob, which changes with
every seal), so a warm delivery function does not call KMS per delivery, and a rotation is seen at once.

Values read together can share a data key: `seal(..., beside=sealed)` encrypts under the data key of
a value already sealed in the same context, so one Decrypt (then the cache) opens both. A `label`
joins the associated data, so values sealed side by side cannot be swapped for one another.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from meshanics.errors import ConfigurationError

FORMAT_VERSION = 1
NONCE_BYTES = 12


def _aad(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(sorted(context.items())), separators=(",", ":")).encode()


def _associated(context: Mapping[str, str], label: str | None) -> bytes:
    """AES-GCM associated data: the context, and the value's label when it has one."""
    return _aad(context) if label is None else _aad({**context, "sealed": label})


def _parts(sealed: bytes) -> tuple[bytes, bytes, bytes]:
    """(KMS-encrypted data key, nonce, ciphertext) of a sealed value."""
    version, length = struct.unpack_from(">BH", sealed)
    if version != FORMAT_VERSION:
        raise ConfigurationError(f"unknown sealed format version {version}")
    offset = 3
    wrapped = sealed[offset : offset + length]
    nonce = sealed[offset + length : offset + length + NONCE_BYTES]
    return wrapped, nonce, sealed[offset + length + NONCE_BYTES :]


class Sealer:
    def __init__(
        self,
        kms: Callable[[], Any],
        key_id: str,
        *,
        cache_seconds: float = 300.0,
        cache_size: int = 1024,
    ) -> None:
        self._kms = kms
        self._key_id = key_id
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict[bytes, threading.Lock] = {}

    def seal(
        self, plaintext: str, context: Mapping[str, str], *, label: str | None = None, beside: bytes | None = None
    ) -> bytes:
        """Seal `plaintext` under a fresh data key, or under the data key of `beside` (a value sealed
        in the same context) so that reading both costs one Decrypt."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # at first use: ~6 ms of import

        if beside is None:
            response = self._kms().generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=dict(context)
            )
            key, wrapped = response["Plaintext"], response["CiphertextBlob"]
            # Known now: a value sealed beside this one right after needs no Decrypt.
            self._remember(self._cache_key(wrapped, context), key, time.monotonic())
        else:
            wrapped = _parts(beside)[0]
            key = self._data_key(wrapped, context)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), _associated(context, label))
        header = struct.pack(">BH", FORMAT_VERSION, len(wrapped))
        return bytes(header + wrapped + nonce + ciphertext)

    def unseal(self, sealed: bytes, context: Mapping[str, str], *, label: str | None = None) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # at first use: ~6 ms of import

        wrapped, nonce, ciphertext = _parts(sealed)
        key = self._data_key(wrapped, context)
        return AESGCM(key).decrypt(nonce, ciphertext, _associated(context, label)).decode("utf-8")

    @staticmethod
    def _cache_key(wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return hashlib.sha256(wrapped + b"\0" + _aad(context)).digest()

    def _data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        cache_key = self._cache_key(wrapped, context)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit and hit[0] > now:
                self._cache.move_to_end(cache_key)
                return hit[1]
            flight = self._flights.setdefault(cache_key, threading.Lock())
        # One KMS call per data key even when a whole batch asks at once (a cold container).
        with flight:
            with self._lock:
                hit = self._cache.get(cache_key)
                if hit and hit[0] > now:
                    return hit[1]
            return self._decrypt(cache_key, wrapped, context, now)

    def _decrypt(self, cache_key: bytes, wrapped: bytes, context: Mapping[str, str], now: float) -> bytes:
        key: bytes = self._kms().decrypt(CiphertextBlob=wrapped, EncryptionContext=dict(context), KeyId=self._key_id)[
            "Plaintext"
        ]
        self._remember(cache_key, key, now)
        return key

    def _remember(self, cache_key: bytes, key: bytes, now: float) -> None:
        with self._lock:
            self._cache[cache_key] = (now + self._cache_seconds, key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            self._flights.pop(cache_key, None)

"""Secrets sealed at rest: KMS envelope encryption with AES-256-GCM.

Each seal asks KMS for a fresh data key (GenerateDataKey, AES_256) under the sealing key, bound to an
encryption context (tenant, resource, purpose); the secret is encrypted with AES-256-GCM using the
context as associated data; only the KMS-encrypted data key, nonce and ciphertext are stored.
Unsealing decrypts the data key with the same context, so a sealed value moved to another tenant or
endpoint does not open. Written here rather than with the AWS Encryption SDK: that SDK's message
format, signing suite and imports add cold-start and per-message cost for a 50-byte secret.

Unsealed data keys are cached briefly in memory (keyed by their encrypted blob, which changes with
every seal), so a warm delivery function does not call KMS per delivery, and a rotation is seen at once.
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

    def seal(self, plaintext: str, context: Mapping[str, str]) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # at first use: ~6 ms of import

        response = self._kms().generate_data_key(KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=dict(context))
        key, wrapped = response["Plaintext"], response["CiphertextBlob"]
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), _aad(context))
        header = struct.pack(">BH", FORMAT_VERSION, len(wrapped))
        return bytes(header + wrapped + nonce + ciphertext)

    def unseal(self, sealed: bytes, context: Mapping[str, str]) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # at first use: ~6 ms of import

        version, length = struct.unpack_from(">BH", sealed)
        if version != FORMAT_VERSION:
            raise ConfigurationError(f"unknown sealed format version {version}")
        offset = 3
        wrapped = sealed[offset : offset + length]
        nonce = sealed[offset + length : offset + length + NONCE_BYTES]
        ciphertext = sealed[offset + length + NONCE_BYTES :]
        key = self._data_key(wrapped, context)
        return AESGCM(key).decrypt(nonce, ciphertext, _aad(context)).decode("utf-8")

    def _data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        cache_key = hashlib.sha256(wrapped + b"\0" + _aad(context)).digest()
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
        with self._lock:
            self._cache[cache_key] = (now + self._cache_seconds, key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            self._flights.pop(cache_key, None)
        return key

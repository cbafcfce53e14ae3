"""Sealing: authenticated encryption of cookie and store payloads (JWE ``dir`` + ``A256GCM``).

A sealed value is a compact JWE whose plaintext is ``{"v": 1, "p": purpose, "exp": unix_s, "d": data}``.
The browser can neither read nor forge it. Keys are derived with HKDF-SHA256 from the configured
secrets and a *purpose* ("access", "refresh", "user", ...), so a value sealed for one cookie cannot be
replayed as another. The first secret seals; every secret unseals (key rotation): the JWE ``kid``
names the key, so unsealing tries exactly one key.

Opening a sealed value is the hot path's only cryptography, so results are kept in a bounded LRU keyed
by a BLAKE2 digest of the value (the value itself is never kept as a key, printed or logged).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from .bounded import ExpiringCache

FORMAT_VERSION = 1
MAX_SEALED_LENGTH = 64 * 1024  # far above any cookie; bounds the work a hostile value can cause
DEFAULT_CACHE_SIZE = 4096


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for ``purpose`` from a human-chosen secret (HKDF-SHA256)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"bffgate/sealing/v1", info=purpose.encode())
    return hkdf.derive(secret.encode())


def _key_id(key: bytes) -> str:
    # A public fingerprint of the key: lets unseal pick the key without trying each one.
    return base64.urlsafe_b64encode(hashlib.sha256(key).digest()[:9]).decode()


class Sealer:
    """Seals and opens payloads for one purpose with a rotating list of secrets."""

    def __init__(self, secrets: Sequence[str], purpose: str, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        keys = [derive_key(secret, purpose) for secret in secrets]
        if not keys:
            raise ValueError("at least one secret is needed")
        self._purpose = purpose
        self._seal_key = OctKey.import_key(keys[0], {"kid": _key_id(keys[0])})
        self._header = {"alg": "dir", "enc": "A256GCM", "kid": _key_id(keys[0])}
        self._keys = KeySet([OctKey.import_key(key, {"kid": _key_id(key)}) for key in keys])
        self._cache: ExpiringCache[bytes, tuple[Any, float]] = ExpiringCache(cache_size)

    @classmethod
    def for_secret(cls, secret: str, purpose: str) -> Sealer:
        """A one-off sealer keyed by a single secret (e.g. a refresh token), without a cache."""
        return cls([secret], purpose, cache_size=0)

    def __repr__(self) -> str:
        return f"Sealer(purpose={self._purpose!r}, keys='**********')"

    def seal(self, data: Any, expires_at: float) -> str:
        """Encrypt ``data`` (JSON-serialisable) so that it opens until ``expires_at`` (unix seconds)."""
        plaintext = json.dumps(
            {"v": FORMAT_VERSION, "p": self._purpose, "exp": int(expires_at), "d": data},
            separators=(",", ":"),
        )
        return jwe.encrypt_compact(self._header, plaintext, self._seal_key)

    def unseal(self, value: str) -> Any | None:
        """The data sealed in ``value``, or None if it is tampered, truncated, expired or not ours."""
        opened = self.unseal_with_expiry(value)
        return None if opened is None else opened[0]

    def unseal_with_expiry(self, value: str) -> tuple[Any, float] | None:
        """``(data, expires_at)`` for ``value``, or None (see ``unseal``)."""
        now = time.time()
        digest = hashlib.blake2b(value.encode(errors="surrogateescape"), digest_size=20).digest()
        cached = self._cache.get(digest, now)
        if cached is not None:
            return cached
        opened = self._open(value, now)
        if opened is not None:
            self._cache.put(digest, opened, opened[1])
        return opened

    def _open(self, value: str, now: float) -> tuple[Any, float] | None:
        if not value or len(value) > MAX_SEALED_LENGTH or value.count(".") != 4:
            return None
        try:
            plaintext = jwe.decrypt_compact(value, self._keys).plaintext
            envelope = json.loads(plaintext or b"")
        except (JoseError, ValueError, TypeError, KeyError):
            return None
        if not isinstance(envelope, dict):
            return None
        expires_at = envelope.get("exp")
        if envelope.get("v") != FORMAT_VERSION or envelope.get("p") != self._purpose:
            return None
        if not isinstance(expires_at, int) or expires_at <= now:
            return None
        return envelope.get("d"), float(expires_at)

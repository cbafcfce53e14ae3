"""Set-Cookie headers: attributes, the ``__Host-`` prefix, and chunking of large values.

Every session cookie is HttpOnly, Secure, SameSite=Strict, Path=/, has no Domain and a Max-Age.
Browsers keep at most ~4096 bytes of name and value per cookie, so a value above ``CHUNK_SIZE`` is
split over ``name_0``, ``name_1``, ... (at most ``MAX_CHUNKS``); writing a value expires every stale
form of it (the whole cookie or chunks past the new count) that the browser sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from .errors import InternalSignal

CHUNK_SIZE = 3800  # leaves room for the name within the 4096-byte limit
MAX_CHUNKS = 8
SameSite = Literal["Strict", "Lax"]


class CookieTooLarge(InternalSignal, ValueError):
    """The value would need more than ``MAX_CHUNKS`` cookies."""


class CookieJar:
    """Builds Set-Cookie headers for bffgate's cookies under one security policy."""

    def __init__(self, *, secure: bool = True) -> None:
        self.secure = secure
        # Without Secure, browsers reject the __Host- prefix, so plain-http development drops it.
        self._prefix = "__Host-" if secure else ""
        self._attributes = "; Path=/; HttpOnly" + ("; Secure" if secure else "")

    def name(self, base: str) -> str:
        """The full cookie name for ``base`` (``accessTokenEtls`` → ``__Host-accessTokenEtls``)."""
        return self._prefix + base

    def set(self, name: str, value: str, max_age: int, same_site: SameSite = "Strict") -> str:
        return f"{name}={value}; Max-Age={max(0, int(max_age))}{self._attributes}; SameSite={same_site}"

    def expire(self, name: str) -> str:
        return self.set(name, "", 0)

    def read(self, cookies: Mapping[str, str], name: str) -> str | None:
        """The value of ``name``, joined from its chunks when it was split; None when absent or broken."""
        whole = cookies.get(name)
        if whole:
            return whole
        chunks: list[str] = []
        for index in range(MAX_CHUNKS):
            chunk = cookies.get(f"{name}_{index}")
            if not chunk:
                break
            chunks.append(chunk)
        return "".join(chunks) or None

    def write(self, cookies: Mapping[str, str], name: str, value: str, max_age: int) -> list[str]:
        """Set-Cookie headers storing ``value`` under ``name`` and expiring its stale forms."""
        if len(value) <= CHUNK_SIZE:
            headers = [self.set(name, value, max_age)]
            return headers + [self.expire(stale) for stale in _chunk_names(cookies, name)]
        parts = [value[i : i + CHUNK_SIZE] for i in range(0, len(value), CHUNK_SIZE)]
        if len(parts) > MAX_CHUNKS:
            raise CookieTooLarge(f"{name} would need {len(parts)} cookies")
        headers = [self.set(f"{name}_{i}", part, max_age) for i, part in enumerate(parts)]
        if name in cookies:
            headers.append(self.expire(name))
        stale = [n for n in _chunk_names(cookies, name) if int(n.rsplit("_", 1)[1]) >= len(parts)]
        return headers + [self.expire(n) for n in stale]

    def clear(self, cookies: Mapping[str, str], name: str) -> list[str]:
        """Expire ``name`` and every chunk of it; the bare name is always expired, even if not sent."""
        return [self.expire(name)] + [self.expire(n) for n in _chunk_names(cookies, name)]


def _chunk_names(cookies: Mapping[str, str], name: str) -> list[str]:
    pattern = re.compile(re.escape(name) + r"_\d{1,2}")
    return [n for n in cookies if pattern.fullmatch(n)]

"""CSRF defence for state-changing and proxied requests.

A custom header (``X-CSRF``) cannot be sent cross-site without a CORS preflight that bffgate never
approves, so its presence proves the request came from a same-origin script. An ``Origin`` header,
when the browser sends one, must also be ours or allowlisted.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import CsrfFailed
from .header_filter import header_value


def verify_csrf(raw_headers: Iterable[tuple[bytes, bytes]], allowed_origins: frozenset[str]) -> None:
    """Raise ``CsrfFailed`` unless ``X-CSRF`` is present and any ``Origin`` is allowed."""
    if not (header_value(raw_headers, b"x-csrf") or "").strip():
        raise CsrfFailed("the X-CSRF header is required on this request")
    origin = header_value(raw_headers, b"origin")
    if origin is not None and origin.lower() not in allowed_origins:
        raise CsrfFailed("the request's Origin is not allowed")

"""``csrf.py``: ``X-CSRF`` present and non-blank, and any ``Origin`` ours or allowlisted (the answers,
403 csrf_failed with nothing upstream, are the security suite's: test_security.py requirement 4)."""

from __future__ import annotations

import pytest

from bffgate.csrf import verify_csrf
from bffgate.errors import CsrfFailed

OURS = frozenset({"https://app.example.com"})


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"x-csrf", b"")],
        [(b"x-csrf", b" \t")],
        [(b"x-csrf", b"1"), (b"origin", b"https://evil.example")],
        [(b"x-csrf", b"1"), (b"origin", b"null")],
        [(b"x-csrf", b"1"), (b"origin", b"https://app.example.com.evil.example")],
    ],
)
def test_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(CsrfFailed):
        verify_csrf(headers, OURS)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-csrf", b"1")],
        [(b"x-csrf", b"1"), (b"origin", b"https://app.example.com")],
        [(b"x-csrf", b"1"), (b"origin", b"HTTPS://APP.EXAMPLE.COM")],
    ],
)
def test_accepted(headers: list[tuple[bytes, bytes]]) -> None:
    verify_csrf(headers, OURS)

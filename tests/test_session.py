"""When a session's access token is due for refresh, and when a session ends."""

from __future__ import annotations

import pytest

from bffgate.session import Session
from bffgate.tokens import TokenSet


def session(lifetime: float, issued_at: float = 1000.0) -> Session:
    return Session(
        sid="s",
        created_at=issued_at,
        access_token="at",
        access_issued_at=issued_at,
        access_expires_at=issued_at + lifetime,
        refresh_token="rt",
    )


@pytest.mark.parametrize(
    ("lifetime", "now_offset", "due"),
    [
        (900, 869, False),  # 31 s left, skew 30
        (900, 871, True),  # 29 s left
        (20, 14, False),  # 6 s left: skew capped at a quarter of 20 s = 5 s
        (20, 15.5, True),
        (5, 3.7, False),  # 5-second tokens are not refreshed on every call
        (5, 3.8, True),
    ],
)
def test_refresh_is_due_within_min_of_skew_and_a_quarter_of_life(
    lifetime: float, now_offset: float, due: bool
) -> None:
    """The skew is min(BFF_REFRESH_SKEW, lifetime / 4)."""
    assert session(lifetime).needs_refresh(30, now=1000 + now_offset) is due


def test_missing_access_token_is_always_due() -> None:
    """A session without an access token must refresh before any call."""
    assert Session(sid="s", created_at=0, refresh_token="rt").needs_refresh(30, now=1)


def test_refresh_keeps_old_refresh_token_when_none_is_returned() -> None:
    """Providers that do not rotate send no refresh token: the old one stays."""
    refreshed = session(900).with_tokens(TokenSet(access_token="new", expires_in=60), now=2000)
    assert (refreshed.access_token, refreshed.refresh_token, refreshed.access_expires_at) == (
        "new",
        "rt",
        2060,
    )


def test_session_end_is_capped_by_absolute_lifetime_and_access_expiry_without_refresh_token() -> None:
    """Idle end, absolute cap, and the access token's end when nothing can refresh it."""
    s = session(900, issued_at=0)
    assert s.session_expires_at(idle=100, absolute=10_000, now=50) == 150
    assert s.session_expires_at(idle=100_000, absolute=10_000, now=50) == 10_000
    no_refresh = Session(sid="s", created_at=0, access_token="at", access_expires_at=900)
    assert no_refresh.session_expires_at(idle=100_000, absolute=10_000, now=50) == 900


def test_repr_hides_tokens() -> None:
    """Sessions in logs or tracebacks never show tokens."""
    text = repr(session(900))
    assert "'at'" not in text and "rt" not in text.replace("tokens", "")

"""``gateway.py``: the session logic every authenticated call shares, on the shared fakes (no sockets,
no framework request: cookies and raw headers in)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest

from bffgate.errors import CsrfFailed, SessionExpired, SessionTooLarge, Unauthenticated
from bffgate.gateway import TRACKED_SESSION_KEY, Gateway
from bffgate.session import Session

from ..harness import settings_for
from .fakes import MemoryStore, RotatingProvider, session_of
from .memory_transport import MemoryAnswer, MemoryTransport

WITH_CSRF = [(b"x-csrf", b"1")]


def gateway_with(store: MemoryStore) -> Gateway:
    transport = MemoryTransport(lambda _: MemoryAnswer(200))
    return Gateway(settings_for("http://api.invalid"), store, RotatingProvider(), transport)


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "headers": headers}


async def test_no_session_is_unauthenticated_before_any_csrf_check() -> None:
    """Session first (DESIGN.md request flow): a page load without a session is sent to the login
    page, not refused for a missing X-CSRF."""
    with pytest.raises(Unauthenticated):
        await gateway_with(MemoryStore(None)).open({}, scope([]))


async def test_a_session_without_csrf_header_is_refused() -> None:
    with pytest.raises(CsrfFailed):
        await gateway_with(MemoryStore(session_of())).open({}, scope([]))


async def test_the_opened_session_is_tracked_in_the_scope() -> None:
    """Every answer, problem or not, finds the request's session there (for the cookies it changed)."""
    request_scope = scope(WITH_CSRF)
    tracked = await gateway_with(MemoryStore(session_of())).open({}, request_scope)
    assert request_scope[TRACKED_SESSION_KEY] is tracked
    assert tracked.current.sid == "sid-1" and not tracked.changed


async def test_a_session_logged_out_here_is_expired() -> None:
    store = MemoryStore(session_of())
    gateway = gateway_with(store)
    await gateway.refresher.end(session_of())
    with pytest.raises(SessionExpired):
        await gateway.open({}, scope(WITH_CSRF))


async def test_fresh_refreshes_ahead_of_expiry_and_only_then_are_cookies_sealed() -> None:
    store = MemoryStore(session_of(expires_in=-1))
    gateway = gateway_with(store)
    tracked = await gateway.open({}, scope(WITH_CSRF))
    assert gateway.cookies_for({}, tracked) == []  # unchanged: nothing to seal
    session = await gateway.fresh(tracked)
    assert (session.access_token, tracked.changed) == ("at1", True)
    assert gateway.cookies_for({}, tracked) == ["token=at1"]
    assert [s.access_token for s in store.sealed] == ["at1"]


async def test_still_live_keeps_the_sealed_cookies_unless_the_session_was_logged_out() -> None:
    store = MemoryStore(session_of(expires_in=-1))
    gateway = gateway_with(store)
    tracked = await gateway.open({}, scope(WITH_CSRF))
    await gateway.fresh(tracked)
    sealed = gateway.cookies_for({}, tracked)
    assert await gateway.still_live(tracked, sealed) == sealed
    await gateway.refresher.end(tracked.current)
    assert await gateway.still_live(tracked, sealed) == []
    assert len(store.sealed) == 1  # checked, never sealed again


class TooLargeStore(MemoryStore):
    def set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        raise SessionTooLarge(set_cookies=["refresh=kept"])


async def test_a_problem_answer_carries_what_still_fits() -> None:
    """Tokens too large for cookies: the problem answer still carries the rotated refresh token."""
    gateway = gateway_with(TooLargeStore(session_of(expires_in=-1)))
    tracked = await gateway.open({}, scope(WITH_CSRF))
    await gateway.fresh(tracked)
    with pytest.raises(SessionTooLarge):
        gateway.cookies_for({}, tracked)
    assert await gateway.cookies_for_problem({}, tracked) == ["refresh=kept"]


def test_fakes_session_is_fresh() -> None:
    """The shared fake's default session needs no refresh (the tests above rely on it)."""
    assert not session_of().needs_refresh(30, now=time.time())

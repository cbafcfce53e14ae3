"""``grace.py``: the grace window's rule (in-process entries) follows rotations of one session, never
into another's; the Redis entries are read by the same rule (``tests/test_refresh.py``)."""

from __future__ import annotations

import time

from bffgate.grace import MAX_GRACE_CHAIN, GraceWindow
from bffgate.session import Session


def session(sid: str, refresh_token: str) -> Session:
    return Session(
        sid=sid, created_at=time.time(), access_token=f"at-{refresh_token}", refresh_token=refresh_token
    )


async def test_a_chain_of_rotations_leads_to_the_newest_session() -> None:
    window = GraceWindow.in_process(30)
    await window.remember("rt0", session("s1", "rt1"))
    await window.remember("rt1", session("s1", "rt2"))
    newest = await window.newest(session("s1", "rt0"))
    assert newest is not None and newest.refresh_token == "rt2"


async def test_an_entry_of_another_session_is_never_followed() -> None:
    """Same rule as the Redis window (which always checked it): an entry filed under this token but
    belonging to another session id is not this session's successor."""
    window = GraceWindow.in_process(30)
    await window.remember("rt0", session("someone-else", "rt1"))
    assert await window.newest(session("s1", "rt0")) is None


async def test_the_chain_is_bounded() -> None:
    window = GraceWindow.in_process(30)
    for n in range(MAX_GRACE_CHAIN + 3):
        await window.remember(f"rt{n}", session("s1", f"rt{n + 1}"))
    newest = await window.newest(session("s1", "rt0"))
    assert newest is not None and newest.refresh_token == f"rt{MAX_GRACE_CHAIN}"


async def test_an_entry_expires_after_the_window() -> None:
    """The in-process entries live as long as the window says (here: not at all)."""
    window = GraceWindow.in_process(0)
    await window.remember("rt0", session("s1", "rt1"))
    assert await window.newest(session("s1", "rt0")) is None

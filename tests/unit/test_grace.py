"""``grace.py``: the in-process grace window follows rotations of one session, never into another's."""

from __future__ import annotations

import time

from bffgate.grace import MAX_GRACE_CHAIN, GraceWindow
from bffgate.session import Session


def session(sid: str, refresh_token: str) -> Session:
    return Session(
        sid=sid, created_at=time.time(), access_token=f"at-{refresh_token}", refresh_token=refresh_token
    )


def test_a_chain_of_rotations_leads_to_the_newest_session() -> None:
    window = GraceWindow(30)
    window.remember("rt0", session("s1", "rt1"))
    window.remember("rt1", session("s1", "rt2"))
    newest = window.newest(session("s1", "rt0"))
    assert newest is not None and newest.refresh_token == "rt2"


def test_an_entry_of_another_session_is_never_followed() -> None:
    """Same rule as the Redis window (which always checked it): an entry filed under this token but
    belonging to another session id is not this session's successor."""
    window = GraceWindow(30)
    window.remember("rt0", session("someone-else", "rt1"))
    assert window.newest(session("s1", "rt0")) is None


def test_the_chain_is_bounded() -> None:
    window = GraceWindow(30)
    for n in range(MAX_GRACE_CHAIN + 3):
        window.remember(f"rt{n}", session("s1", f"rt{n + 1}"))
    newest = window.newest(session("s1", "rt0"))
    assert newest is not None and newest.refresh_token == f"rt{MAX_GRACE_CHAIN}"

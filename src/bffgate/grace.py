"""The grace window: one interface and one rule, with its entries in process memory or in Redis.

After a refresh, the newer session is remembered under the refresh token it replaced, for
``BFF_GRACE_SECONDS``: a request that still holds the old token gets the newer session instead of
presenting a spent token. ``GraceWindow`` is the only thing the refresh coordinator talks to, and it
holds the rule: follow a chain of rotations at most ``MAX_GRACE_CHAIN`` steps, and only while each
entry is a later state of the *same* session (``succeeds``). Where the entries live is behind the
``GraceEntries`` protocol: ``MemoryGraceEntries`` here (this process), ``cluster.RedisGraceEntries``
(every process, sealed with a key derived from the old refresh token).
"""

from __future__ import annotations

import time
from typing import Protocol

from .bounded import ExpiringCache
from .session import Session, token_fingerprint

MAX_GRACE_CHAIN = 8  # a session refreshed more often than this within the grace window is left alone
MAX_GRACE_ENTRIES = 100_000  # in-process entries; refreshes within one grace window, far beyond any load


class GraceEntries(Protocol):
    """Where the window's entries live; each expires after the window's seconds."""

    async def get(self, refresh_token: str) -> Session | None:
        """The session remembered under ``refresh_token`` (the one it replaced), or None."""

    async def put(self, old_refresh_token: str, newer: Session) -> None:
        """Remember ``newer`` under the refresh token it replaced, for the window's seconds."""


class GraceWindow:
    """Recent refresh results by the refresh token they replaced, and the rule to read them."""

    def __init__(self, entries: GraceEntries) -> None:
        self._entries = entries

    @classmethod
    def in_process(cls, seconds: float) -> GraceWindow:
        return cls(MemoryGraceEntries(seconds))

    async def remember(self, old_refresh_token: str, newer: Session) -> None:
        await self._entries.put(old_refresh_token, newer)

    async def newest(self, session: Session) -> Session | None:
        """The latest session that superseded ``session`` (following several rotations), or None."""
        found: Session | None = None
        current = session
        for _ in range(MAX_GRACE_CHAIN):
            if not current.refresh_token:
                break
            newer = await self._entries.get(current.refresh_token)
            if newer is None or not succeeds(newer, session):
                break
            found = current = newer
        return found


def succeeds(newer: Session, session: Session) -> bool:
    """Whether a grace entry found under ``session``'s refresh token is a later state of that session
    (never another session's, whatever token it was filed under)."""
    return newer.sid == session.sid


class MemoryGraceEntries:
    """Grace entries in this process's memory, by fingerprint of the refresh token they replaced."""

    def __init__(self, seconds: float, max_entries: int = MAX_GRACE_ENTRIES) -> None:
        self._seconds = seconds
        self._entries: ExpiringCache[str, Session] = ExpiringCache(max_entries, clock=time.monotonic)

    async def get(self, refresh_token: str) -> Session | None:
        if not self._entries:  # the common case: skip hashing the token
            return None
        return self._entries.get(token_fingerprint(refresh_token))

    async def put(self, old_refresh_token: str, newer: Session) -> None:
        now = time.monotonic()
        self._entries.prune(now)  # every entry lives equally long: expired ones are at the front
        self._entries.put(token_fingerprint(old_refresh_token), newer, now + self._seconds)

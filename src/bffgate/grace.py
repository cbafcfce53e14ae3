"""The grace window's one rule, and its in-process form.

After a refresh, the newer session is remembered under the refresh token it replaced, for
``BFF_GRACE_SECONDS``: a request that still holds the old token gets the newer session instead of
presenting a spent token. In memory here (``GraceWindow``), in Redis across processes
(``cluster.ClusterCoordination``); both follow a chain of rotations the same way: at most
``MAX_GRACE_CHAIN`` steps, and only while each entry is the *same* session (``succeeds``).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from .session import Session, token_fingerprint

MAX_GRACE_CHAIN = 8  # a session refreshed more often than this within the grace window is left alone


class GraceWindow:
    """Recent refresh results by fingerprint of the refresh token they replaced (process memory)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._entries: OrderedDict[str, tuple[Session, float]] = OrderedDict()

    def remember(self, old_refresh_token: str, newer: Session) -> None:
        now = time.monotonic()
        self._entries[token_fingerprint(old_refresh_token)] = (newer, now + self._seconds)
        # Every entry lives equally long, so insertion order is expiry order: prune from the front.
        while self._entries:
            _, (_, expires) = next(iter(self._entries.items()))
            if expires > now:
                break
            self._entries.popitem(last=False)

    def newest(self, session: Session) -> Session | None:
        """The latest session that superseded ``session`` (following several rotations), or None."""
        if not self._entries:  # the common case: skip hashing the token
            return None
        found: Session | None = None
        current = session
        now = time.monotonic()
        for _ in range(MAX_GRACE_CHAIN):
            if not current.refresh_token:
                break
            entry = self._entries.get(token_fingerprint(current.refresh_token))
            if entry is None or entry[1] <= now or not succeeds(entry[0], session):
                break
            found = current = entry[0]
        return found


def succeeds(newer: Session, session: Session) -> bool:
    """Whether a grace entry found under ``session``'s refresh token is a later state of that session
    (never another session's, whatever token it was filed under)."""
    return newer.sid == session.sid

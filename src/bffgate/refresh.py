"""Single-flight refresh: one provider call per refresh token, whatever the number of waiting requests.

Three rules keep providers with refresh-token rotation and reuse detection from revoking a session:

* **One flight.** Concurrent requests holding the same refresh token share one refresh, run in its own
  task so that a cancelled request (browser gone) never cancels it for the others.
* **Stored before released.** The new session is saved (``SessionStore.save``) and recorded in the
  grace window before any waiter sees it, so a rotated refresh token is never presented twice.
* **Grace.** For ``BFF_GRACE_SECONDS`` the result is kept under a fingerprint of the *old* refresh
  token: a request arriving later with superseded cookies gets the newest tokens instead of sending
  a used refresh token.

A rejection is terminal only if the refresh token we sent is still the current one: when the grace
window shows that another flight has rotated it meanwhile, that newer session is used instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from .errors import RefreshFailed, RefreshRejected, RefreshUnavailable, SessionExpired
from .metrics import REFRESHES
from .providers import TokenProvider
from .session import Session, SessionStore, token_fingerprint

log = logging.getLogger("bffgate.refresh")

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
            if entry is None or entry[1] <= now:
                break
            found = current = entry[0]
        return found


class RefreshCoordinator:
    """Refreshes sessions at most once per refresh token in this process."""

    def __init__(self, provider: TokenProvider, store: SessionStore, *, grace_seconds: float) -> None:
        self._provider = provider
        self._store = store
        self._grace = GraceWindow(grace_seconds)
        self._flights: dict[str, asyncio.Task[Session]] = {}

    def newest(self, session: Session) -> Session:
        """``session``, or the newer one the grace window knows for its refresh token."""
        return self._grace.newest(session) or session

    async def refresh(self, session: Session, *, rejected_access_token: str | None = None) -> Session:
        """A session with fresh tokens.

        ``rejected_access_token`` is set when the API answered 401: a newer session from the grace
        window only counts if its access token is not the one the API just rejected.
        """
        newer = self._grace.newest(session)
        if newer is not None and newer.access_token != rejected_access_token:
            REFRESHES.labels("grace").inc()
            return newer
        session = newer or session
        if not session.refresh_token:
            raise SessionExpired("the session has no refresh token")
        key = token_fingerprint(session.refresh_token)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._fly(key, session))
            flight.add_done_callback(_retrieve_exception)
            self._flights[key] = flight
        else:
            REFRESHES.labels("joined").inc()
        return await asyncio.shield(flight)

    async def _fly(self, key: str, session: Session) -> Session:
        try:
            return await self._refresh_once(session)
        finally:
            del self._flights[key]

    async def _refresh_once(self, session: Session) -> Session:
        refresh_token = session.refresh_token or ""  # refresh() only flies sessions that have one
        try:
            tokens = await self._provider.refresh(refresh_token)
        except RefreshRejected as exc:
            newer = self._grace.newest(session)
            if newer is not None:  # someone rotated it meanwhile: not a dead session
                return newer
            REFRESHES.labels("rejected").inc()
            log.info("refresh rejected for session %s: %s", session.sid[:6], exc)
            await self._store.delete(session)
            raise SessionExpired() from None
        except RefreshFailed as exc:
            REFRESHES.labels("failed").inc()
            log.warning("refresh failed for session %s, session kept: %s", session.sid[:6], exc)
            raise RefreshUnavailable() from None
        refreshed = session.with_tokens(tokens)
        await self._store.save(refreshed)
        self._grace.remember(refresh_token, refreshed)
        REFRESHES.labels("ok").inc()
        return refreshed


def _retrieve_exception(task: asyncio.Task[Session]) -> None:
    # When every waiter has gone (cancelled requests), nobody reads the flight's error: read it here
    # so that asyncio does not report "exception was never retrieved".
    if not task.cancelled():
        task.exception()

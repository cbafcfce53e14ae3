"""Single-flight refresh: one provider call per refresh token, whatever the number of waiting requests.

Three rules keep providers with refresh-token rotation and reuse detection from revoking a session:

* **One flight.** In a process, concurrent requests holding the same refresh token share one refresh,
  run in its own task so that a cancelled request (browser gone) never cancels it for the others.
  Across processes (``REDIS_URL``), the flight takes the session's Redis lock and re-checks after
  acquiring it: if another process refreshed meanwhile, its result is used and the provider is not
  called.
* **Stored before released.** The new session is saved (``SessionStore.save``) and recorded in the
  grace window before any waiter sees it or the lock is released, so a rotated refresh token is never
  presented twice.
* **Grace.** For ``BFF_GRACE_SECONDS`` the result is kept under a fingerprint of the *old* refresh
  token (in memory, and in Redis when configured): a request arriving later with superseded cookies
  gets the newest tokens instead of sending a used refresh token.

**Logout sticks.** ``end`` tombstones the session (``logouts.py``; in Redis too); a grace upgrade or a
refresh result of a tombstoned session is never handed out, and tokens a refresh obtained for one are
revoked.

A rejection is terminal only if the refresh token we sent is still the current one: when the grace
window shows that another flight has rotated it meanwhile, that newer session is used instead.

**Per-API tokens** (``api_tokens.py``, RFC 8707) are obtained with the same refresh token, and a
provider that rotates refresh tokens rotates it on those grants too. So every grant of a session —
its own refresh and one per API — is one flight per (refresh token, target), and the flights of one
session take turns (a per-session lock here, the session's Redis lock across processes). After its
turn comes, a flight re-reads the grace window: a newer session whose token *for this target* was
renewed is the answer; one that only carries a rotated refresh token (another API's grant) is the
base the grant starts from, so no refresh token is ever presented twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from . import tracing
from .api_target import ApiTarget
from .cluster import ClusterCoordination
from .errors import (
    ClusterUnavailable,
    RefreshFailed,
    RefreshRejected,
    RefreshUnavailable,
    SessionExpired,
    StoreUnavailable,
)
from .grace import GraceWindow
from .logouts import Tombstones
from .logs import annotate, fields, fingerprint
from .metrics import COORDINATION_DEGRADED, PROVIDER_DURATION, REFRESHES
from .providers import ApiTokenGrant, TokenProvider
from .session import DEFAULT_SESSION_ABSOLUTE, Session, SessionStore, token_fingerprint
from .tokens import TokenSet, identity_of, same_user

log = logging.getLogger("bffgate.refresh")


class RefreshCoordinator:
    """Refreshes sessions at most once per refresh token, in this process and across the cluster."""

    def __init__(
        self,
        provider: TokenProvider,
        store: SessionStore,
        *,
        grace_seconds: float,
        absolute_seconds: float = DEFAULT_SESSION_ABSOLUTE,
        cluster: ClusterCoordination | None = None,
        cluster_required: bool = False,
        on_end: Callable[[str], None] | None = None,
    ) -> None:
        self._provider = provider
        self._on_end = on_end  # told the id of each session this process learns was logged out
        self._store = store
        self._grace = GraceWindow.in_process(grace_seconds)
        self._absolute = absolute_seconds
        self._cluster = cluster
        self._cluster_required = cluster_required  # Redis store: no Redis, no sessions
        self._cluster_down = False
        self._flights: dict[str, asyncio.Task[Session]] = {}
        self._flight_spans: dict[str, Any] = {}  # key -> the flight's span context (tracing on)
        self._turns = SessionTurns()
        self._ended = Tombstones()

    def ended_here(self, sid: str) -> bool:
        """Whether this process knows that session ``sid`` was logged out (no I/O: every request asks)."""
        return sid in self._ended

    async def current(self, session: Session) -> Session:
        """``session``, or the newer one this process's grace window knows, if it was not logged out."""
        newer = await self._grace.newest(session)
        return session if newer is None else await self._from_grace(newer)

    async def end(self, session: Session) -> Session:
        """Logout: tombstone the session everywhere, then the newest tokens it has (to revoke).

        The tombstone is written *before* the grace windows are read, and a refresh publishes its
        result *before* it checks for a tombstone: so either the logout sees the refreshed tokens and
        revokes them, or the refresh sees the logout and revokes them itself.
        """
        until = session.created_at + self._absolute
        self._tombstone(session)
        if self._cluster is not None:
            try:
                await self._cluster.mark_ended(session.sid, until - time.time())
                newest = await self._cluster.grace.newest(await self._grace.newest(session) or session)
            except ClusterUnavailable as exc:
                self._note_cluster_down(exc)
            else:
                if newest is not None:
                    return newest
        return await self._grace.newest(session) or session

    async def refresh(
        self,
        session: Session,
        *,
        rejected_access_token: str | None = None,
        target: ApiTarget | None = None,
    ) -> Session:
        """A session with fresh tokens: its own, or (``target``) its token for that API.

        ``rejected_access_token`` is set when the API answered 401: a newer session from the grace
        window only counts if its access token is not the one the API just rejected.
        """
        newer = await self._grace.newest(session)
        if (
            newer is not None
            and renewed(newer, session, target)
            and token_of(newer, target) != rejected_access_token
        ):
            return await self._from_grace(newer)
        session = newer or session
        if not session.refresh_token:
            raise SessionExpired("the session has no refresh token")
        key = token_fingerprint(session.refresh_token)
        if target is not None:
            key += "|" + target.key
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._fly(key, session, target))
            flight.add_done_callback(_retrieve_exception)
            self._flights[key] = flight
            return await asyncio.shield(flight)
        _count("joined")
        log.debug("waiting for the refresh in flight", extra=_event("refresh_joined", session))
        with tracing.span("refresh wait", links=tracing.link_to(self._flight_spans.get(key))):
            return await asyncio.shield(flight)

    async def finish_flights(self, deadline: float) -> None:
        """On shutdown: let refreshes in flight finish (at most ``deadline`` seconds), so that tokens
        the provider already rotated are saved and shared (Redis) instead of lost with the process;
        those still running then are cancelled, which releases their Redis locks while Redis is open.
        """
        flights = list(self._flights.values())
        if not flights:
            return
        log.info(
            "shutting down: waiting for %d refresh(es) in flight",
            len(flights),
            extra=fields(event="shutdown"),
        )
        _, pending = await asyncio.wait(flights, timeout=deadline)
        for flight in pending:
            flight.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("shutting down: %d refresh(es) cut off at the deadline", len(pending))

    async def _fly(self, key: str, session: Session, target: ApiTarget | None) -> Session:
        log.debug("refresh started", extra=_event("refresh_started", session))
        with tracing.span("refresh"):
            self._flight_spans[key] = tracing.current_context()
            try:
                return await self._run_flight(key, session, target)
            finally:
                self._flight_spans.pop(key, None)

    async def _run_flight(self, key: str, session: Session, target: ApiTarget | None) -> Session:
        try:
            await self._ensure_live(session)  # a copy of a logged-out session's cookies: no provider call
            async with self._turns.turn(session.sid):  # one grant of a session at a time
                newer = await self._grace.newest(session)  # another target's flight may have gone first
                if newer is not None and renewed(newer, session, target):
                    return await self._from_grace(newer)
                base = newer or session
                if self._cluster is not None:
                    try:
                        return await self._refresh_in_cluster(self._cluster, session, base, target)
                    except ClusterUnavailable as exc:
                        self._note_cluster_down(exc)
                return await self._refresh_once(base, target, session)
        finally:
            del self._flights[key]

    async def _refresh_in_cluster(
        self, cluster: ClusterCoordination, session: Session, base: Session, target: ApiTarget | None
    ) -> Session:
        newer = await cluster.grace.newest(base)
        if newer is None or not renewed(newer, session, target):
            async with cluster.lock(session.sid):
                newer = await cluster.grace.newest(base)  # re-read: did the previous holder refresh it?
                if newer is None or not renewed(newer, session, target):
                    return await self._refresh_once(newer or base, target, session)
        await self._grace.remember(session.refresh_token or "", newer)
        self._note_cluster_up()
        return await self._from_grace(newer)

    async def _from_grace(self, newer: Session) -> Session:
        """A grace window's answer, unless its session was logged out."""
        await self._ensure_live(newer)
        _count("grace")
        return newer

    async def is_live(self, session: Session) -> bool:
        """Whether no logout of ``session`` is known here or (with Redis) in any process."""
        try:
            await self._ensure_live(session)
        except SessionExpired:
            return False
        except StoreUnavailable:  # Redis down (Redis store): this process's record is all there is
            return True
        return True

    async def _ensure_live(self, session: Session) -> None:
        """Raise ``SessionExpired`` if ``session`` was logged out here or (with Redis) anywhere."""
        if session.sid in self._ended:
            raise SessionExpired("the session was logged out")
        if self._cluster is None:
            return
        try:
            ended = await self._cluster.is_ended(session.sid)
        except ClusterUnavailable as exc:
            self._note_cluster_down(exc)
            return
        if ended:
            self._tombstone(session)
            raise SessionExpired("the session was logged out")

    def _tombstone(self, session: Session) -> None:
        """Record here that ``session`` was logged out, and tell whoever holds it open (WebSockets)."""
        self._ended.add(session.sid, session.created_at + self._absolute)
        if self._on_end is not None:
            self._on_end(session.sid)

    async def _share(self, cluster: ClusterCoordination, old: Session, refreshed: Session) -> None:
        """Publish the result to other processes. The refresh itself is done: Redis failing now must
        not make us refresh again (the old token is spent), so the error is only logged."""
        try:
            await cluster.grace.remember(old.refresh_token or "", refreshed)
            self._note_cluster_up()
        except ClusterUnavailable as exc:
            self._note_cluster_down(exc)

    def _note_cluster_down(self, exc: ClusterUnavailable) -> None:
        if self._cluster_required:
            raise StoreUnavailable() from exc
        if not self._cluster_down:  # one line per outage, not one per request
            log.warning(
                "Redis unavailable, refreshing with in-process coordination only: %s",
                exc,
                extra=fields(event="redis_down"),
            )
            self._cluster_down = True
            COORDINATION_DEGRADED.set(1)

    def _note_cluster_up(self) -> None:
        if self._cluster_down:
            log.warning(
                "Redis answers again: refreshes are coordinated across processes",
                extra=fields(event="redis_up"),
            )
            self._cluster_down = False
            COORDINATION_DEGRADED.set(0)

    async def _grant(self, refresh_token: str, target: ApiTarget | None) -> TokenSet:
        if target is None:
            return await self._provider.refresh(refresh_token)
        if not isinstance(self._provider, ApiTokenGrant):  # settings validation keeps this from happening
            raise RefreshFailed("this provider cannot issue per-API tokens (BFF_PROVIDER=oidc can)")
        return await self._provider.refresh_for_api(refresh_token, target)

    async def _refresh_once(
        self, session: Session, target: ApiTarget | None = None, requested: Session | None = None
    ) -> Session:
        """One grant with ``session``'s refresh token; ``requested`` is the state the request held, when
        another flight of the session has rotated the token since (then both are remembered)."""
        refresh_token = session.refresh_token or ""  # refresh() only flies sessions that have one
        try:
            with PROVIDER_DURATION.labels("refresh").time():
                tokens = await self._grant(refresh_token, target)
        except RefreshRejected as exc:
            newer = await self._grace.newest(session)
            if newer is not None:  # someone rotated it meanwhile: not a dead session
                await self._ensure_live(newer)
                return newer
            _count("rejected")
            log.info("refresh rejected: %s", exc, extra=_event("refresh_rejected", session))
            await self._store.delete(session)
            raise SessionExpired() from None
        except RefreshFailed as exc:
            _count("failed")
            log.warning("refresh failed, session kept: %s", exc, extra=_event("refresh_failed", session))
            raise RefreshUnavailable() from None
        if target is None:
            refreshed = session.with_tokens(tokens)
        else:
            refreshed = session.with_api_token(target.key, tokens)
        if not _same_user(session, tokens):
            _count("rejected")
            log.warning(
                "the refresh returned another user's ID token: session ended",
                extra=_event("refresh_rejected", session),
            )
            await self._provider.revoke(refreshed)
            await self._store.delete(session)
            raise SessionExpired("the provider's refreshed ID token is about another user")
        try:
            await self._store.save(refreshed, existing=True)
        except SessionExpired:  # logged out (Redis store) while the provider answered
            await self._provider.revoke(refreshed)
            raise
        await self._grace.remember(refresh_token, refreshed)
        if requested is not None and requested.refresh_token not in (None, refresh_token):
            await self._grace.remember(requested.refresh_token or "", refreshed)
        if self._cluster is not None:
            await self._share(self._cluster, session, refreshed)
        try:
            await self._ensure_live(refreshed)  # after publishing: see ``end``
        except SessionExpired:
            _count("rejected")
            log.info(
                "the session was logged out during its refresh: new tokens revoked",
                extra=_event("refresh_rejected", session),
            )
            await self._provider.revoke(refreshed)
            raise
        _count("ok")
        log.info("refresh", extra=_event("refresh", session))
        return refreshed


def _count(outcome: str) -> None:
    """A refresh outcome: in the metrics and on the request's log line."""
    REFRESHES.labels(outcome).inc()
    annotate(refresh=outcome)
    tracing.note(bffgate__refresh__outcome=outcome)


def _event(event: str, session: Session) -> dict[str, Any]:
    return fields(event=event, session=fingerprint(session.sid))


def token_of(session: Session, target: ApiTarget | None) -> str | None:
    """The session's access token for ``target`` (None: its own)."""
    if target is None:
        return session.access_token
    token = session.api_tokens.get(target.key)
    return token.access_token if token is not None else None


def renewed(newer: Session, session: Session, target: ApiTarget | None) -> bool:
    """Whether a later state of ``session`` holds a new token for ``target``, rather than only the
    refresh token another target's grant rotated (then a grant for ``target`` is still needed)."""
    token = token_of(newer, target)
    return token is not None and token != token_of(session, target)


class SessionTurns:
    """One lock per session with a grant in flight (in this process), gone when nobody holds it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def turn(self, sid: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(sid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[sid]


def _same_user(session: Session, tokens: TokenSet) -> bool:
    """Whether a refresh's ID token (if any) is about the user who signed in (OIDC Core 12.2)."""
    login = session.login_identity
    if tokens.id_token is None or login is None:
        return True
    refreshed = identity_of(tokens.id_token)
    return refreshed is not None and same_user(login, refreshed)


def _retrieve_exception(task: asyncio.Task[Session]) -> None:
    # When every waiter has gone (cancelled requests), nobody reads the flight's error: read it here
    # so that asyncio does not report "exception was never retrieved".
    if not task.cancelled():
        task.exception()

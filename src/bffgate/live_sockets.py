"""The WebSockets this process relays: how many (per session, in all), and when their session ends.

A relayed socket outlives the handshake that authenticated it, so the gateway keeps asking whether its
session still stands, and closes it with ``SESSION_ENDED`` (4401) when it does not:

* **logout through this process** (and a login that replaces the session): ``RefreshCoordinator.end``
  calls ``session_ended`` at once;
* **absolute lifetime**: a timer per socket, set at the session's absolute end;
* **logout on another process or instance, logout everywhere, back-channel logout, a session expired
  in the store**: a check every ``BFF_WS_SESSION_CHECK`` seconds (default 30) per session with open
  sockets, one for all of that session's sockets: the cluster's logout tombstone (``REDIS_URL``) and,
  with the Redis store, whether the session is still stored. That is at most one or two Redis reads
  per session and interval; a pub/sub channel would be faster but adds a connection per process
  that must be watched and re-subscribed, for a delay users already accept from a page poll.

A socket without a session (a route whose token rule is ``user-or-none``, ``client`` or ``none``,
opened by a caller who is not logged in) counts against ``BFF_WS_MAX_PER_PROCESS`` only and is
watched by nothing but the shutdown.

What does *not* end a socket: its access token expiring. The API judged the token at the handshake;
whether a long-lived connection must re-authenticate is the API's decision (it may close with its
own code, and the browser helper then reconnects with a fresh token).

With the cookie store and no Redis, a logout through another process is only known to that process
(``logouts.py``): sockets on other processes end at the session's absolute lifetime or when their
browser reconnects. The README's "Live connections" section says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from .metrics import OPEN_SOCKETS
from .session import Session

log = logging.getLogger("bffgate.live")

# Close codes the gateway sends to the browser (README "Live connections" lists them all).
SESSION_ENDED = 4401  # the session ended: log in again (the helper reports "expired")
TOO_MANY_SOCKETS = 4429  # BFF_WS_MAX_PER_SESSION or BFF_WS_MAX_PER_PROCESS reached
API_UNAVAILABLE = 4502  # the API could not be reached, or its connection broke off
MESSAGE_TOO_BIG = 1009  # RFC 6455: a message over BFF_WS_MAX_MESSAGE_BYTES
GOING_AWAY = 1001  # RFC 6455: the gateway is shutting down

LivenessCheck = Callable[[Session, Mapping[str, str]], Awaitable[bool]]


class LiveSocket:
    """One relayed socket: its session, and the close code the gateway decided on, once it did."""

    __slots__ = ("cookies", "ended", "session", "timer")

    def __init__(self, session: Session | None, cookies: Mapping[str, str]) -> None:
        self.session = session
        self.cookies = cookies
        self.ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None

    def end(self, code: int) -> None:
        if not self.ended.done():
            self.ended.set_result(code)


class LiveSockets:
    """This process's relayed sockets, with their limits and the watch over their sessions."""

    def __init__(
        self,
        is_live: LivenessCheck,
        *,
        per_session: int,
        per_process: int,
        check_seconds: float,
        absolute_seconds: float,
    ) -> None:
        self._is_live = is_live
        self._per_session = per_session
        self._per_process = per_process
        self._check_seconds = check_seconds
        self._absolute = absolute_seconds
        self._by_session: dict[str, set[LiveSocket]] = {}
        self._anonymous: set[LiveSocket] = set()  # sockets without a session
        self._count = 0
        self._watch: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return self._count

    def admit(self, session: Session | None, cookies: Mapping[str, str]) -> LiveSocket | None:
        """A new socket for ``session`` (None: a caller without one), or None when a limit is reached."""
        if self._count >= self._per_process:
            return None
        if session is None:
            socket = LiveSocket(None, cookies)
            self._anonymous.add(socket)
            self._count += 1
            OPEN_SOCKETS.inc()
            return socket
        sockets = self._by_session.get(session.sid, set())
        if len(sockets) >= self._per_session:
            return None
        socket = LiveSocket(session, cookies)
        delay = session.created_at + self._absolute - time.time()
        socket.timer = asyncio.get_running_loop().call_later(max(0.0, delay), socket.end, SESSION_ENDED)
        self._by_session[session.sid] = sockets | {socket}
        self._count += 1
        OPEN_SOCKETS.inc()
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_sessions())
        return socket

    def leave(self, socket: LiveSocket) -> None:
        if socket.session is None:
            if socket in self._anonymous:
                self._anonymous.discard(socket)
                self._count -= 1
                OPEN_SOCKETS.dec()
            return
        sid = socket.session.sid
        sockets = self._by_session.get(sid)
        if sockets is None or socket not in sockets:
            return
        if socket.timer is not None:
            socket.timer.cancel()
        sockets.discard(socket)
        if not sockets:
            del self._by_session[sid]
        self._count -= 1
        OPEN_SOCKETS.dec()
        if not self._by_session and self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def session_ended(self, sid: str) -> None:
        """Close every socket of session ``sid`` (a logout through this process)."""
        for socket in list(self._by_session.get(sid, ())):
            socket.end(SESSION_ENDED)

    def close_all(self, code: int = GOING_AWAY) -> None:
        """Shutdown: every socket closes with ``code``."""
        for sockets in [*self._by_session.values(), self._anonymous]:
            for socket in list(sockets):
                socket.end(code)

    async def _watch_sessions(self) -> None:
        """Every ``check_seconds``: one liveness check per session with open sockets."""
        while True:
            await asyncio.sleep(self._check_seconds)
            for sid, sockets in list(self._by_session.items()):
                first = next(iter(sockets), None)
                if first is None or first.session is None:
                    continue
                try:
                    live = await self._is_live(first.session, first.cookies)
                except Exception:  # the store is down: keep the sockets, ask again next time
                    log.warning("could not check the session of open WebSockets", exc_info=True)
                    continue
                if not live:
                    log.info("session %s ended: closing its %d WebSocket(s)", sid[:6], len(sockets))
                    self.session_ended(sid)

    async def close(self) -> None:
        self.close_all()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

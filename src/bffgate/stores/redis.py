"""Server-side sessions in Redis: the browser holds one small sealed cookie with the session id.

Keys (all under ``bffgate:``):

* ``s:{sid}``   the session, sealed (JWE, key from ETLS_REFRESH): encrypted at rest. Its TTL is the
  session's end — the idle limit from the last refresh, capped by the absolute lifetime.
* ``u:{user}``  the ids of a user's sessions (user = fingerprint of ``sub``/``id``/``email``), for
  "log out everywhere" and OpenID Connect back-channel logout.

redis-py errors become ``StoreUnavailable`` (503 ``store_unavailable``); the client reconnects by
itself, so the store recovers when Redis returns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from ..cluster import as_text
from ..config import Settings
from ..cookies import CookieJar
from ..errors import StoreUnavailable
from ..sealing import Sealer
from ..session import Session, token_fingerprint

SESSION_COOKIE = "sessionEtls"
PREFIX = "bffgate:"


def user_key(user: Mapping[str, Any]) -> str | None:
    """A stable, non-reversible name for the user a session belongs to."""
    for claim in ("sub", "id", "email"):
        value = user.get(claim)
        if isinstance(value, str | int) and str(value):
            return f"{PREFIX}u:{token_fingerprint(f'{claim}:{value}')}"
    return None


class RedisSessionStore:
    """Sessions kept in Redis; the cookie is only a sealed ticket naming the session."""

    def __init__(self, settings: Settings, jar: CookieJar, client: redis.Redis) -> None:
        self._redis = client
        self._jar = jar
        self._idle = settings.bff_session_idle
        self._absolute = settings.bff_session_absolute
        self._cookie = jar.name(SESSION_COOKIE)
        self._ticket = Sealer(settings.refresh_secrets, "session-ticket")
        self._at_rest = Sealer(settings.refresh_secrets, "redis-session")

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        value = cookies.get(self._cookie)
        ticket = self._ticket.unseal(value) if value else None
        if not isinstance(ticket, dict) or not isinstance(ticket.get("sid"), str):
            return None
        return await self.load_by_id(ticket["sid"])

    async def load_by_id(self, sid: str) -> Session | None:
        try:
            sealed = await self._redis.get(self._key(sid))
        except RedisError as exc:
            raise StoreUnavailable() from exc
        if sealed is None:
            return None
        session = Session.from_dict(self._at_rest.unseal(as_text(sealed)))
        return session if session is not None and session.sid == sid else None

    async def save(self, session: Session) -> None:
        now = time.time()
        end = session.session_expires_at(self._idle, self._absolute, now)
        ttl_ms = int((end - now) * 1000)
        if ttl_ms <= 0:
            await self.delete(session)
            return
        sealed = self._at_rest.seal(session.to_dict(), end)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._key(session.sid), sealed, px=ttl_ms)
                index = user_key(session.user)
                if index:
                    pipe.sadd(index, session.sid)
                    pipe.pexpire(index, int(self._absolute * 1000))
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable() from exc

    async def delete(self, session: Session) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(session.sid))
                index = user_key(session.user)
                if index:
                    pipe.srem(index, session.sid)
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable() from exc

    async def delete_all_of_user(self, user: Mapping[str, Any]) -> int:
        """End every session of ``user`` (log out everywhere); returns how many there were."""
        index = user_key(user)
        if index is None:
            return 0
        try:
            sids = [as_text(sid) for sid in await self._redis.smembers(index)]
            if sids:
                await self._redis.delete(*(self._key(sid) for sid in sids), index)
        except RedisError as exc:
            raise StoreUnavailable() from exc
        return len(sids)

    def set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        now = time.time()
        end = session.session_expires_at(self._idle, self._absolute, now)
        ticket = self._ticket.seal({"sid": session.sid}, end)
        return [self._jar.set(self._cookie, ticket, int(end - now))]

    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]:
        return self._jar.clear(cookies, self._cookie)

    def has_cookies(self, cookies: Mapping[str, str]) -> bool:
        return self._cookie in cookies

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise StoreUnavailable("Redis does not answer") from exc

    def _key(self, sid: str) -> str:
        return f"{PREFIX}s:{sid}"

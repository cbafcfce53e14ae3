"""Server-side sessions in Redis: the browser holds one small sealed cookie with the session id.

Keys (all under ``bffgate:``):

* ``s:{sid}``   the session, sealed (JWE, key from ETLS_REFRESH): encrypted at rest. Its TTL is the
  session's end — the idle limit from the last refresh, capped by the absolute lifetime.
* ``m:{sid}``   what session administration shows of a session besides its times: ``agent`` (a
  summary of the user agent, ``useragent.summarize``) and ``seen`` (when it was last used, written at
  most once a ``SEEN_EVERY`` per session and process). Deleted with the session; its TTL is the idle
  limit from the last write, so it never outlives the session by more than that.
* ``u:{user}``  the ids of a user's sessions (user = fingerprint of ``sub``/``id``/``email``), for
  "log out everywhere".
* ``oidc-sid:{f}``, ``oidc-sub:{f}``  OpenID Connect: the ids of the sessions signed in with a provider
  session (f = fingerprint of the login ID token's ``iss`` and ``sid``, kept across refreshes) and of a
  provider subject (``iss`` and ``sub``), for back-channel logout. Each lives as long as the longest
  session in it.
* ``oidc-jti:{f}``  the logout tokens already used (replay protection), for ``REPLAY_WINDOW``.

On one server (or a Sentinel-managed master) the index updates that go with a save or a delete run in
one MULTI/EXEC transaction. On a Redis Cluster the keys live in different hash slots, so the same
commands go as a plain pipeline (redis-py sends each to its node) and a multi-key DEL becomes one DEL
per key: an index may briefly name a session that is already gone, which every reader tolerates
(``delete_provider_sessions`` prunes such members; a logout-everywhere deletes what is there).

redis-py errors become ``StoreUnavailable`` (503 ``store_unavailable``); the client reconnects by
itself, so the store recovers when Redis returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..bounded import ExpiringKeys
from ..config import Settings
from ..cookies import CookieJar
from ..errors import SessionExpired, StoreUnavailable
from ..redis_client import RedisClient, as_text, is_redis_cluster
from ..redis_errors import STORE, redis_errors, store_unavailable
from ..sealing import Sealer
from ..session import Session, token_fingerprint
from ..useragent import summarize

SESSION_COOKIE = "sessionEtls"
SEEN_EVERY = 60.0  # seconds: "last seen" is written at most this often per session and process
SEEN_MEMORY = 100_000  # sessions whose last write this process remembers (bounded memory)
PREFIX = "bffgate:"
# SADD, then extend (never shorten) the set's TTL: several sessions may share it.
ADD_TO_INDEX = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
"""


def user_key(user: Mapping[str, Any]) -> str | None:
    """A stable, non-reversible name for the user a session belongs to."""
    for claim in ("sub", "id", "email"):
        value = user.get(claim)
        if isinstance(value, str | int) and str(value):
            return f"{PREFIX}u:{token_fingerprint(f'{claim}:{value}')}"
    return None


def provider_key(kind: str, issuer: str, value: str) -> str:
    """The index of the sessions with this provider ``sid`` or ``sub`` (``kind``) from ``issuer``."""
    return f"{PREFIX}oidc-{kind}:{token_fingerprint(f'{issuer} {value}')}"


def provider_keys(session: Session) -> list[str]:
    """The provider-session and subject indexes of an OpenID Connect session (none for others).

    Read from the login's ID token (validated when the provider sent it), so its ``sid`` and ``sub``
    are the provider's, whatever the user data says; a refreshed ID token without ``sid`` does not
    drop the session from the ``sid`` index.
    """
    claims = session.login_identity
    issuer = claims.get("iss") if claims else None
    if not claims or not isinstance(issuer, str):
        return []
    return [
        provider_key(kind, issuer, value)
        for kind in ("sid", "sub")
        if isinstance(value := claims.get(kind), str) and value
    ]


class RedisSessionStore:
    """Sessions kept in Redis; the cookie is only a sealed ticket naming the session."""

    def __init__(self, settings: Settings, jar: CookieJar, client: RedisClient) -> None:
        self._redis = client
        self._atomic = not is_redis_cluster(client)  # MULTI/EXEC only where all keys share one server
        self._jar = jar
        self._idle = settings.bff_session_idle
        self._absolute = settings.bff_session_absolute
        self._cookie = jar.name(SESSION_COOKIE)
        self._ticket = Sealer(settings.refresh_secrets, "session-ticket")
        self._at_rest = Sealer(settings.refresh_secrets, "redis-session")
        self._seen_lately = ExpiringKeys(SEEN_MEMORY)

    server_side = True

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        value = cookies.get(self._cookie)
        ticket = self._ticket.unseal(value) if value else None
        if not isinstance(ticket, dict) or not isinstance(ticket.get("sid"), str):
            return None
        return await self.load_by_id(ticket["sid"])

    async def load_by_id(self, sid: str) -> Session | None:
        with redis_errors(STORE, store_unavailable):
            sealed = await self._redis.get(self._key(sid))
        return self._opened(sid, sealed)

    def _opened(self, sid: str, sealed: bytes | str | None) -> Session | None:
        if sealed is None:
            return None
        session = Session.from_dict(self._at_rest.unseal(as_text(sealed)))
        return session if session is not None and session.sid == sid else None

    async def save(self, session: Session, *, existing: bool = False) -> None:
        now = time.time()
        end = session.session_expires_at(self._idle, self._absolute, now)
        ttl_ms = int((end - now) * 1000)
        if ttl_ms <= 0:
            await self.delete(session)
            return
        sealed = self._at_rest.seal(session.to_dict(), end)
        with redis_errors(STORE, store_unavailable):
            # A refresh only replaces a session that still exists (SET XX): a logout or back-channel
            # logout that deleted it meanwhile must not be undone by the refresh finishing later.
            stored = await self._redis.set(self._key(session.sid), sealed, px=ttl_ms, xx=existing)
        if not stored:
            raise SessionExpired("the session ended while it was being refreshed")
        with redis_errors(STORE, store_unavailable):
            async with self._redis.pipeline(transaction=self._atomic) as pipe:
                index = user_key(session.user)
                if index:
                    pipe.sadd(index, session.sid)
                    pipe.pexpire(index, int(self._absolute * 1000))
                for key in provider_keys(session):
                    pipe.eval(ADD_TO_INDEX, 1, key, session.sid, ttl_ms)
                await pipe.execute()

    async def delete(self, session: Session) -> None:
        with redis_errors(STORE, store_unavailable):
            async with self._redis.pipeline(transaction=self._atomic) as pipe:
                pipe.delete(self._key(session.sid))
                pipe.delete(self._meta_key(session.sid))  # apart: on a Cluster, another slot
                index = user_key(session.user)
                if index:
                    pipe.srem(index, session.sid)
                for key in provider_keys(session):
                    pipe.srem(key, session.sid)
                await pipe.execute()

    async def delete_all_of_user(self, user: Mapping[str, Any]) -> int:
        """End every session of ``user`` (log out everywhere); returns how many there were."""
        index = user_key(user)
        if index is None:
            return 0
        with redis_errors(STORE, store_unavailable):
            sids = [as_text(sid) for sid in await self._redis.smembers(index)]
        if not sids:
            return 0
        keys = [*(self._key(sid) for sid in sids), *(self._meta_key(sid) for sid in sids), index]
        with redis_errors(STORE, store_unavailable):
            if self._atomic:
                await self._redis.delete(*keys)
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.delete(key)  # one key per DEL: the keys live in different slots
                    await pipe.execute()
        return len(sids)

    async def note_seen(self, session: Session, user_agent: str | None) -> None:
        """Record that ``session`` was used now, from ``user_agent`` (summarized), for session
        administration; at most once a ``SEEN_EVERY`` per session here. Never fails the request: a
        failure is only counted (``bffgate_redis_failures_total{role="store"}``)."""
        if not self._seen_lately.first_use(session.sid, SEEN_EVERY):
            return
        now = time.time()
        ttl_ms = int((min(now + self._idle, session.created_at + self._absolute) - now) * 1000)
        if ttl_ms <= 0:
            return
        key = self._meta_key(session.sid)
        with contextlib.suppress(StoreUnavailable), redis_errors(STORE, store_unavailable):
            async with self._redis.pipeline(transaction=False) as pipe:  # one key: one node
                pipe.hset(key, mapping={"agent": summarize(user_agent), "seen": int(now)})
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

    async def sessions_of_user(self, user: Mapping[str, Any]) -> list[StoredSession]:
        """``user``'s sessions with when each ends and what ``note_seen`` recorded; index entries
        already gone are skipped (and pruned)."""
        index = user_key(user)
        if index is None:
            return []
        with redis_errors(STORE, store_unavailable):
            sids = [as_text(sid) for sid in await self._redis.smembers(index)]
        found, gone = [], []
        for sid in sids:
            with redis_errors(STORE, store_unavailable):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.get(self._key(sid))
                    pipe.pttl(self._key(sid))
                    pipe.hgetall(self._meta_key(sid))
                    sealed, ttl_ms, meta = await pipe.execute()
            session = self._opened(sid, sealed)
            if session is None:
                gone.append(sid)
                continue
            meta = {as_text(k): as_text(v) for k, v in (meta or {}).items()}
            seen = meta.get("seen", "")
            found.append(
                StoredSession(
                    session,
                    expires_at=time.time() + max(0, ttl_ms) / 1000,
                    agent=meta.get("agent"),
                    last_seen=int(seen) if seen.isdigit() else None,
                )
            )
        if gone:
            with redis_errors(STORE, store_unavailable):
                await self._redis.srem(index, *gone)
        return found

    async def delete_provider_sessions(self, issuer: str, *, sid: str | None, sub: str | None) -> int:
        """Back-channel logout: end the sessions of provider session ``sid`` (else of subject ``sub``).

        With both, only the sessions of ``sid`` whose subject is ``sub``. Returns how many ended.
        """
        if sid is None and sub is None:
            return 0
        index = provider_key("sid", issuer, sid) if sid else provider_key("sub", issuer, sub or "")
        wanted = provider_key("sub", issuer, sub) if sid and sub else None
        with redis_errors(STORE, store_unavailable):
            members = [as_text(member) for member in await self._redis.smembers(index)]
        ended, gone = 0, []
        for member in members:
            session = await self.load_by_id(member)
            if session is None:
                gone.append(member)
            elif wanted is None or wanted in provider_keys(session):
                await self.delete(session)  # the session and all its index entries
                ended += 1
        if gone:
            with redis_errors(STORE, store_unavailable):
                await self._redis.srem(index, *gone)
        return ended

    async def first_use_of_logout_token(self, issuer: str, jti: str, window: float) -> bool:
        """Whether no logout token with this ``jti`` came within ``window`` seconds (then it is noted)."""
        with redis_errors(STORE, store_unavailable):
            fresh = await self._redis.set(
                provider_key("jti", issuer, jti), b"1", nx=True, px=int(window * 1000)
            )
        return bool(fresh)

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
        with redis_errors(STORE, lambda _: StoreUnavailable("Redis does not answer")):
            await self._redis.ping()

    def _key(self, sid: str) -> str:
        return f"{PREFIX}s:{sid}"

    def _meta_key(self, sid: str) -> str:
        return f"{PREFIX}m:{sid}"


@dataclass(frozen=True)
class StoredSession:
    """A session as session administration sees it (``sessions_of_user``)."""

    session: Session
    expires_at: float  # unix seconds
    agent: str | None  # useragent.summarize of the last user agent seen, if any
    last_seen: int | None  # unix seconds, to SEEN_EVERY

"""Refresh coordination between gateway processes and instances over Redis (``REDIS_URL``).

Three things cross process boundaries:

* **The refresh lock**, one per session (redis-py's ``Lock``: a random owner token, a lease that
  expires if the holder dies, release only by the owner). The holder re-checks the grace window after
  acquiring it and skips the provider call when another process already refreshed.
* **Logout tombstones**: a logged-out session's id (fingerprinted), kept until the session could have
  ended anyway, so that no process upgrades or refreshes it again (``mark_ended`` / ``is_ended``).
* **The grace window's entries** (``RedisGraceEntries``, read through ``grace.GraceWindow`` and its one
  rule, like the in-process entries): the newer session stored under a fingerprint of the refresh
  token it replaced, for ``BFF_GRACE_SECONDS``. It is sealed with a key derived from that old refresh
  token, so only a request that holds the old token can open it, and Redis alone reveals nothing.

The Redis client itself is made in ``redis_client.py``. redis-py's exceptions are mapped here
(``redis_errors``): ``ClusterUnavailable`` tells the caller Redis is down, and in
cookie mode the coordinator carries on in-process (logged), as the contract says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import ClusterUnavailable as ClusterUnavailable  # where callers met it first
from .grace import GraceWindow
from .redis_client import PREFIX, RedisClient, as_text
from .redis_errors import redis_errors
from .sealing import Sealer
from .session import Session, token_fingerprint

log = logging.getLogger("bffgate.cluster")

LOCK_POLL_SECONDS = 0.02  # how often a waiter re-tries the lock; only one waiter per process polls


class RedisGraceEntries:
    """Grace entries in Redis, seen by every process; ``ClusterUnavailable`` when Redis does not answer."""

    def __init__(self, client: RedisClient, seconds: float) -> None:
        self._redis = client
        self._ms = max(1, int(seconds * 1000))

    async def get(self, refresh_token: str) -> Session | None:
        with redis_errors():
            sealed = await self._redis.get(_grace_key(refresh_token))
        if sealed is None:
            return None
        data = _grace_sealer(refresh_token).unseal(as_text(sealed))
        return Session.from_dict(data) if data is not None else None

    async def put(self, old_refresh_token: str, newer: Session) -> None:
        sealed = _grace_sealer(old_refresh_token).seal(newer.to_dict(), _far_future())
        with redis_errors():
            await self._redis.set(_grace_key(old_refresh_token), sealed, px=self._ms)


class ClusterCoordination:
    """Cross-process refresh lock, grace window (``grace``) and logout tombstones in Redis."""

    def __init__(self, client: RedisClient, *, grace_seconds: float, lease_seconds: float) -> None:
        self._redis = client
        self.grace = GraceWindow(RedisGraceEntries(client, grace_seconds))
        self._lease = lease_seconds

    @asynccontextmanager
    async def lock(self, sid: str) -> AsyncIterator[None]:
        """Hold the session's refresh lock; waits while another process holds it (up to the lease)."""
        lock = self._redis.lock(
            f"{PREFIX}lock:{sid}",
            timeout=self._lease,
            sleep=LOCK_POLL_SECONDS,
            blocking_timeout=self._lease + 1.0,
            raise_on_release_error=False,
        )
        with redis_errors():  # LockError is a RedisError
            acquired = await lock.acquire()
        if not acquired:
            raise ClusterUnavailable("the session's refresh lock was not released within its lease")
        try:
            yield
        finally:
            try:
                with redis_errors():  # LockError too: the lease ran out, nothing left to release
                    await lock.release()
            except ClusterUnavailable as exc:
                log.warning("refresh lock release failed: %s", exc)

    async def mark_ended(self, sid: str, seconds: float) -> None:
        """Record, for ``seconds``, that session ``sid`` was logged out (a tombstone every process sees)."""
        with redis_errors():
            await self._redis.set(_ended_key(sid), b"1", px=max(1, int(seconds * 1000)))

    async def is_ended(self, sid: str) -> bool:
        """Whether any process recorded a logout of session ``sid``."""
        with redis_errors():
            return bool(await self._redis.exists(_ended_key(sid)))

    async def first_use(self, name: str, seconds: float) -> bool:
        """True the first time ``name`` is presented within ``seconds`` (single-use references)."""
        with redis_errors():
            fresh = await self._redis.set(
                f"{PREFIX}used:{token_fingerprint(name)}", b"1", nx=True, px=max(1, int(seconds * 1000))
            )
        return bool(fresh)

    async def shared_value(self, name: str) -> str | None:
        """A value every process shares under ``name`` (``client_tokens``: a sealed client token)."""
        with redis_errors(ClusterUnavailable):
            value = await self._redis.get(f"{PREFIX}shared:{name}")
        return None if value is None else as_text(value)

    async def share_value(self, name: str, value: str, seconds: float) -> None:
        with redis_errors(ClusterUnavailable):
            await self._redis.set(f"{PREFIX}shared:{name}", value, px=max(1, int(seconds * 1000)))


def _grace_key(refresh_token: str) -> str:
    return f"{PREFIX}grace:{token_fingerprint(refresh_token)}"


def _ended_key(sid: str) -> str:
    return f"{PREFIX}ended:{token_fingerprint(sid)}"


def _grace_sealer(refresh_token: str) -> Sealer:
    return Sealer.for_secret(refresh_token, "grace")


def _far_future() -> float:
    # Redis expires the entry (PX); the seal's own expiry only needs to outlive it.
    return time.time() + 24 * 3600

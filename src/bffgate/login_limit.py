"""How many password logins a client, and a username, may try per window (``POST /api/auth/login``).

Without a limit, the gateway turns a brute-force attack into calls from its own single address, which
the provider cannot tell apart. Each attempt counts against the client (the connection's peer address:
behind a front proxy that is the proxy, so raise ``BFF_LOGIN_LIMIT_PER_CLIENT`` there or limit at the
proxy) and against the username it names; past either limit the answer is 429 ``too_many_attempts``
with ``Retry-After``, and the provider is not called.

Fixed windows: a counter per key that starts with the first attempt and expires with its window. With
``REDIS_URL`` the counters live in Redis, so every instance shares them; without it, or while Redis is
down (logged), each process counts on its own.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from .errors import ClusterUnavailable, TooManyAttempts
from .redis_client import PREFIX, RedisClient
from .redis_errors import redis_errors

log = logging.getLogger("bffgate.login_limit")

# INCR, and give the key its window when it is new (or lost its expiry); the count and the time left.
_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""
MAX_LOCAL_KEYS = 100_000  # beyond this, expired windows are swept before a new key is added


class Counter(Protocol):
    async def hit(self, key: str, window: float) -> tuple[int, float]:
        """Count one attempt on ``key``; the count in the current window and the seconds it has left."""
        ...


class LocalCounter:
    """Counters in this process: a dict of windows, swept when it grows large."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._windows: dict[str, tuple[int, float]] = {}
        self._clock = clock

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        now = self._clock()
        count, ends = self._windows.get(key, (0, 0.0))
        if ends <= now:
            if len(self._windows) >= MAX_LOCAL_KEYS:
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
            count, ends = 0, now + window
        self._windows[key] = (count + 1, ends)
        return count + 1, ends - now


class RedisCounter:
    """Counters in Redis, shared by every instance; the local ones stand in while Redis is down."""

    def __init__(self, client: RedisClient, fallback: LocalCounter) -> None:
        self._client = client
        self._fallback = fallback

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        try:
            with redis_errors():
                count, left_ms = await self._client.eval(
                    _COUNT_SCRIPT, 1, PREFIX + key, max(1, int(window * 1000))
                )
        except ClusterUnavailable as exc:
            log.warning(
                "login limit: Redis does not answer (%s); counting in this process",
                type(exc.__cause__).__name__,
            )
            return await self._fallback.hit(key, window)
        return int(count), max(int(left_ms), 0) / 1000


class LoginLimiter:
    """The per-client and per-username limits of ``POST /api/auth/login``; 0 turns a limit off."""

    def __init__(self, counter: Counter, *, window: float, per_client: int, per_username: int) -> None:
        self._counter = counter
        self._window = window
        self._per_client = per_client
        self._per_username = per_username

    async def attempt(self, client: str, username: str | None) -> None:
        """Count a login attempt; ``TooManyAttempts`` when the client or the username is over its limit.

        The client's limit is checked first, so a client already refused adds nothing to the
        counters of the usernames it tries.
        """
        if self._per_client:
            await self._count(f"login:c:{client}", self._per_client)
        if self._per_username and username:
            await self._count(f"login:u:{_username_key(username)}", self._per_username)

    async def _count(self, key: str, limit: int) -> None:
        count, left = await self._counter.hit(key, self._window)
        if count > limit:
            raise TooManyAttempts(retry_after=max(1, math.ceil(left)))


def _username_key(username: str) -> str:
    """Usernames are compared case-insensitively and never stored in clear (Redis keys are visible)."""
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]


def create_login_limiter(
    redis: RedisClient | None, *, window: float, per_client: int, per_username: int
) -> LoginLimiter:
    local = LocalCounter()
    counter: Counter = RedisCounter(redis, local) if redis is not None else local
    return LoginLimiter(counter, window=window, per_client=per_client, per_username=per_username)

"""The one place redis-py's exceptions become the gateway's own, and Redis requests are counted:
``with redis_errors(mapped, role):`` around each request to Redis (a command or a pipeline).

The session store maps them to ``StoreUnavailable`` (503, whose answer says nothing of Redis's
message); refresh coordination to ``ClusterUnavailable`` (its callers decide whether to carry on
in-process). Every block counts one round trip of its role (``bffgate_redis_round_trips_total``) and,
when it fails, one failure (``bffgate_redis_failures_total``): a dashboard sees the store failing
even while the problem answers say only ``store_unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter
from redis.exceptions import RedisError

from .errors import StoreUnavailable
from .metrics import REDIS_FAILURES, REDIS_ROUND_TRIPS


class RedisRole:
    """What a Redis request is for; its counters resolved once (``labels()`` locks on every call)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.round_trips: Counter = REDIS_ROUND_TRIPS.labels(name)
        self.failures: Counter = REDIS_FAILURES.labels(name)


STORE = RedisRole("store")
COORDINATION = RedisRole("coordination")
LOGIN_LIMIT = RedisRole("login_limit")


@contextmanager
def redis_errors(mapped: Callable[[RedisError], Exception], role: RedisRole) -> Iterator[None]:
    """Run the block (one Redis request of ``role``); a ``RedisError`` in it is counted and raised
    again as ``mapped(error)``, chained."""
    role.round_trips.inc()
    try:
        yield
    except RedisError as exc:
        role.failures.inc()
        raise mapped(exc) from exc


def store_unavailable(_: RedisError) -> Exception:
    return StoreUnavailable()

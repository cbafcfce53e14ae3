"""The one place redis-py's exceptions become the gateway's own, and Redis requests are counted:
``with redis_errors(role, ...):`` around each request to Redis (a command or a pipeline).

Every Redis call runs in this context manager; no module writes ``except RedisError`` itself. The
session store maps failures to ``StoreUnavailable`` (503, whose answer says nothing of Redis's
message); refresh coordination, the shared login counters, the readiness and ``bffgate check`` probes
to ``ClusterUnavailable``, an internal signal whose catcher decides (carry on in-process, say "Redis
does not answer"). ``OSError`` counts as a Redis failure too: redis-py lets some socket errors through
unwrapped (a Cluster's node discovery racing with a closed connection).

Every block counts one round trip of its role (``bffgate_redis_round_trips_total``) and, when it
fails, one failure (``bffgate_redis_failures_total``): a dashboard sees the store failing even while
the problem answers say only ``store_unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter
from redis.exceptions import RedisError

from .errors import ClusterUnavailable, StoreUnavailable
from .metrics import REDIS_FAILURES, REDIS_ROUND_TRIPS

FAILURES = (RedisError, OSError)
"""What counts as Redis failing (see the module's docstring for ``OSError``)."""


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
def redis_errors(
    role: RedisRole, mapped: Callable[[Exception], Exception] = ClusterUnavailable
) -> Iterator[None]:
    """Run the block (one Redis request of ``role``); a Redis failure in it is counted and raised
    again as ``mapped(error)``, chained."""
    role.round_trips.inc()
    try:
        yield
    except FAILURES as exc:
        role.failures.inc()
        raise mapped(exc) from exc


def store_unavailable(_: Exception) -> Exception:
    return StoreUnavailable()

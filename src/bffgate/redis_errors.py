"""The one place redis-py's exceptions become the gateway's own: ``with redis_errors(...)``.

Every Redis call runs in this context manager; no module writes ``except RedisError`` itself. The
session store maps failures to ``StoreUnavailable`` (503, whose answer says nothing of Redis's
message); refresh coordination, the shared login counters, the readiness and ``bffgate check`` probes
to ``ClusterUnavailable``, an internal signal whose catcher decides (carry on in-process, say "Redis
does not answer"). ``OSError`` counts as a Redis failure too: redis-py lets some socket errors through
unwrapped (a Cluster's node discovery racing with a closed connection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from .errors import ClusterUnavailable, StoreUnavailable

REDIS_FAILURES = (RedisError, OSError)


@contextmanager
def redis_errors(mapped: Callable[[Exception], Exception] = ClusterUnavailable) -> Iterator[None]:
    """Run the block; a Redis failure in it is raised again as ``mapped(error)``, chained."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise mapped(exc) from exc


def store_unavailable(_: Exception) -> Exception:
    return StoreUnavailable()

"""The one place redis-py's exceptions become the gateway's own: ``with redis_errors(...)``.

The session store maps them to ``StoreUnavailable`` (503, whose answer says nothing of Redis's
message); refresh coordination to ``ClusterUnavailable`` (its callers decide whether to carry on
in-process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from .errors import StoreUnavailable


@contextmanager
def redis_errors(mapped: Callable[[RedisError], Exception]) -> Iterator[None]:
    """Run the block; a ``RedisError`` in it is raised again as ``mapped(error)``, chained."""
    try:
        yield
    except RedisError as exc:
        raise mapped(exc) from exc


def store_unavailable(_: RedisError) -> Exception:
    return StoreUnavailable()

"""The Redis client for ``REDIS_URL``: one server, a Sentinel-managed master or a Redis Cluster.

Made once per process (``runtime.py``) and shared by the session store, refresh coordination
(``cluster.py``) and the login limits. ``PREFIX`` starts every key bffgate writes.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from .errors import ClusterUnavailable
from .redis_errors import redis_errors
from .redis_url import RedisTarget, parse_redis_url

log = logging.getLogger("bffgate.redis")

PREFIX = "bffgate:"
MAX_CONNECTIONS = 64
# Redis Cluster's per-node pools cannot block when full (they raise): allow more per node, so a burst
# that a blocking single-server pool would have queued does not fail.
CLUSTER_NODE_MAX_CONNECTIONS = 512

RedisClient = redis.Redis | RedisCluster
"""A client for one server, a Sentinel-managed master (both ``Redis``) or a Redis Cluster."""

_TIMEOUTS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 30,
}


class BlockingSentinelConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's master discovery with the blocking pool's waiting for a free connection."""


def connect(url: str) -> RedisClient:
    """A client for ``REDIS_URL``: one server, a Sentinel service or a Cluster (see ``redis_url``).

    One server and Sentinel get a *blocking* pool: under a burst, commands wait briefly for a free
    connection instead of failing with "Too many connections" — a failure that would wrongly look like
    Redis being down. With Sentinel the pool asks the sentinels for the master on every new connection
    and drops its connections when the master changed (or answers READONLY after a failover), so a
    failover is followed without a restart. A Cluster client discovers the nodes from the startup
    nodes and follows MOVED/ASK redirections.
    """
    target = parse_redis_url(url)
    if target.mode == "sentinel":
        return _sentinel_master(target)
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            max_connections=CLUSTER_NODE_MAX_CONNECTIONS,
            **_TIMEOUTS,
        )
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=5.0, **_TIMEOUTS
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def _sentinel_master(target: RedisTarget) -> redis.Redis:
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": _TIMEOUTS["socket_connect_timeout"],
        "socket_timeout": _TIMEOUTS["socket_timeout"],
        "ssl": target.ssl,
    }
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
        sentinel_kwargs["username"] = target.username
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(
        target.service_name,
        connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=MAX_CONNECTIONS,
        timeout=5.0,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        **_TIMEOUTS,
    )
    return client


async def close(client: RedisClient) -> None:
    """Close ``client`` and, for Sentinel, the connections to the sentinels too."""
    pool = client.connection_pool if isinstance(client, redis.Redis) else None
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


async def warm_up(client: RedisClient) -> None:
    """Discover a Cluster's nodes before the first requests arrive.

    redis-py initializes a Cluster client lazily, on the first command; many concurrent first commands
    race with that discovery and can hit a connection it just closed (an error that is not a
    ``RedisError``). When Redis is down now, the client initializes later, on first use.
    """
    if isinstance(client, RedisCluster):
        try:
            with redis_errors():
                await client.initialize()
        except ClusterUnavailable as exc:
            log.warning("Redis Cluster not reachable at start-up (will retry on first use): %s", exc)


def is_redis_cluster(client: RedisClient) -> bool:
    """Whether keys may live on different nodes (then no multi-key transactions, no multi-key DEL)."""
    return isinstance(client, RedisCluster)


def as_text(value: bytes | str) -> str:
    """Redis answers bytes (we do not ask redis-py to decode, to keep one client for everything)."""
    return value.decode() if isinstance(value, bytes) else value

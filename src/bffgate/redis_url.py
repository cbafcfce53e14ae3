"""``REDIS_URL`` parsing for the three topologies: one server, Sentinel, Cluster.

* ``redis://``, ``rediss://``, ``unix://``: one server, handed to redis-py as it is.
* ``redis+sentinel://[user:password@]host1:26379,host2:26379/<service_name>[/<db>]``
  (``rediss+sentinel://`` for TLS to the sentinels and the master; ``?sentinel_password=…`` when the
  sentinels require their own password): the client asks the sentinels for the master of
  ``service_name`` and asks again after a failover.
* ``redis+cluster://[user:password@]host1:7000[,host2:7001]`` (``rediss+cluster://`` for TLS): the
  startup nodes of a Redis Cluster; the client discovers the rest and follows slot moves.

Kept free of redis-py so that settings validation can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES
SENTINEL_PORT = 26379
REDIS_PORT = 6379

Mode = Literal["single", "sentinel", "cluster"]


@dataclass(frozen=True)
class RedisTarget:
    """What ``REDIS_URL`` names."""

    mode: Mode
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """The topology ``url`` names; ``ValueError`` with a message fit for the user when it is wrong."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
            "redis+cluster:// or rediss+cluster://"
        )
    if scheme in SINGLE_SCHEMES:
        return RedisTarget("single", url)
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, path_and_query = rest[:end], rest[end:]
    path, _, query = path_and_query.partition("?")
    userinfo, _, hostlist = netloc.rpartition("@")
    username, password = _credentials(userinfo)
    ssl = scheme.startswith("rediss")
    if scheme in SENTINEL_SCHEMES:
        nodes = _nodes(hostlist, SENTINEL_PORT)
        parts = [unquote(part) for part in path.split("/") if part]
        if not parts or len(parts) > 2:
            raise ValueError("a Sentinel URL needs the service name after the hosts: …/<service_name>[/<db>]")
        db = _db(parts[1]) if len(parts) == 2 else 0
        params = parse_qs(query, keep_blank_values=True)
        unknown = set(params) - {"sentinel_password"}
        if unknown:
            raise ValueError(f"unknown option(s) in a Sentinel URL: {', '.join(sorted(unknown))}")
        sentinel_password = params["sentinel_password"][-1] if "sentinel_password" in params else None
        return RedisTarget(
            "sentinel", url, nodes, parts[0], db, username, password, sentinel_password or None, ssl
        )
    nodes = _nodes(hostlist, REDIS_PORT)
    if path.strip("/") not in ("", "0") or query:
        raise ValueError(
            "a Cluster URL has no database (always 0) and no options: redis+cluster://h1:p1,h2:p2"
        )
    return RedisTarget("cluster", url, nodes, username=username, password=password, ssl=ssl)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:  # "password@host" is read as a password, as redis-py reads redis://password@host
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None


def _nodes(hostlist: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise ValueError(f"no host in {item!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"the port in {item!r} is not a number") from None
        if not 0 < port < 65536:
            raise ValueError(f"the port in {item!r} is out of range")
        nodes.append((host, port))
    if not nodes:
        raise ValueError("names no host: list host:port pairs separated by commas")
    return tuple(nodes)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the database {text!r} is not a number")
    return int(text)

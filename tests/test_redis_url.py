"""REDIS_URL for one server, Sentinel and Cluster: what each URL names, and clear errors."""

from __future__ import annotations

import pytest

from bffgate.config import load_settings
from bffgate.errors import ConfigError
from bffgate.redis_url import RedisTarget, parse_redis_url

from .harness import SECRET_A, SECRET_R


def test_single_server_urls_pass_through() -> None:
    """redis://, rediss:// and unix:// keep meaning one server, handed to redis-py unchanged."""
    for url in ("redis://127.0.0.1:6379/0", "rediss://u:p@h:6380/1", "unix:///run/redis.sock?db=2"):
        assert parse_redis_url(url) == RedisTarget("single", url)


def test_sentinel_url() -> None:
    """Hosts (default port 26379), service name, db, credentials, sentinel password and TLS."""
    url = "rediss+sentinel://app:s%40cret@h1:26380,h2,[::1]:26381/mymaster/3?sentinel_password=sp"
    target = parse_redis_url(url)
    assert target.mode == "sentinel"
    assert target.nodes == (("h1", 26380), ("h2", 26379), ("::1", 26381))
    assert (target.service_name, target.db) == ("mymaster", 3)
    assert (target.username, target.password, target.sentinel_password) == ("app", "s@cret", "sp")
    assert target.ssl
    plain = parse_redis_url("redis+sentinel://h1/svc")
    assert (plain.db, plain.password, plain.ssl) == (0, None, False)


def test_cluster_url() -> None:
    """Startup nodes (default port 6379), credentials and TLS; database 0 only."""
    target = parse_redis_url("rediss+cluster://:pw@10.0.0.1:7000,10.0.0.2")
    assert target.mode == "cluster"
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379))
    assert (target.username, target.password, target.ssl) == (None, "pw", True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379", "must start with redis://"),
        ("redis+sentinel://h1:26379", "needs the service name"),
        ("redis+sentinel://h1:26379/svc?foo=1", "unknown option"),
        ("redis+sentinel://h1:port/svc", "not a number"),
        ("redis+cluster://h1:7000/2", "no database"),
        ("redis+cluster://", "names no host"),
    ],
)
def test_bad_urls_stop_start_up_with_a_clear_line(
    url: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong REDIS_URL is reported by settings validation, naming REDIS_URL and the problem."""
    for name, value in {
        "REMOTE_API": "http://api.test",
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "REDIS_URL" in str(raised.value)
    assert message in str(raised.value)

"""Redis Sentinel and Redis Cluster (``redis+sentinel://``, ``redis+cluster://``) as real processes:
the Redis store, logout (everywhere), `bffgate check`, a storm over two gateways, a Sentinel failover."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import cast

import aiohttp
import pytest
import redis.asyncio as redis

from bffgate import redis_client

from .conftest import StackFactory
from .harness import SECRET_A, SECRET_R, Browser, Stack, closed_port, serve
from .processes import SENTINEL_SERVICE, cluster_process, sentinel_process
from .test_cli import run_cli
from .test_cluster import Misbehave, gateways, spread
from .upstream import create_test_upstream

pytestmark = pytest.mark.slow

Topology = Callable[[], contextlib.AbstractAsyncContextManager[str]]


@contextlib.asynccontextmanager
async def sentinel_topology() -> AsyncIterator[str]:
    async with sentinel_process() as setup:
        yield setup.url


@contextlib.asynccontextmanager
async def cluster_topology() -> AsyncIterator[str]:
    async with cluster_process() as setup:
        yield setup.url


@pytest.fixture(params=[sentinel_topology, cluster_topology], ids=["sentinel", "cluster"])
async def redis_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    topology: Topology = request.param
    async with topology() as url:
        yield url


@pytest.fixture
async def redis_stack(make_stack: StackFactory, redis_url: str) -> AsyncIterator[Stack]:
    async with make_stack(bff_session_store="redis", redis_url=redis_url) as stack:
        yield stack


async def session_keys(url: str) -> list[bytes]:
    """The stored sessions, read through the same client the gateway uses (all nodes for a Cluster)."""
    client = redis_client.connect(url)
    try:
        if isinstance(client, redis.RedisCluster):
            keys = await client.keys("bffgate:s:*", target_nodes=redis.RedisCluster.PRIMARIES)
        else:
            keys = await client.keys("bffgate:s:*")
    finally:
        await redis_client.close(client)
    return sorted(cast("list[bytes]", keys))  # the stubs assume decoded strings


async def test_login_proxy_refresh_logout_on_the_redis_store(redis_stack: Stack, redis_url: str) -> None:
    """Login stores the session in Redis, proxied calls and a forced refresh work, logout deletes it."""
    browser = await redis_stack.logged_in()
    kept = browser.clone()
    assert len(await session_keys(redis_url)) == 1
    assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
    refreshed = await browser.request("POST", "/api/rest/refreshresttokens")
    assert refreshed.status == 200, refreshed.body
    assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
    assert (await browser.request("GET", "/readyz", csrf=False)).status == 200
    assert (await browser.request("POST", "/api/auth/logout")).status == 200
    answer = await kept.request("GET", "/api/rest/proxy/items")
    assert (answer.status, answer.code) == (401, "unauthenticated")
    assert await session_keys(redis_url) == []
    assert redis_stack.api.refresh_calls == 1


async def test_logout_everywhere_ends_every_session_of_the_user(redis_stack: Stack, redis_url: str) -> None:
    """Logout everywhere deletes the user's sessions, wherever their keys live; the store keeps working."""
    devices = [await redis_stack.logged_in() for _ in range(5)]
    assert len(await session_keys(redis_url)) == 5
    answer = await devices[0].request("POST", "/api/auth/logout", json_body={"everywhere": True})
    assert answer.status == 200
    assert answer.json()["endedSessions"] == 5
    for device in devices[1:]:
        gone = await device.request("GET", "/api/rest/proxy/items")
        assert (gone.status, gone.code) == (401, "unauthenticated")
    assert await session_keys(redis_url) == []
    again = await redis_stack.logged_in()
    assert (await again.request("GET", "/api/rest/proxy/items")).status == 200


async def test_check_pings_each_topology(redis_url: str) -> None:
    """`bffgate check` reaches Sentinel's master and the Cluster, and names the mode."""
    env = {
        "REMOTE_API": f"http://127.0.0.1:{closed_port()}",
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
    }
    result = await asyncio.to_thread(run_cli, "check", env={**env, "REDIS_URL": redis_url})
    mode = redis_url.partition("+")[2].partition(":")[0]
    assert f"ok: Redis answers ({mode};" in result.stdout, result.stderr


async def test_storm_over_two_gateway_processes_refreshes_once(redis_url: str) -> None:
    """100 concurrent requests of one session over two `bffgate serve` processes sharing the topology,
    after the API started rejecting its access token: all 200, exactly one refresh upstream."""
    app, api, _ = create_test_upstream()
    stall = Misbehave(app)
    async with (
        serve(stall, lifespan="off") as api_url,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
        ) as http,
        gateways(api_url, 2, REDIS_URL=redis_url, BFF_SESSION_STORE="redis") as urls,
    ):
        browser = Browser(http, urls[0])
        await browser.login()
        stall.reject_issued_before = time.time()
        answers = await spread(browser, urls, 100)
    assert Counter(a.status for a in answers) == {200: 100}, (answers[0].body, api.refresh_calls)
    assert api.refresh_calls == 1
    assert api.reuse_detected == 0


async def test_sentinel_failover_is_followed_without_a_restart(make_stack: StackFactory) -> None:
    """After Sentinel promotes the replica, the gateway writes to the new master by itself."""
    async with (
        sentinel_process(replica=True) as setup,
        make_stack(bff_session_store="redis", redis_url=setup.url) as stack,
    ):
        browser = await stack.logged_in()
        assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
        assert setup.replica_port is not None
        old_master = redis.Redis(port=setup.master_port)
        replica = redis.Redis(port=setup.replica_port)
        sentinel = redis.Redis(port=setup.sentinel_port)
        try:
            # The session has reached the replica before it is promoted (bounded poll on its keys).
            for _ in range(200):
                if await replica.keys("bffgate:s:*"):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the session never reached the replica")
            # Sentinel refuses (NOGOODSLAVE) until it has fresh INFO from the replica: retry, bounded.
            for _ in range(300):
                try:
                    await sentinel.execute_command(  # type: ignore[no-untyped-call]
                        "SENTINEL", "FAILOVER", SENTINEL_SERVICE
                    )
                    break
                except redis.ResponseError as exc:
                    if "NOGOODSLAVE" not in str(exc):
                        raise
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("Sentinel never found the replica fit for promotion")
            await setup.sentinel_said(b"+switch-master")
            # The old master has been turned into a replica: writes there would now be refused.
            for _ in range(500):
                if (await old_master.info("replication"))["role"] == "slave":
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the old master was never demoted")
            forced = await browser.request("POST", "/api/rest/refreshresttokens")  # a write
            assert forced.status == 200, forced.body
            assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
            assert (await browser.request("GET", "/readyz", csrf=False)).status == 200
            newcomer = await stack.logged_in()
            assert (await newcomer.request("GET", "/api/rest/proxy/items")).status == 200
            assert len(await replica.keys("bffgate:s:*")) == 2  # written to the promoted node
        finally:
            for client in (old_master, replica, sentinel):
                await client.aclose()

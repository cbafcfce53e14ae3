"""Several gateway processes sharing one Redis: one refresh per session across all of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bffgate.demo.api import DemoState
from bffgate.tokens import unverified_claims

from .harness import Answer, Browser, serve
from .processes import RedisProcess, gateway_process, redis_process
from .upstream import Recorder, create_test_upstream

pytestmark = pytest.mark.slow

STORE_MODES = [
    pytest.param({}, id="cookie-store"),
    pytest.param({"BFF_SESSION_STORE": "redis"}, id="redis-store"),
]


class Misbehave:
    """Upstream switches: stall the first refresh (then fail it as if it never reached the provider),
    and reject access tokens issued before a moment (what an expired token gets from the API)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.reject_issued_before = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._stale_token(scope):
            await JSONResponse({"error": "invalid_token"}, 401)(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/auth/refresh" and self.armed:
            self.armed = False
            self.entered.set()
            await self.release.wait()
            await JSONResponse({"error": "temporarily_unavailable"}, 503)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _stale_token(self, scope: Scope) -> bool:
        if not self.reject_issued_before:
            return False
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
        claims = unverified_claims(authorization.removeprefix("Bearer "))
        return claims is not None and float(claims.get("iat", 0)) < self.reject_issued_before


@dataclass
class Upstream:
    url: str
    api: DemoState
    recorder: Recorder
    stall: Misbehave


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app, state, recorder = create_test_upstream()
    stall = Misbehave(app)
    async with serve(stall, lifespan="off") as url:
        yield Upstream(url, state, recorder, stall)


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisProcess]:
    async with redis_process() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def spread(
    browser: Browser, urls: list[str], count: int, path: str = "/api/rest/proxy/items"
) -> list[Answer]:
    """``count`` concurrent requests with the browser's cookies, round-robin over the gateways."""

    async def one(index: int) -> Answer:
        clone = browser.clone()
        clone.base = urls[index % len(urls)]
        return await clone.request("GET", path)

    return await asyncio.gather(*(one(i) for i in range(count)))


@contextlib.asynccontextmanager
async def gateways(api_url: str, count: int, **env: str) -> AsyncIterator[list[str]]:
    async with contextlib.AsyncExitStack() as stack:
        processes = [await stack.enter_async_context(gateway_process(api_url, env)) for _ in range(count)]
        yield [p.url for p in processes]


@pytest.mark.parametrize("mode", STORE_MODES)
async def test_300_requests_over_three_instances_refresh_once(
    upstream: Upstream, redis_server: RedisProcess, client: aiohttp.ClientSession, mode: dict[str, str]
) -> None:
    """300 concurrent requests of one expired session over 3 gateway processes: all 200, one refresh."""
    async with gateways(upstream.url, 3, REDIS_URL=redis_server.url, **mode) as urls:
        browser = Browser(client, urls[0])
        await browser.login()
        # The API now rejects the session's access token, as it would once the token expired: 300
        # concurrent 401s (the tokens live server-side in Redis-store mode, so this works for both).
        upstream.stall.reject_issued_before = time.time()
        answers = await spread(browser, urls, 300)
    assert Counter(a.status for a in answers) == {200: 300}, (answers[0].body, upstream.api.refresh_calls)
    assert upstream.api.refresh_calls == 1
    assert upstream.api.reuse_detected == 0


async def test_200_sessions_times_5_requests_refresh_once_each(
    upstream: Upstream, redis_server: RedisProcess, client: aiohttp.ClientSession
) -> None:
    """Many sessions at once over 3 instances: exactly one refresh per session and no cross-talk."""
    async with gateways(upstream.url, 3, REDIS_URL=redis_server.url) as urls:
        browsers = [Browser(client, urls[i % 3]) for i in range(200)]
        await asyncio.gather(*(b.login() for b in browsers))
        users = {}
        for b in browsers:
            b.forget_access_cookie()
        results = await asyncio.gather(*(spread(b, urls, 5, "/api/rest/proxy/stats") for b in browsers))
        for b, answers in zip(browsers, results, strict=True):
            assert [a.status for a in answers] == [200] * 5, (answers[0].body, upstream.api.refresh_calls)
            families = {a.json()["family"] for a in answers}
            assert len(families) == 1  # every answer of a browser belongs to its own session
            users[families.pop()] = b
    assert len(users) == 200
    assert upstream.api.refresh_calls == 200
    assert set(upstream.api.refresh_calls_by_family.values()) == {1}
    assert upstream.api.reuse_detected == 0


async def test_killed_lock_holder_lease_expires_and_another_instance_refreshes(
    upstream: Upstream, redis_server: RedisProcess, client: aiohttp.ClientSession
) -> None:
    """A gateway killed while refreshing leaves the lock to expire; another one then refreshes, no session lost."""
    env = {"REDIS_URL": redis_server.url, "BFF_UPSTREAM_TIMEOUT": "2"}  # lease = timeout + 5 s
    async with (
        gateway_process(upstream.url, env) as doomed,
        gateway_process(upstream.url, env) as survivor,
    ):
        browser = Browser(client, doomed.url)
        await browser.login()
        browser.forget_access_cookie()
        upstream.stall.armed = True
        holder = asyncio.create_task(browser.clone().request("GET", "/api/rest/proxy/items"))
        await upstream.stall.entered.wait()  # the doomed gateway holds the lock and waits on the provider
        doomed.kill()
        with pytest.raises(aiohttp.ClientError):
            await holder
        waiter = browser.clone()
        waiter.base = survivor.url
        answer = await waiter.request("GET", "/api/rest/proxy/items")
        upstream.stall.release.set()
    assert answer.status == 200
    assert upstream.api.refresh_calls == 1
    assert upstream.api.reuse_detected == 0


async def test_cookie_mode_keeps_serving_through_a_redis_restart(
    upstream: Upstream, redis_server: RedisProcess, client: aiohttp.ClientSession
) -> None:
    """Cookie store: with Redis down refreshes coordinate in-process; after Redis returns, across instances."""
    async with gateways(upstream.url, 2, REDIS_URL=redis_server.url) as urls:
        browser = Browser(client, urls[0])
        await browser.login()
        await redis_server.stop()
        browser.forget_access_cookie()
        during = await spread(browser, urls[:1], 20)
        assert Counter(a.status for a in during) == {200: 20}
        browser.absorb(during[0].set_cookies)
        await redis_server.start()
        browser.forget_access_cookie()
        after = await spread(browser, urls, 40)
    assert Counter(a.status for a in after) == {200: 40}
    assert upstream.api.refresh_calls == 2
    assert upstream.api.reuse_detected == 0


async def test_redis_store_answers_503_while_redis_is_down_and_recovers(
    upstream: Upstream, redis_server: RedisProcess, client: aiohttp.ClientSession
) -> None:
    """Redis store: 503 store_unavailable during the outage (never 500), the same session works after it."""
    async with gateway_process(
        upstream.url, {"REDIS_URL": redis_server.url, "BFF_SESSION_STORE": "redis"}
    ) as gateway:
        browser = Browser(client, gateway.url)
        await browser.login()
        assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
        await redis_server.stop()
        down = await asyncio.gather(
            *(browser.clone().request("GET", "/api/rest/proxy/items") for _ in range(10))
        )
        ready_down = await browser.request("GET", "/readyz", csrf=False)
        await redis_server.start()
        up = await browser.request("GET", "/api/rest/proxy/items")
        ready_up = await browser.request("GET", "/readyz", csrf=False)
    assert {(a.status, a.code) for a in down} == {(503, "store_unavailable")}
    assert ready_down.status == 503
    assert up.status == 200
    assert ready_up.status == 200


async def test_two_workers_share_the_refresh(
    upstream: Upstream, redis_server: RedisProcess, client: aiohttp.ClientSession
) -> None:
    """`bffgate serve --workers 2` with Redis: a storm spread over both workers refreshes once."""
    async with gateway_process(upstream.url, {"REDIS_URL": redis_server.url}, workers=2) as gateway:
        browser = Browser(client, gateway.url)
        await browser.login()
        browser.forget_access_cookie()
        answers = await spread(browser, [gateway.url], 200)
    assert Counter(a.status for a in answers) == {200: 200}
    assert upstream.api.refresh_calls == 1
    assert upstream.api.reuse_detected == 0

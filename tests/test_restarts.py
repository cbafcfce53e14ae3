"""Graceful restarts (issue 16, item 6): SIGTERM stops accepting, lets calls and refreshes in flight
finish, releases the Redis locks, then exits; a restart in the middle of a storm, behind a second
instance, fails no call and loses no session."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bffgate.tokens import unverified_claims

from .harness import Answer, Browser, serve
from .processes import GatewayProcess, gateway_process
from .upstream import create_test_upstream

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/14"


class HoldRefresh:
    """Upstream switches: hold the next refresh at the provider until released (then really refresh),
    and reject access tokens issued before a moment, as the API does once they expire."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.armed = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.reject_issued_before = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._stale(scope):
            await JSONResponse({"error": "invalid_token"}, 401)(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/auth/refresh" and self.armed:
            self.armed = False
            received = await _whole_request(receive)  # the provider has the request...
            self.entered.set()
            await self.release.wait()  # ...and rotates the token even if the caller has gone

            async def replay() -> Message:
                return received.pop(0) if received else {"type": "http.disconnect"}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    def _stale(self, scope: Scope) -> bool:
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
        claims = unverified_claims(authorization.removeprefix("Bearer "))
        return claims is not None and float(claims.get("iat", 0)) < self.reject_issued_before


async def _whole_request(receive: Receive) -> list[Message]:
    messages = [await receive()]
    while messages[-1].get("more_body"):
        messages.append(await receive())
    return messages


@pytest.fixture
async def clean_redis() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@contextlib.asynccontextmanager
async def sigterm(gateway: GatewayProcess) -> AsyncIterator[None]:
    """SIGTERM now; at the end of the block, the process has exited by itself (exit 0 or -SIGTERM)."""
    gateway.process.send_signal(signal.SIGTERM)
    yield
    assert await asyncio.wait_for(gateway.process.wait(), 30) in (0, -signal.SIGTERM)


async def test_a_refresh_cut_off_by_a_restart_does_not_lose_the_session(
    http: aiohttp.ClientSession, clean_redis: redis.Redis
) -> None:
    """The provider has the refresh when SIGTERM comes and the call's graceful time runs out: the
    stopping gateway still takes the provider's answer, shares it in Redis and releases the lock, so
    the second instance serves the session with the rotated tokens — no reuse, no lost session."""
    app, state, _ = create_test_upstream()
    upstream = HoldRefresh(app)
    env = {"REDIS_URL": REDIS_URL}
    async with (
        serve(upstream, lifespan="off") as api_url,
        gateway_process(api_url, env, args=["--graceful-timeout", "0.2"], capture_log=True) as first,
        gateway_process(api_url, env) as second,
    ):
        browser = Browser(http, first.url)
        await browser.login()
        upstream.reject_issued_before = time.time()  # the session's access token is now stale
        upstream.armed = True
        call = asyncio.create_task(browser.clone().request("GET", "/api/rest/proxy/echo/a"))
        await upstream.entered.wait()  # the refresh is at the provider
        async with sigterm(first):
            await first.said(b"timeout graceful shutdown exceeded")  # the browser's call is cut off
            upstream.release.set()  # only now does the provider rotate the refresh token
        with contextlib.suppress(aiohttp.ClientError):
            await call
        assert await clean_redis.keys("bffgate:lock:*") == []  # released, not left to its lease
        browser.base = second.url
        after = await browser.request("GET", "/api/rest/proxy/echo/b")
    assert after.status == 200, after.body
    assert state.reuse_detected == 0
    assert state.refresh_calls == 1


async def test_restarting_one_of_two_gateways_in_a_storm_fails_no_call(
    http: aiohttp.ClientSession, clean_redis: redis.Redis
) -> None:
    """Ten sessions call without pause through two gateways, whose tokens go stale and are refreshed;
    the first gateway is stopped (SIGTERM) and started again mid-storm. A load balancer's rule — a
    connection refused goes to the other instance — is the client's; every call ends in 200."""
    app, state, _ = create_test_upstream()
    upstream = HoldRefresh(app)
    env = {"REDIS_URL": REDIS_URL}
    async with contextlib.AsyncExitStack() as stack:
        api_url = await stack.enter_async_context(serve(upstream, lifespan="off"))
        second = await stack.enter_async_context(gateway_process(api_url, env))
        first = await stack.enter_async_context(gateway_process(api_url, env))
        urls = [first.url, second.url]
        browsers = [Browser(http, second.url) for _ in range(10)]
        for browser in browsers:
            await browser.login()
        stop = asyncio.Event()
        answers: list[Answer] = []
        progress = asyncio.Condition()

        async def calls(index: int, browser: Browser) -> None:
            turn = index
            while not stop.is_set():
                answers.append(await balanced(browser, urls[turn % 2], urls[(turn + 1) % 2]))
                turn += 1
                async with progress:
                    progress.notify_all()

        async def until(count: int) -> None:
            async with asyncio.timeout(60), progress:
                await progress.wait_for(lambda: len(answers) >= count)

        storm = [asyncio.create_task(calls(i, b)) for i, b in enumerate(browsers)]
        await until(100)
        upstream.reject_issued_before = time.time()  # every session refreshes during the restart
        async with sigterm(first):
            await until(200)
        restarted = await stack.enter_async_context(gateway_process(api_url, env))
        urls[0] = restarted.url
        await until(400)
        stop.set()
        await asyncio.gather(*storm)
    assert Counter(a.status for a in answers) == {200: len(answers)}, [
        a.body for a in answers if a.status != 200
    ][:3]
    assert state.reuse_detected == 0


async def balanced(browser: Browser, first: str, other: str) -> Answer:
    """A call as a load balancer makes it: a connection the instance refuses goes to the other one."""
    clone = browser.clone()
    clone.base = first
    try:
        answer = await clone.request("GET", "/api/rest/proxy/echo/storm")
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError):
        clone.base = other
        answer = await clone.request("GET", "/api/rest/proxy/echo/storm")
    browser.absorb(answer.set_cookies)  # rotated cookies, as the browser keeps them
    return answer

"""Logout sticks with the cookie store (security requirement 21): no grace upgrade, refresh or copy
of the cookies brings a logged-out session back, in this process and, with REDIS_URL, in others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from bffgate import create_app

from .conftest import StackFactory
from .harness import Browser, serve, session_cookies_set, settings_for
from .upstream import Recorder, create_test_upstream

REDIS_DB8 = "redis://127.0.0.1:6379/8"


async def test_copy_of_pre_refresh_cookies_is_not_upgraded_after_logout(make_stack: StackFactory) -> None:
    """Within the grace window after a refresh, a copy of the older cookies presented after logout is
    refused (401) and gets no cookies: neither with its still-live access cookie nor without it."""
    async with make_stack() as stack:
        browser = await stack.logged_in()
        before_refresh = browser.clone()
        browser.forget_access_cookie()
        assert (await browser.request("GET", "/api/rest/proxy/me")).status == 200  # refreshed: a grace entry
        assert (await browser.request("POST", "/api/auth/logout")).status == 200
        with_access = await before_refresh.clone().request("GET", "/api/auth/user")
        before_refresh.forget_access_cookie()
        through_grace = await before_refresh.request("GET", "/api/rest/proxy/me")
    for answer in (with_access, through_grace):
        assert answer.status == 401
        assert session_cookies_set(answer) == []


@dataclass
class TwoInstances:
    """Two gateways (cookie store) sharing one Redis and one upstream; a browser for each."""

    on_first: Browser
    on_second: Browser
    recorder: Recorder


@contextlib.asynccontextmanager
async def two_instances(http: aiohttp.ClientSession) -> AsyncIterator[TwoInstances]:
    upstream, _, recorder = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        settings = settings_for(api_url, redis_url=REDIS_DB8)
        async with serve(create_app(settings)) as first, serve(create_app(settings)) as second:
            yield TwoInstances(Browser(http, first), Browser(http, second), recorder)


async def test_logout_on_one_instance_stops_grace_upgrades_on_another(http: aiohttp.ClientSession) -> None:
    """Instance 1 refreshed the session (its grace window holds the result); after a logout on
    instance 2, pre-refresh cookies presented to instance 1 are not upgraded and get no cookies."""
    async with two_instances(http) as instances:
        on_first, on_second = instances.on_first, instances.on_second
        await on_first.login()
        before_refresh = on_first.clone()
        on_first.forget_access_cookie()
        assert (await on_first.request("GET", "/api/rest/proxy/me")).status == 200
        on_second.cookies = dict(on_first.cookies)
        assert (await on_second.request("POST", "/api/auth/logout")).status == 200
        before_refresh.forget_access_cookie()
        answer = await before_refresh.request("GET", "/api/rest/proxy/me")  # to instance 1
        assert answer.status == 401
        assert session_cookies_set(answer) == []
        after = await on_first.request("POST", "/api/rest/refreshresttokens")  # the logged-out cookies
        assert after.status == 401
        assert session_cookies_set(after) == []


async def test_logout_on_another_instance_during_the_api_call_after_a_refresh(
    http: aiohttp.ClientSession,
) -> None:
    """Instance 1 refreshes, then waits for the API; instance 2 logs the session out meanwhile: the
    API's answer reaches the browser without session cookies."""
    async with two_instances(http) as instances:
        on_first, on_second = instances.on_first, instances.on_second
        await on_first.login()
        on_second.cookies = dict(on_first.cookies)
        on_first.forget_access_cookie()
        in_flight = asyncio.create_task(on_first.request("GET", "/api/rest/proxy/slow"))
        await instances.recorder.slow_entered.wait()  # refreshed, now at the API
        assert (await on_second.request("POST", "/api/auth/logout")).status == 200
        instances.recorder.release_slow.set()
        answer = await in_flight
        assert answer.status == 200  # the API's answer itself is passed on
        assert session_cookies_set(answer) == []

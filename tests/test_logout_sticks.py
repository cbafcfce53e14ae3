"""Logout sticks with the cookie store (security requirement 21): no grace upgrade, refresh or copy
of the cookies brings a logged-out session back, in this process and, with REDIS_URL, in others."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from bffgate import create_app

from .conftest import StackFactory
from .harness import Browser, serve, session_cookies_set, settings_for
from .upstream import create_test_upstream

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


@contextlib.asynccontextmanager
async def two_instances(http: aiohttp.ClientSession) -> AsyncIterator[tuple[Browser, Browser]]:
    """Two gateways (cookie store) sharing one Redis and one upstream; a browser for each."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        settings = settings_for(api_url, redis_url=REDIS_DB8)
        async with serve(create_app(settings)) as first, serve(create_app(settings)) as second:
            yield Browser(http, first), Browser(http, second)


async def test_logout_on_one_instance_stops_grace_upgrades_on_another(http: aiohttp.ClientSession) -> None:
    """Instance 1 refreshed the session (its grace window holds the result); after a logout on
    instance 2, pre-refresh cookies presented to instance 1 are not upgraded and get no cookies."""
    async with two_instances(http) as (on_first, on_second):
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

"""nginx's auth_request recipe with the Redis session store (BFF_SESSION_STORE=redis): the browser holds
one sealed ticket, the tokens live in Redis (db 10, random keys), bffgate decides, nginx proxies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bffgate import redis_client
from bffgate.cookies import CookieJar
from bffgate.stores.redis import RedisSessionStore

from ..harness import Browser
from .fronts import Front, assert_no_token, front_stack

REDIS_URL = "redis://127.0.0.1:6379/10"


@contextlib.asynccontextmanager
async def redis_recipe(http: aiohttp.ClientSession, **overrides: Any) -> AsyncIterator[Front]:
    """nginx's recipe with Redis sessions; no login limit (its counters live in Redis and would outlast a
    run: reruns would see 429)."""
    async with front_stack(
        "nginx",
        http,
        bff_session_store="redis",
        redis_url=REDIS_URL,
        bff_login_limit_per_username=0,
        **overrides,
    ) as started:
        yield started


@pytest.fixture
async def front(http: aiohttp.ClientSession) -> AsyncIterator[Front]:
    async with redis_recipe(http) as started:
        yield started


async def expire_access_token(front: Front, browser: Browser) -> None:
    """Move the stored session's token past its refresh point, as time would (tokens live in Redis)."""
    client = redis_client.connect(REDIS_URL)
    try:
        store = RedisSessionStore(front.settings, CookieJar(secure=front.settings.bff_cookie_secure), client)
        session = await store.load(browser.cookies)
        assert session is not None, "the browser's ticket names a session in Redis"
        past = time.time() - 1
        await store.save(dataclasses.replace(session, access_expires_at=past), existing=True)
    finally:
        await redis_client.close(client)


async def test_login_proxied_get_one_refresh_for_a_storm_and_logout_with_redis_sessions(front: Front) -> None:
    browser = await front.logged_in()
    assert len(browser.cookies) == 1, "one sealed ticket, no tokens in the browser"
    got = await browser.request("GET", "/api/echo/items?q=1")
    assert got.status == 200, got.body
    first_token = front.recorder.requests[-1].headers["authorization"][len("Bearer ") :]
    assert front.api.verify_access_token(first_token) is not None

    await expire_access_token(front, browser)
    # The GET above left a cached "yes" (keyed on method, Cookie, X-CSRF, Origin); real expiry comes
    # after it (a decision is never cached past the refresh point), here only Redis moved: the storm
    # asks under another key (no X-CSRF), so every request reaches bffgate.
    clones = [browser.clone() for _ in range(50)]
    storm = await asyncio.gather(*(c.request("GET", "/api/echo/storm", csrf=False) for c in clones))
    assert [a.status for a in storm] == [200] * 50, storm[0].body
    assert front.api.refresh_calls == 1
    assert front.api.reuse_detected == 0
    sent = {r.headers["authorization"] for r in front.recorder.requests if r.raw_path == "/echo/storm"}
    assert len(sent) == 1 and first_token not in next(iter(sent)), "all 50 carry the one new token"
    # The ticket names the session, whose tokens changed in Redis: a request that arrived after the
    # refresh finished needs no new cookie. One that got one is never kept by a cache.
    for answer in storm:
        assert (answer.headers["Cache-Control"] == "no-store") == bool(answer.set_cookies)
    assert_no_token(front, got, *storm)

    kept = browser.clone()
    assert (await browser.request("POST", "/api/auth/logout")).status == 200
    assert browser.cookies == {}
    after = await browser.request("GET", "/api/echo/x")
    assert (after.status, after.code) == (401, "unauthenticated")
    # A copy of the ticket names a session Redis no longer holds. (A decision nginx cached for it
    # would be reused for at most BFF_FORWARD_AUTH_CACHE_SECONDS: this request's key was never cached.)
    copied = await kept.request("POST", "/api/echo/x", json_body={})
    assert (copied.status, copied.code) == (401, "unauthenticated")
    assert [r for r in front.recorder.requests if r.raw_path == "/echo/x"] == []


@pytest.fixture
async def briefly_kept(http: aiohttp.ClientSession) -> AsyncIterator[Front]:
    """The Redis recipe with decisions kept for one second (BFF_FORWARD_AUTH_CACHE_SECONDS=1)."""
    async with redis_recipe(http, bff_forward_auth_cache_seconds=1) as started:
        yield started


def decision_files(front: Front) -> list[Path]:
    return [p for p in (front.directory / "decisions").rglob("*") if p.is_file()]


async def test_a_decision_replaced_under_the_same_key_is_read_anew_not_from_an_open_file(
    briefly_kept: Front,
) -> None:
    """A request with the ticket from before a refresh (one in flight while another refreshed) still
    names the session: its new "yes", with the new token, replaces the old decision under the same key,
    as a new file. nginx holds kept decisions' files open (open_file_cache): a HIT after the replacement
    must read the new file."""
    front = briefly_kept
    browser = await front.logged_in()
    earlier = browser.clone()  # keeps the ticket from before the refresh
    for _ in range(2):
        kept = await earlier.request("GET", "/api/echo/kept", csrf=False)
    assert kept.headers["X-Bffgate-Decision-Cache"] == "HIT", "the decision's file is now held open"
    (decision_file,) = decision_files(front)
    first_inode = decision_file.stat().st_ino
    old_token = front.recorder.requests[-1].headers["authorization"]

    await expire_access_token(front, browser)
    refreshing = await browser.request("GET", "/api/echo/refresh")  # with X-CSRF: another key
    assert refreshing.status == 200 and refreshing.set_cookies, "the refresh seals a new ticket"
    assert front.api.refresh_calls == 1
    # The old key's "yes" (the old token) is used until it expires, after one second: then bffgate is
    # asked, and its "yes" for the earlier ticket is kept under the same key.
    deadline = time.monotonic() + 10
    while (await earlier.request("GET", "/api/echo/kept", csrf=False)).headers[
        "X-Bffgate-Decision-Cache"
    ] == "HIT":
        assert time.monotonic() < deadline, "a kept decision outlived BFF_FORWARD_AUTH_CACHE_SECONDS"
        await asyncio.sleep(0.05)
    assert decision_file.stat().st_ino != first_inode, "the new decision replaced the old file"
    replaced_at = len(front.recorder.requests) - 1
    again = await earlier.request("GET", "/api/echo/kept", csrf=False)
    assert again.headers["X-Bffgate-Decision-Cache"] == "HIT"
    sent = {r.headers["authorization"] for r in front.recorder.requests[replaced_at:]}
    assert len(sent) == 1 and old_token not in sent, "the new decision and its HIT carry the new token"
    assert front.api.refresh_calls == 1

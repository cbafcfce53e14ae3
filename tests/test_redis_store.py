"""BFF_SESSION_STORE=redis end to end: one small cookie, tokens encrypted in Redis, logout everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis.asyncio as redis

from .conftest import StackFactory
from .harness import Stack, parse_set_cookie
from .processes import RedisProcess, redis_process


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisProcess]:
    async with redis_process() as server:
        yield server


@pytest.fixture
async def redis_stack(make_stack: StackFactory, redis_server: RedisProcess) -> AsyncIterator[Stack]:
    async with make_stack(bff_session_store="redis", redis_url=redis_server.url) as stack:
        yield stack


async def test_browser_holds_one_small_sealed_cookie(redis_stack: Stack) -> None:
    """Login sets only __Host-sessionEtls: a small sealed ticket, Secure, HttpOnly, SameSite=Strict."""
    answer = await redis_stack.browser().login()
    cookies = [parse_set_cookie(h) for h in answer.set_cookies]
    assert [name for name, _, _ in cookies] == ["__Host-sessionEtls"]
    _, value, attributes = cookies[0]
    assert len(value) < 400
    assert {"secure", "httponly"} <= set(attributes) and attributes["samesite"] == "Strict"


async def test_tokens_are_encrypted_at_rest(redis_stack: Stack, redis_server: RedisProcess) -> None:
    """Redis holds the session sealed: neither token appears in any stored value."""
    browser = await redis_stack.logged_in()
    assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200
    sent = [r.headers["authorization"][7:] for r in redis_stack.recorder.to("/items")]
    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    try:
        keys = cast("list[bytes]", await client.keys("bffgate:*"))  # the stubs assume decoded strings
        values = [await client.dump(key) or b"" for key in keys]
        [session_key] = [key for key in keys if key.startswith(b"bffgate:s:")]
        session_value = cast("bytes", await client.get(session_key) or b"")
    finally:
        await client.aclose()
    assert session_value.startswith(b"eyJ") and session_value.count(b".") == 4  # a compact JWE
    for value in values:
        assert sent[0].encode() not in value


async def test_logout_deletes_the_server_side_session(redis_stack: Stack) -> None:
    """After logout, even a browser that kept the old cookie has no session."""
    browser = await redis_stack.logged_in()
    kept = browser.clone()
    assert (await browser.request("POST", "/api/auth/logout")).status == 200
    answer = await kept.request("GET", "/api/rest/proxy/items")
    assert (answer.status, answer.code) == (401, "unauthenticated")


async def test_logout_everywhere_ends_all_sessions_of_the_user(redis_stack: Stack) -> None:
    """`{"everywhere": true}` ends the user's other sessions too; other users are untouched."""
    laptop, phone = await redis_stack.logged_in(), await redis_stack.logged_in()
    answer = await laptop.request("POST", "/api/auth/logout", json_body={"everywhere": True})
    assert answer.status == 200
    assert answer.json()["endedSessions"] == 2
    phone_answer = await phone.request("GET", "/api/rest/proxy/items")
    assert (phone_answer.status, phone_answer.code) == (401, "unauthenticated")


async def test_readyz_reports_redis(redis_stack: Stack, redis_server: RedisProcess) -> None:
    """/readyz is 200 with Redis up and 503 naming the store when Redis is down."""
    browser = redis_stack.browser()
    assert (await browser.request("GET", "/readyz", csrf=False)).status == 200
    await redis_server.stop()
    down = await browser.request("GET", "/readyz", csrf=False)
    assert down.status == 503
    assert down.json()["checks"]["store"] != "ok"

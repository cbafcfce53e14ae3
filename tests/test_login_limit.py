"""Issue 11, item 11d: ``POST /api/auth/login`` attempts are limited per client and per username.

Real gateways and the recording upstream; across instances through the real Redis (db 9); the
counters' window logic on a fake clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from bffgate import create_app
from bffgate.login_limit import LocalCounter

from .conftest import StackFactory
from .harness import CREDENTIALS, Answer, Browser, Stack, closed_port, serve, settings_for
from .processes import gateway_process
from .upstream import create_test_upstream

REDIS_LIMIT_URL = "redis://127.0.0.1:6379/9"
WRONG = {"username": "demo", "password": "wrong"}


async def attempt(browser: Browser, credentials: dict[str, Any], **headers: str) -> Answer:
    return await browser.request(
        "POST", "/api/auth/login", json_body=credentials, headers=headers, keep_cookies=False
    )


def assert_limited(answer: Answer, window: float) -> None:
    assert (answer.status, answer.code) == (429, "too_many_attempts"), answer.body
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert answer.set_cookies == []


async def test_client_over_its_limit_gets_429_and_the_api_is_not_asked(make_stack: StackFactory) -> None:
    """Past BFF_LOGIN_LIMIT_PER_CLIENT attempts, 429 with Retry-After; the login endpoint hears nothing."""
    async with make_stack(bff_login_limit_per_client=3, bff_login_limit_per_username=0) as stack:
        browser = stack.browser()
        first = [await attempt(browser, {"username": f"user{n}", "password": "x"}) for n in range(2)]
        third = await attempt(browser, CREDENTIALS)
        reached = len(stack.recorder.to("/auth/login"))
        fourth = await attempt(browser, CREDENTIALS)
        assert len(stack.recorder.to("/auth/login")) == reached
    assert [a.status for a in first] == [401, 401]
    assert third.status == 200
    assert_limited(fourth, stack.settings.bff_login_window)


async def test_client_identity_is_the_socket_peer_not_a_header(stack: Stack) -> None:
    """`bffgate serve`: a browser cannot reset its count by claiming another address in a header."""
    env = {"BFF_LOGIN_LIMIT_PER_CLIENT": "2", "BFF_LOGIN_LIMIT_PER_USERNAME": "0"}
    async with gateway_process(stack.api_url, env) as gateway:
        browser = Browser(stack.http, gateway.url)
        answers = []
        for n in range(3):
            claimed = {"X-Forwarded-For": f"203.0.113.{n}", "X-Real-IP": f"198.51.100.{n}"}
            answers.append(await attempt(browser, WRONG, **claimed))
    assert [a.status for a in answers[:2]] == [401, 401]
    assert_limited(answers[2], 300)


async def test_username_over_its_limit_is_refused_from_any_client_state(make_stack: StackFactory) -> None:
    """Past BFF_LOGIN_LIMIT_PER_USERNAME attempts on one username (any case), 429; other usernames go on."""
    async with make_stack(bff_login_limit_per_client=100, bff_login_limit_per_username=2) as stack:
        browser = stack.browser()
        wrong = [
            await attempt(browser, WRONG),
            await attempt(browser, {"username": " DEMO", "password": "x"}),
        ]
        right_password = await attempt(browser, CREDENTIALS)
        other_user = await attempt(browser, {"username": "alice", "password": "x"})
        reached = len(stack.recorder.to("/auth/login"))
    assert [a.status for a in wrong] == [401, 401]
    assert_limited(right_password, stack.settings.bff_login_window)
    assert other_user.status == 401  # the API's own refusal: alice's attempts are counted apart
    assert reached == 3  # demo twice, alice once: the refused attempt never reached the API


async def test_default_limits_leave_ordinary_use_alone(stack: Stack) -> None:
    """Control: with the defaults, a few logins and a typo or two all reach the API."""
    browser = stack.browser()
    answers = [await attempt(browser, WRONG), *[await attempt(browser, CREDENTIALS) for _ in range(4)]]
    assert [a.status for a in answers] == [401, 200, 200, 200, 200]


@pytest.fixture
async def limit_redis() -> AsyncIterator[redis.Redis]:
    """Redis db 9, without login counters before and after the test."""
    client = redis.Redis.from_url(REDIS_LIMIT_URL)

    async def clean() -> None:
        keys = [key async for key in client.scan_iter("bffgate:login:*")]
        if keys:
            await client.delete(*keys)

    await clean()
    try:
        yield client
    finally:
        await clean()
        await client.aclose()


@contextlib.asynccontextmanager
async def two_instances(**overrides: Any) -> AsyncIterator[tuple[str, str, Any]]:
    """Two gateways on one upstream with the same settings (and so the same REDIS_URL)."""
    upstream, _state, recorder = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        settings = settings_for(api_url, **overrides)
        async with serve(create_app(settings)) as one, serve(create_app(settings)) as two:
            yield one, two, recorder


async def test_limits_hold_across_instances_with_redis(limit_redis: redis.Redis, stack: Stack) -> None:
    """With REDIS_URL the count is shared: attempts spread over two instances are limited as one."""
    limits = {"bff_login_limit_per_client": 100, "bff_login_limit_per_username": 3}
    async with two_instances(redis_url=REDIS_LIMIT_URL, **limits) as (one, two, recorder):
        answers = []
        for base in (one, two, one, two):
            answers.append(await attempt(Browser(stack.http, base), WRONG))
        assert len(recorder.to("/auth/login")) == 3
    assert [a.status for a in answers[:3]] == [401, 401, 401]
    assert_limited(answers[3], 300)
    [key] = [key async for key in limit_redis.scan_iter("bffgate:login:u:*")]
    assert b"demo" not in key  # usernames are not stored in clear
    assert 0 < await limit_redis.ttl(key) <= 300


async def test_without_redis_each_instance_counts_alone(stack: Stack) -> None:
    """Control for the test above: without REDIS_URL the same attempts are not limited."""
    limits = {"bff_login_limit_per_client": 100, "bff_login_limit_per_username": 3}
    async with two_instances(**limits) as (one, two, recorder):
        answers = [await attempt(Browser(stack.http, base), WRONG) for base in (one, two, one, two)]
        assert len(recorder.to("/auth/login")) == 4
    assert [a.status for a in answers] == [401, 401, 401, 401]


async def test_redis_down_falls_back_to_counting_in_process(make_stack: StackFactory) -> None:
    """While Redis does not answer, the limit still holds (per process), and logins are never a 500."""
    redis_url = f"redis://127.0.0.1:{closed_port()}/9"
    async with make_stack(
        redis_url=redis_url, bff_login_limit_per_client=2, bff_login_limit_per_username=0
    ) as stack:
        browser = stack.browser()
        answers = [await attempt(browser, CREDENTIALS) for _ in range(3)]
    assert [a.status for a in answers[:2]] == [200, 200]
    assert_limited(answers[2], stack.settings.bff_login_window)


async def test_local_windows_start_again_when_they_end() -> None:
    """A window counts from its first attempt and ends ``window`` seconds later (fake clock)."""
    now = [1000.0]
    counter = LocalCounter(clock=lambda: now[0])
    assert await counter.hit("k", 60) == (1, 60)
    now[0] += 59
    assert await counter.hit("k", 60) == (2, 1)
    assert await counter.hit("other", 60) == (1, 60)
    now[0] += 1
    assert await counter.hit("k", 60) == (1, 60)

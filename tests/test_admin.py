"""Session administration (issue 16, item 4): an operator lists a user's sessions (no tokens) and ends
one or all of them, over ``/admin/sessions`` (admin bearer token or the operators' listener, never a
user's cookie) or with ``bffgate sessions list|end``; every action is logged."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from .conftest import StackFactory
from .harness import SECRET_A, SECRET_R, Browser, Stack
from .processes import free_port
from .test_cli import run_cli

REDIS_URL = "redis://127.0.0.1:6379/12"
TOKEN = "admin-token-0123456789abcdef"
ADMIN = {"Authorization": "Bearer " + TOKEN}
REDIS_STORE = {"bff_session_store": "redis", "redis_url": REDIS_URL}


@pytest.fixture(autouse=True)
async def clean_redis() -> AsyncIterator[None]:
    client = redis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield
    await client.flushdb()
    await client.aclose()


async def _signed_in(stack: Stack, count: int) -> list[Browser]:
    browsers = [stack.browser() for _ in range(count)]
    for browser in browsers:
        await browser.login()
    return browsers


async def _works(browser: Browser) -> bool:
    return (await browser.request("GET", "/api/rest/proxy/echo/x")).status == 200


async def test_admin_token_lists_and_ends_sessions_and_a_users_cookie_cannot(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_stack(bff_admin_token=TOKEN, **REDIS_STORE) as stack:
        first, second = await _signed_in(stack, 2)
        anonymous = await stack.browser().request("GET", "/admin/sessions?id=demo", csrf=False)
        with_cookie = await first.request("GET", "/admin/sessions?id=demo")
        wrong = await stack.browser().request(
            "GET", "/admin/sessions?id=demo", csrf=False, headers={"Authorization": "Bearer " + TOKEN[:-1]}
        )
        listed = await stack.browser().request("GET", "/admin/sessions?id=demo", csrf=False, headers=ADMIN)
        no_user = await stack.browser().request("GET", "/admin/sessions", csrf=False, headers=ADMIN)
        sessions = listed.json()["sessions"]
        with caplog.at_level(logging.INFO, logger="bffgate.admin"):
            one = await stack.browser().request(
                "DELETE",
                f"/admin/sessions?id=demo&session={sessions[0]['session']}",
                csrf=False,
                headers=ADMIN,
            )
            after_one = [await _works(first), await _works(second)]
            rest = await stack.browser().request(
                "DELETE", "/admin/sessions?id=demo", csrf=False, headers=ADMIN
            )
            after_all = [await _works(first), await _works(second)]
        tokens = {
            r.headers["authorization"][7:] for r in stack.recorder.requests if "authorization" in r.headers
        }
    for refused in (anonymous, with_cookie, wrong):
        assert (refused.status, refused.code) == (401, "admin_unauthorized")
    assert (no_user.status, no_user.code) == (400, "invalid_request")
    assert listed.status == 200
    assert len(sessions) == 2
    assert set(sessions[0]) == {"session", "createdAt", "lastRefreshAt", "expiresAt"}
    for secret in tokens | set(first.cookies.values()) | set(second.cookies.values()):
        assert secret not in listed.body.decode()
    assert (one.status, one.json()) == (200, {"endedSessions": 1})
    assert sorted(after_one) == [False, True]  # that session only
    assert (rest.status, rest.json()) == (200, {"endedSessions": 1})
    assert after_all == [False, False]
    ended = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "admin_end"]
    assert len(ended) == 2


async def test_without_admin_token_only_the_operators_listener_serves_it(make_stack: StackFactory) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with make_stack(bff_metrics_address=address, **REDIS_STORE) as stack:
        (browser,) = await _signed_in(stack, 1)
        public = await browser.request("GET", "/admin/sessions?id=demo")
        async with stack.http.get(f"http://{address}/admin/sessions?id=demo") as answer:
            operators = await answer.json()
    assert public.status == 404
    assert len(operators["sessions"]) == 1


async def test_sessions_command_lists_and_ends_a_users_sessions(make_stack: StackFactory) -> None:
    async with make_stack(**REDIS_STORE) as stack:
        browsers = await _signed_in(stack, 2)
        env = {
            "REMOTE_API": stack.api_url,
            "ETLS_ACCESS": SECRET_A,
            "ETLS_REFRESH": SECRET_R,
            "BFF_SESSION_STORE": "redis",
            "REDIS_URL": REDIS_URL,
        }
        listed = await asyncio.to_thread(run_cli, "sessions", "list", "--id", "demo", env=env)
        unknown = await asyncio.to_thread(
            run_cli, "sessions", "end", "--id", "demo", "--session", "000000000000", env=env
        )
        ended = await asyncio.to_thread(run_cli, "sessions", "end", "--id", "demo", env=env)
        still_working = [await _works(b) for b in browsers]
    assert listed.returncode == 0, listed.stderr
    fingerprints = {s["session"] for s in json.loads(listed.stdout)["sessions"]}
    assert len(fingerprints) == 2
    assert all(len(f) == 12 for f in fingerprints)
    assert unknown.returncode == 1 and "no session with that fingerprint" in unknown.stderr
    assert json.loads(ended.stdout) == {"endedSessions": 2}
    assert still_working == [False, False]


async def test_cookie_store_has_no_session_administration(make_stack: StackFactory) -> None:
    async with make_stack(bff_admin_token=TOKEN) as stack:
        answer = await stack.browser().request("GET", "/admin/sessions?id=demo", csrf=False, headers=ADMIN)
    assert (answer.status, answer.code) == (404, "not_found")

"""Session administration (issue 16, item 4): an operator lists a user's sessions (no tokens) and ends
one or all of them, over ``/admin/sessions`` (admin bearer token or the operators' listener, never a
user's cookie) or with ``bffgate sessions list|end``; every action is logged."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
import time_machine

from .conftest import StackFactory
from .harness import CREDENTIALS, SECRET_A, SECRET_R, Browser, Stack
from .processes import free_port
from .test_cli import run_cli

REDIS_URL = "redis://127.0.0.1:6379/14"
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
    assert set(sessions[0]) == {
        "session",
        "createdAt",
        "lastRefreshAt",
        "lastSeenAt",
        "userAgent",
        "expiresAt",
    }
    for secret in tokens | set(first.cookies.values()) | set(second.cookies.values()):
        assert secret not in listed.body.decode()
    assert (one.status, one.json()) == (200, {"endedSessions": 1})
    assert sorted(after_one) == [False, True]  # that session only
    assert (rest.status, rest.json()) == (200, {"endedSessions": 1})
    assert after_all == [False, False]
    ended = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "admin_end"]
    assert len(ended) == 2


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)


async def test_listing_shows_each_sessions_user_agent_summary_and_when_it_was_last_seen(
    make_stack: StackFactory,
) -> None:
    """Two devices of one user: each session is listed with a summary of its browser (never the raw
    header) and when it was last used, which moves when the session is used later."""
    async with make_stack(bff_admin_token=TOKEN, access_ttl=3600, **REDIS_STORE) as stack:
        desktop, phone = stack.browser(), stack.browser()
        started = int(time.time())
        for browser, agent in ((desktop, FIREFOX), (phone, PHONE + " tail-with-a-secret-0b1c")):
            answer = await browser.request(
                "POST", "/api/auth/login", json_body=CREDENTIALS, headers={"User-Agent": agent}
            )
            assert answer.status == 200
        admin = stack.browser()
        first = await admin.request("GET", "/admin/sessions?id=demo", csrf=False, headers=ADMIN)
        with time_machine.travel(time.time() + 600, tick=True):  # ten minutes later, on the phone
            used = await phone.request("GET", "/api/rest/proxy/echo/x", headers={"User-Agent": PHONE})
            later = await admin.request("GET", "/admin/sessions?id=demo", csrf=False, headers=ADMIN)
    assert used.status == 200
    listed = {s["userAgent"]: s for s in first.json()["sessions"]}
    assert set(listed) == {"Firefox 133 on Linux", "Safari 17 on iOS"}
    assert all(started <= s["lastSeenAt"] <= started + 60 for s in listed.values())
    assert "tail-with-a-secret" not in first.body.decode() + later.body.decode()
    moved = {s["userAgent"]: s["lastSeenAt"] for s in later.json()["sessions"]}
    assert moved["Safari 17 on iOS"] >= started + 600  # the phone was seen again
    assert moved["Firefox 133 on Linux"] == listed["Firefox 133 on Linux"]["lastSeenAt"]


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

"""The upstream goes down and comes back on the same port: no session is lost, the same cookies work again.

``RestartableUpstream`` runs the tests' upstream (demo API + recording endpoints) on a port it keeps, so
it can be stopped — connections are then refused — and started again with the same app object: the
demo API keeps its memory (token families, counters), as a real API that restarts would keep its database.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import uvicorn

from bffgate.demo.api import DEMO_USER, DemoState

from .harness import (
    REFRESH,
    Answer,
    Browser,
    ReadyServer,
    closed_port,
    parse_set_cookie,
    running_gateway,
    settings_for,
)
from .upstream import Recorder, RecordingMiddleware, create_test_upstream


class RestartableUpstream:
    """The tests' upstream on a fixed loopback port, stoppable and restartable with its state intact."""

    def __init__(self) -> None:
        self.app: RecordingMiddleware
        self.api: DemoState
        self.recorder: Recorder
        self.app, self.api, self.recorder = create_test_upstream()
        self._sock = self._bind(0)
        self.port: int = self._sock.getsockname()[1]
        self._server: ReadyServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    async def start(self) -> None:
        """Serve on the same port again (a new listening socket; the port is bound with SO_REUSEADDR)."""
        assert self._task is None, "already running"
        if self._sock.fileno() == -1:
            self._sock = self._bind(self.port)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", server_header=False)
        server = ReadyServer(config)
        task = asyncio.create_task(server.serve(sockets=[self._sock]))
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()
        if not server.ready.is_set():
            raise RuntimeError("the upstream did not start within 10 s")
        self._server, self._task = server, task

    async def stop(self) -> None:
        """Stop listening and close every connection: from now on connections are refused."""
        assert self._server is not None, "not running"
        assert self._task is not None, "not running"
        self._server.should_exit = True
        await self._task
        self._sock.close()
        self._server = self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None


@pytest.fixture
async def upstream() -> AsyncIterator[RestartableUpstream]:
    running = RestartableUpstream()
    await running.start()
    try:
        yield running
    finally:
        if running.running:
            await running.stop()


@pytest.fixture
async def gateway_url(upstream: RestartableUpstream) -> AsyncIterator[str]:
    settings = settings_for(upstream.url, bff_logout_url="/auth/logout")
    async with running_gateway(settings) as url:
        yield url


@pytest.fixture
async def browser(http: aiohttp.ClientSession, gateway_url: str) -> Browser:
    logged_in = Browser(http, gateway_url)
    await logged_in.login()
    return logged_in


def cleared(answer: Answer) -> set[str]:
    parsed = (parse_set_cookie(header) for header in answer.set_cookies)
    return {name for name, _, attributes in parsed if attributes.get("max-age") == "0"}


def assert_problem(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.code == code
    assert b"Traceback" not in answer.body
    assert b"eyJ" not in answer.body  # no JWT access token, no sealed value


def calls_to(recorder: Recorder, prefix: str) -> int:
    return len(recorder.to(prefix))


# -- the helper itself ----------------------------------------------------------------------------


async def test_restartable_upstream_refuses_connections_when_down_and_keeps_its_state(
    upstream: RestartableUpstream,
) -> None:
    """Stopped, the upstream's port refuses connections; restarted, it serves the same demo state."""
    grant = upstream.api.login("demo")
    await upstream.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", upstream.port)
    await upstream.start()
    _reader, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    writer.close()
    await writer.wait_closed()
    assert upstream.api.verify_access_token(grant.access_token) is not None


# -- a proxied call -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "envelope"),
    [
        ("GET", "/api/rest/proxy/items", None),
        ("POST", "/api/rest/proxy/echo/x", None),
        ("POST", "/api/rest/customfetch", {"url": "/items"}),
    ],
    ids=["proxy-get", "proxy-post", "customfetch"],
)
async def test_proxied_call_while_upstream_is_down_is_502_and_the_same_cookies_work_after(
    upstream: RestartableUpstream,
    browser: Browser,
    method: str,
    path: str,
    envelope: dict[str, str] | None,
) -> None:
    """An unreachable API gives 502 upstream_unavailable and keeps the session; after recovery it just works."""
    held = dict(browser.cookies)
    await upstream.stop()

    for _ in range(3):  # however often the browser retries during the outage
        answer = await browser.request(method, path, json_body=envelope)
        assert_problem(answer, 502, "upstream_unavailable")
        assert answer.set_cookies == []
    assert browser.cookies == held

    await upstream.start()
    answer = await browser.request(method, path, json_body=envelope)
    assert answer.status == 200, answer.body[:300]
    assert browser.cookies == held  # nothing had to change: the session was never touched
    assert upstream.api.refresh_calls == 0
    assert (await browser.request("GET", "/api/rest/proxy/me")).json() == dict(DEMO_USER)


# -- a refresh ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/rest/proxy/items"),
        ("POST", "/api/rest/refreshresttokens"),
        ("GET", "/api/auth/user"),
    ],
    ids=["proxy", "refresh-endpoint", "user"],
)
async def test_refresh_while_upstream_is_down_is_503_and_the_same_cookies_work_after(
    upstream: RestartableUpstream, browser: Browser, method: str, path: str
) -> None:
    """A refresh that cannot reach the API gives 503 refresh_unavailable and keeps the session for later."""
    browser.forget_access_cookie()
    held = dict(browser.cookies)
    await upstream.stop()

    for _ in range(3):
        answer = await browser.request(method, path)
        assert_problem(answer, 503, "refresh_unavailable")
        assert cleared(answer) == set()
    assert browser.cookies == held

    await upstream.start()
    assert upstream.api.refresh_calls == 0  # nothing reached it while it was down
    answer = await browser.request(method, path)
    assert answer.status == 200, answer.body[:300]
    assert upstream.api.refresh_calls == 1
    assert upstream.api.reuse_detected == 0
    assert browser.cookies[REFRESH] != held[REFRESH]  # rotated, and the new one reached the browser
    assert (await browser.request("GET", "/api/rest/proxy/me")).json() == dict(DEMO_USER)
    assert upstream.api.refresh_calls == 1


async def test_outage_during_a_refresh_storm_then_one_refresh_after_recovery(
    upstream: RestartableUpstream, browser: Browser
) -> None:
    """Concurrent requests during an outage all get 503; after recovery they share one refresh."""
    browser.forget_access_cookie()
    clones = [browser.clone() for _ in range(10)]
    await upstream.stop()

    down = await asyncio.gather(*(c.request("GET", "/api/rest/proxy/items") for c in clones))
    assert [a.status for a in down] == [503] * len(clones)
    assert all(cleared(a) == set() for a in down)

    await upstream.start()
    up = await asyncio.gather(*(c.request("GET", "/api/rest/proxy/items") for c in clones))
    assert [a.status for a in up] == [200] * len(clones)
    assert upstream.api.refresh_calls == 1
    assert upstream.api.reuse_detected == 0


async def test_api_down_after_a_good_refresh_still_hands_the_new_tokens_to_the_browser(
    upstream: RestartableUpstream, browser: Browser
) -> None:
    """A refresh that succeeded reaches the browser even when the API call after it fails: no token is lost.

    A second gateway instance (same secrets, its own memory) whose REMOTE_API is down but whose refresh
    endpoint is up does the refresh; the browser then returns to the first instance. Had the 502 not
    carried the rotated cookies, the browser would present a used refresh token there, and the demo
    API's reuse detection would revoke the whole session.
    """
    browser.forget_access_cookie()
    held_refresh = browser.cookies[REFRESH]
    split = settings_for(f"http://127.0.0.1:{closed_port()}", bff_refresh_url=upstream.url + "/auth/refresh")
    async with running_gateway(split) as split_url:
        elsewhere = browser.clone()
        elsewhere.base = split_url
        answer = await elsewhere.request("GET", "/api/rest/proxy/items")

    assert_problem(answer, 502, "upstream_unavailable")
    assert upstream.api.refresh_calls == 1
    assert elsewhere.cookies[REFRESH] != held_refresh
    browser.cookies = elsewhere.cookies
    assert (await browser.request("GET", "/api/rest/proxy/me")).status == 200
    assert upstream.api.refresh_calls == 1
    assert upstream.api.reuse_detected == 0


# -- login and logout -----------------------------------------------------------------------------


async def test_login_while_upstream_is_down_is_502_and_keeps_the_previous_session(
    upstream: RestartableUpstream, browser: Browser
) -> None:
    """Logging in while the API is down gives 502 and leaves the browser's current session as it was."""
    held = dict(browser.cookies)
    await upstream.stop()
    answer = await browser.request(
        "POST", "/api/auth/login", json_body={"username": "demo", "password": "demo"}
    )
    assert_problem(answer, 502, "upstream_unavailable")
    assert answer.set_cookies == []
    assert browser.cookies == held

    await upstream.start()
    assert (await browser.request("GET", "/api/rest/proxy/me")).status == 200
    newcomer = Browser(browser.http, browser.base)
    assert (await newcomer.login()).status == 200


async def test_logout_while_upstream_is_down_still_ends_the_session(
    upstream: RestartableUpstream, browser: Browser
) -> None:
    """Logout cannot revoke upstream while it is down, but it still ends the session and clears the cookies."""
    await upstream.stop()
    answer = await browser.request("POST", "/api/auth/logout")
    assert answer.status == 200
    assert cleared(answer) >= {REFRESH}
    assert browser.cookies == {}

    await upstream.start()
    assert_problem(await browser.request("GET", "/api/rest/proxy/me"), 401, "unauthenticated")
    assert upstream.api.logout_calls == 0  # the revocation was attempted while the API was down

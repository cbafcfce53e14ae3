"""examples/nextjs in Chromium: a Next.js app whose /api/* is rewritten to an in-process demo gateway.

The page calls two APIs through the gateway: the demo API on the default route (``/api/rest/proxy/``)
and a catalogue (the routes tests' FastAPI recorder, a real process) on the route ``/api/catalogue/``
with the token rule ``user-or-none``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import BrowserContext, expect

from ..harness import bind_loopback
from ..processes import free_port
from ..routes.recorders import RecordingApi, fastapi_api, header
from .conftest import SESSION_COOKIES, Screenshots, start_demo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "nextjs"
NEXT_BIN = EXAMPLE / "node_modules" / ".bin" / "next"
READY_LINE = b"Ready in"  # next start: "✓ Ready in 512ms"
NPM_TIMEOUT = 600  # seconds: npm ci and next build on a 2-core machine
START_TIMEOUT = 60
NEXT_ENV = {"NEXT_TELEMETRY_DISABLED": "1", "CI": "1"}


@pytest.fixture
def gateway_socket() -> Iterator[socket.socket]:
    """The gateway's socket, bound before the build: Next.js bakes the rewrite destination in."""
    sock = bind_loopback()
    try:
        yield sock
    finally:
        sock.close()


def run_npm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # fixed arguments, no shell
        ["npm", *args],  # noqa: S607  # npm from PATH, like a developer runs it
        cwd=EXAMPLE,
        env={**os.environ, **NEXT_ENV, **env},
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )


@pytest.fixture
def catalogue(tmp_path: Path) -> Iterator[RecordingApi]:
    """The second API: a FastAPI app that answers what it saw and records every request."""
    with fastapi_api(tmp_path, name="catalogue") as api:
        yield api


def catalogue_route(api: RecordingApi) -> list[dict[str, str]]:
    """The example's second API, as a deployment would list it in ``[[routes]]`` / ``BFF_ROUTES``."""
    return [{"prefix": "/api/catalogue/", "upstream": api.url, "token": "user-or-none"}]


@pytest.fixture
def next_build(gateway_socket: socket.socket) -> subprocess.CompletedProcess[str]:
    """``npm ci`` when node_modules is missing, then ``npm run build`` with BFFGATE_URL = our gateway."""
    if not NEXT_BIN.exists():
        installed = run_npm("ci", env={})
        assert installed.returncode == 0, installed.stdout + installed.stderr
    gateway_url = f"http://127.0.0.1:{gateway_socket.getsockname()[1]}"
    return run_npm("run", "build", env={"BFFGATE_URL": gateway_url})


@contextlib.asynccontextmanager
async def next_start(port: int) -> AsyncIterator[list[bytes]]:
    """``next start`` on ``port``; ready once it prints its ready line. Yields its output lines."""
    process = await asyncio.create_subprocess_exec(
        str(NEXT_BIN),
        "start",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        cwd=EXAMPLE,
        env={**os.environ, **NEXT_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stopping it reaches any child too
    )
    assert process.stdout is not None
    lines: list[bytes] = []

    async def read_until_ready() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            lines.append(line)
            if READY_LINE in line:
                return
        raise AssertionError(f"next start exited before it was ready: {b''.join(lines)!r}")

    async def drain() -> None:  # keep reading so a full pipe never blocks the server
        assert process.stdout is not None
        while line := await process.stdout.readline():
            lines.append(line)

    drainer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            await read_until_ready()
        drainer = asyncio.create_task(drain())
        yield lines
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)  # the group is led by, and named after, its PID
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if drainer is not None:
            await drainer


@pytest.mark.slow
async def test_login_through_the_nextjs_example_shows_both_apis(
    next_build: subprocess.CompletedProcess[str],
    gateway_socket: socket.socket,
    catalogue: RecordingApi,
    http: aiohttp.ClientSession,
    context: BrowserContext,
    screenshots: Screenshots,
) -> None:
    """The Next.js example builds, sends a visitor to /login, logs in through the rewrite and shows the
    demo API's items (default route) and the catalogue's answer (a user-or-none route, user's token)."""
    assert next_build.returncode == 0, next_build.stdout[-4000:] + next_build.stderr[-4000:]
    next_port = free_port()
    next_origin = f"http://127.0.0.1:{next_port}"
    # The browser sees only the Next.js origin: the gateway must accept it as its own.
    async with (
        start_demo(
            gateway_socket,
            bff_public_url=next_origin,
            bff_login_page="/login",
            routes=catalogue_route(catalogue),
        ) as demo,
        next_start(next_port) as output,
    ):
        # Without a session the public route still answers, and the catalogue gets no Authorization.
        async with http.get(next_origin + "/api/catalogue/anonymous", headers={"X-CSRF": "1"}) as response:
            assert response.status == 200
            assert (await response.json())["authorized"] is False
        (anonymous,) = await catalogue.received(http, "/anonymous")
        assert header(anonymous, "authorization") == []

        page = await context.new_page()
        await page.goto(next_origin + "/")
        await expect(page).to_have_url(next_origin + "/login?returnTo=%2F")
        await expect(page.locator("#login-form")).to_be_visible()
        await screenshots.take(page, "nextjs-login")

        await page.fill("#username", "demo")
        await page.fill("#password", "demo")
        await page.click("#login-button")
        await expect(page).to_have_url(next_origin + "/")
        await expect(page.locator("#user-name")).to_have_text("Demo User")
        items = page.locator("#items li")
        await expect(items).to_have_count(5)
        await expect(items.first).to_contain_text("Keyboard")
        shown = page.locator("#catalogue")
        await expect(shown).to_contain_text('"api": "catalogue"')
        await expect(shown).to_contain_text('"path": "/featured"')
        await expect(shown).to_contain_text('"authorized": true')
        await screenshots.take(page, "nextjs-both-apis")
        # Signed in, the catalogue got the user's own access token: one the demo API honours for "demo".
        featured = await catalogue.received(http, "/featured")
        assert featured
        for request in featured:
            (authorization,) = header(request, "authorization")
            claims = demo.state.verify_access_token(authorization.removeprefix("Bearer "))
            assert claims is not None and claims.sub == "demo"
        assert demo.state.login_calls == 1
        cookies = {c["name"]: c for c in await context.cookies(next_origin)}
        assert sorted(cookies) == sorted(SESSION_COOKIES)
        assert all(c["httpOnly"] and c["secure"] and c["sameSite"] == "Strict" for c in cookies.values())

        await page.click("#logout")
        await expect(page).to_have_url(next_origin + "/login")
        await page.goto(next_origin + "/")
        await expect(page).to_have_url(next_origin + "/login?returnTo=%2F")
        await screenshots.take(page, "nextjs-logged-out")
        assert any(READY_LINE in line for line in output)

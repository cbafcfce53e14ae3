"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, the demo on a loopback port.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed by
``scripts/test-services``). Each test gets its own browser context (a fresh cookie jar) and a folder
under ``.test-artifacts/browser/`` for the screenshots it takes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from bffgate.demo import create_demo_app
from bffgate.demo.api import DemoState

from ..harness import bind_loopback, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts" / "browser"
TIMEOUT_MS = 15_000
SESSION_COOKIES = ("__Host-accessTokenEtls", "__Host-refreshTokenEtls", "__Host-userDataEtls")

expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class DemoRun:
    """The demo (gateway + demo API + page) running in this event loop."""

    url: str
    state: DemoState


@contextlib.asynccontextmanager
async def start_demo(sock: socket.socket | None = None, **kwargs: Any) -> AsyncIterator[DemoRun]:
    """``create_demo_app`` served on ``sock`` (default: a new ephemeral loopback port).

    The socket is bound first because the demo's settings name its own port (the demo API lives on
    it); keyword arguments go to ``create_demo_app`` (``access_ttl`` and settings overrides).
    """
    sock = sock or bind_loopback()
    port = int(sock.getsockname()[1])
    app, state = create_demo_app("127.0.0.1", port, **kwargs)
    async with serve(app, sock=sock) as url:
        yield DemoRun(url, state)


DemoFactory = Callable[..., contextlib.AbstractAsyncContextManager[DemoRun]]


@pytest.fixture
def demo_factory() -> DemoFactory:
    """Start the demo in this event loop; see :func:`start_demo`."""
    return start_demo


@pytest.fixture
def chromium_path() -> Path:
    """Debian's Chromium; missing is a failure, not a skip (scripts/test-services installs it)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test-services (it installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture
async def chromium(chromium_path: Path) -> AsyncIterator[Browser]:
    """Headless Debian Chromium driven by Playwright (which never downloads a browser here)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def context(chromium: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (cookie jar, storage) for one test."""
    ctx = await chromium.new_context(viewport={"width": 1100, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        await ctx.close()


class Screenshots:
    """Numbered full-page screenshots of one test, in ``.test-artifacts/browser/<test>/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def take(self, page: Page, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    """A clean screenshot folder named after the test."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Screenshots(folder)

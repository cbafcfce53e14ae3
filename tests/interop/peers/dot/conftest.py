"""Fixtures: one django-oauth-toolkit site per test session; per test, a gateway in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from bffgate import Settings, create_app
from bffgate.session import Session

from ....harness import Answer, Browser, bind_loopback, cookie_session, serve, settings_for
from ....oidc.support import ProviderUser
from .peer import DotProcess, DotServer


@pytest.fixture(scope="session")
def dot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotServer]:
    process = DotProcess(tmp_path_factory.mktemp("django-oauth-toolkit"))
    try:
        yield process.start()
    finally:
        process.stop()


@dataclass
class DotStack:
    """A gateway in ``oidc`` mode in front of DOT, and the people who sign in through it."""

    gateway_url: str
    settings: Settings
    server: DotServer
    http: aiohttp.ClientSession
    users: list[ProviderUser] = field(default_factory=list)

    def browser(self) -> Browser:
        return Browser(self.http, self.gateway_url)

    async def login(self, browser: Browser) -> Answer:
        """Gateway → DOT's authorize → Django's login form → DOT's consent form → gateway callback."""
        answer = await browser.request(
            "GET", "/api/auth/login?returnTo=/dashboard", csrf=False, headers={"Accept": "text/html"}
        )
        assert answer.status == 302, answer.body
        user = ProviderUser(self.gateway_url, credentials=self.server.credentials)
        self.users.append(user)
        callback_url = await user.sign_in(answer.headers["Location"])
        answer = await browser.request(
            "GET",
            callback_url.removeprefix(self.gateway_url),
            csrf=False,
            headers={"Accept": "application/json"},
        )
        assert answer.status == 302, answer.body
        return answer

    async def session_of(self, browser: Browser) -> Session:
        return await cookie_session(self.settings, browser)


@pytest.fixture
async def dot(dot_server: DotServer, http: aiohttp.ClientSession) -> AsyncIterator[DotStack]:
    await dot_server.hook(http, "reset")
    sock = bind_loopback()
    gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    values = dot_server.gateway_settings(gateway_url)
    settings = settings_for(values.pop("remote_api"), **values)
    stack = DotStack(gateway_url, settings, dot_server, http)
    try:
        async with serve(create_app(settings), sock=sock):
            yield stack
    finally:
        for user in stack.users:
            await user.close()

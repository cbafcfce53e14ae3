"""Fixtures: one OIDC provider process per test session; per test, a registered client and a gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bffgate import Settings, create_app
from bffgate.cookies import CookieJar
from bffgate.session import Session
from bffgate.stores.cookie import CookieSessionStore

from ..harness import Answer, Browser, bind_loopback, serve, settings_for
from .support import Client, ProviderApi, ProviderProcess, ProviderUser, callback, sign_in, start_login


@pytest.fixture(scope="session")
def oidc_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The issuer URL of a running node oidc-provider (installed on first use)."""
    process = ProviderProcess(tmp_path_factory.mktemp("oidc-provider") / "provider.log")
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def provider(oidc_issuer: str, http: aiohttp.ClientSession) -> ProviderApi:
    return ProviderApi(oidc_issuer, http)


@dataclass
class OidcStack:
    """A gateway in ``oidc`` mode, its client at the provider, and helpers to sign in through it."""

    gateway_url: str
    client: Client
    settings: Settings
    provider: ProviderApi
    http: aiohttp.ClientSession
    users: list[ProviderUser]

    def browser(self) -> Browser:
        return Browser(self.http, self.gateway_url)

    def user(self, login: str = "alice") -> ProviderUser:
        user = ProviderUser(self.gateway_url, login)
        self.users.append(user)
        return user

    async def start_login(self, browser: Browser, return_to: str = "/dashboard") -> str:
        """``GET /api/auth/login``: the provider URL the gateway redirects to."""
        return await start_login(browser, return_to)

    async def callback(self, browser: Browser, callback_url: str) -> Answer:
        """The provider's redirect arriving at the gateway (asking for JSON: failures are problems)."""
        return await callback(browser, callback_url)

    async def login(self, browser: Browser, return_to: str = "/dashboard", login: str = "alice") -> Answer:
        """The whole sign-in: gateway → provider's login and consent forms → gateway callback."""
        return await sign_in(browser, self.user(login), return_to)

    async def session_of(self, browser: Browser) -> Session:
        """The session the browser's cookies hold (tests may open them: they know the secrets)."""
        store = CookieSessionStore(self.settings, CookieJar(secure=self.settings.bff_cookie_secure))
        session = await store.load(browser.cookies)
        assert session is not None
        return session


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


OidcStackFactory = Callable[..., contextlib.AbstractAsyncContextManager[OidcStack]]


@pytest.fixture
def make_oidc_stack(provider: ProviderApi, http: aiohttp.ClientSession) -> OidcStackFactory:
    """Register a client for a gateway about to listen on a fresh port, then start that gateway.

    ``client_metadata(gateway_url)`` adds client metadata at the provider; other keywords are settings.
    """

    @contextlib.asynccontextmanager
    async def factory(
        *,
        auth_method: str = "client_secret_basic",
        client_metadata: Callable[[str], dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[OidcStack]:
        sock = bind_loopback()
        gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        extra = client_metadata(gateway_url) if client_metadata else None
        client = await provider.register(gateway_url, auth_method, extra)
        values: dict[str, Any] = {
            "bff_provider": "oidc",
            "oidc_issuer": provider.issuer,
            "oidc_client_id": client.client_id,
            "oidc_client_auth_method": auth_method,
            "oidc_auth_params": "prompt=consent",  # oidc-provider grants offline_access only with it
            "bff_public_url": gateway_url,
            **({"oidc_client_secret": client.client_secret} if client.client_secret else {}),
            **overrides,
        }
        settings = settings_for(f"{provider.issuer}/resource", **values)
        stack = OidcStack(gateway_url, client, settings, provider, http, [])
        try:
            async with serve(create_app(settings), sock=sock):
                yield stack
        finally:
            for user in stack.users:
                await user.close()

    return factory


@pytest.fixture
async def oidc(make_oidc_stack: OidcStackFactory) -> AsyncIterator[OidcStack]:
    async with make_oidc_stack() as stack:
        yield stack

"""Logout against an API whose logout endpoint wants a valid Bearer (issue 10, item 5).

The gateway used to call it with the stored access token even when that had expired; the API refused,
and the refresh-token family stayed alive although the user saw "logged out".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import REGISTRY

from .harness import Browser, running_gateway, settings_for
from .wire import WireAnswer, WireApi, WireRequest, wire_api


@dataclass
class StrictApi:
    """Rotates refresh tokens; its logout needs the *current* access token and a live refresh token."""

    generation: int = 1
    revoked: bool = False
    refuse_logout: bool = False
    logouts: list[WireRequest] = field(default_factory=list)

    def __call__(self, request: WireRequest) -> WireAnswer:
        if request.target == "/token/":
            return self.tokens()
        if request.target == "/token/refresh/":
            if self.revoked or request.json() != {"refresh": f"refresh-{self.generation}"}:
                return WireAnswer(401, {"detail": "Token is invalid or expired"})
            self.generation += 1
            return self.tokens()
        if request.target == "/logout/":
            self.logouts.append(request)
            valid_bearer = request.headers.get("authorization") == f"Bearer access-{self.generation}"
            if self.refuse_logout or not valid_bearer:
                return WireAnswer(401, {"detail": "Authentication credentials were not provided."})
            self.revoked = request.json() == {"refresh": f"refresh-{self.generation}"}
            return WireAnswer(205)
        return WireAnswer(200, {"ok": True})

    def tokens(self) -> WireAnswer:
        n = self.generation
        return WireAnswer(200, {"access": f"access-{n}", "refresh": f"refresh-{n}"})


@contextlib.asynccontextmanager
async def gateway_before(
    api: StrictApi, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[Browser, WireApi]]:
    async with wire_api(api) as wire:
        settings = settings_for(
            wire.url,
            bff_login_url="/token/",
            bff_refresh_url="/token/refresh/",
            bff_logout_url="/logout/",
            bff_access_token_field="access",
            bff_refresh_token_field="refresh",
        )
        async with running_gateway(settings) as gateway_url:
            yield Browser(http, gateway_url), wire


@contextlib.contextmanager
def counted_failures(reason: str) -> Iterator[list[float]]:
    """The increase of the revocation-failure counter for ``reason`` over the block."""
    name, labels = "bffgate_logout_revocation_failures_total", {"reason": reason}
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    increase: list[float] = []
    yield increase
    increase.append((REGISTRY.get_sample_value(name, labels) or 0.0) - before)


async def test_logout_with_an_expired_access_token_refreshes_first_and_revokes(
    http: aiohttp.ClientSession,
) -> None:
    """The access token has expired: the gateway refreshes, then logs out with the new Bearer."""
    api = StrictApi()
    async with gateway_before(api, http) as (browser, wire):
        await browser.login()
        browser.forget_access_cookie()  # the access token's life is over
        answer = await browser.request("POST", "/api/auth/logout")
    assert answer.status == 200
    assert [r.target for r in wire.requests] == ["/token/", "/token/refresh/", "/logout/"]
    assert api.logouts[0].headers["authorization"] == "Bearer access-2"
    assert api.revoked
    assert browser.cookies == {}


async def test_a_refused_logout_is_counted_and_the_session_still_ends(http: aiohttp.ClientSession) -> None:
    """The API refuses the logout: the browser is logged out anyway, the refusal counted."""
    api = StrictApi(refuse_logout=True)
    with counted_failures("refused") as increase:
        async with gateway_before(api, http) as (browser, _):
            await browser.login()
            answer = await browser.request("POST", "/api/auth/logout")
    assert increase == [1.0]
    assert answer.status == 200
    assert browser.cookies == {}
    assert not api.revoked

"""Logout sticks (security requirement 21) against the real provider: a refresh that loses the race
with a logout sets no cookies and its tokens are revoked; a new login revokes the replaced session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ..harness import session_cookies_set
from .conftest import OidcStack, OidcStackFactory

REDIS_DB8 = "redis://127.0.0.1:6379/8"


@pytest.mark.parametrize(
    "store", [{}, {"bff_session_store": "redis", "redis_url": REDIS_DB8}], ids=["cookie", "redis"]
)
async def test_refresh_that_finishes_after_logout_sets_no_cookies_and_is_revoked(
    make_oidc_stack: OidcStackFactory, store: dict[str, Any]
) -> None:
    """Tab A's refresh is at the provider when tab B logs out; when A's answer comes, A gets no session
    cookies (401) and the refresh token the provider issued to it is revoked."""
    async with make_oidc_stack(**store) as oidc:
        client_id = oidc.client.client_id
        tab_b = oidc.browser()
        await oidc.login(tab_b)
        tab_a = tab_b.clone()
        await oidc.provider.hold_next_refresh(client_id)
        in_flight = asyncio.create_task(tab_a.request("POST", "/api/rest/refreshresttokens"))
        await oidc.provider.refresh_held(client_id)  # rotated at the provider, not yet at the gateway
        logout = await tab_b.request("POST", "/api/auth/logout")
        assert logout.status == 200
        await oidc.provider.release(client_id)
        answer = await in_flight
        assert session_cookies_set(answer) == []
        assert answer.status == 401
        obtained = await oidc.provider.last_tokens(client_id)
        assert (await oidc.provider.introspect(oidc.client, obtained["refresh_token"]))["active"] is False
        assert await oidc.provider.resource(obtained["access_token"]) == 401
        # And tab A's cookies stay dead afterwards.
        again = await tab_a.request("GET", "/api/auth/user")
        assert again.status == 401
        assert session_cookies_set(again) == []


async def test_login_over_a_session_revokes_the_replaced_refresh_token(oidc: OidcStack) -> None:
    """Signing in again without logging out ends the previous session at the provider too."""
    browser = oidc.browser()
    await oidc.login(browser)
    replaced = await oidc.session_of(browser)
    assert replaced.refresh_token is not None
    stale_copy = browser.clone()
    await oidc.login(browser)
    current = await oidc.session_of(browser)
    assert current.sid != replaced.sid
    assert (await oidc.provider.introspect(oidc.client, replaced.refresh_token))["active"] is False
    assert current.refresh_token is not None
    assert (await oidc.provider.introspect(oidc.client, current.refresh_token))["active"] is True
    answer = await stale_copy.request("GET", "/api/auth/user")  # the replaced session's cookies
    assert answer.status == 401
    assert session_cookies_set(answer) == []

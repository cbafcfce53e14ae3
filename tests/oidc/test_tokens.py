"""Refresh (rotation, single flight, terminal rejection) and logout against the real provider."""

from __future__ import annotations

import asyncio

from .conftest import OidcStack, query

STORM = 50


async def test_expired_access_token_is_refreshed_once_and_the_rotated_token_stored(oidc: OidcStack) -> None:
    """After expiry one refresh grant runs; the rotated refresh token is stored and the old one is dead."""
    browser = oidc.browser()
    await oidc.login(browser)
    before = await oidc.session_of(browser)
    browser.forget_access_cookie()  # what the browser does when the cookie's Max-Age (token life) ends
    answer = await browser.request("GET", "/api/rest/proxy/me")
    assert answer.status == 200
    assert answer.json()["sub"] == "alice"
    after = await oidc.session_of(browser)
    assert before.refresh_token is not None
    assert after.refresh_token is not None
    assert after.refresh_token != before.refresh_token
    assert after.access_token != before.access_token
    assert after.sid == before.sid
    stats = await oidc.provider.stats(oidc.client.client_id)
    assert stats.get("refresh_token 200") == 1
    assert (await oidc.provider.introspect(oidc.client, before.refresh_token))["active"] is False
    assert (await oidc.provider.introspect(oidc.client, after.refresh_token))["active"] is True
    answer = await browser.request("GET", "/api/rest/proxy/me")  # the stored tokens serve on
    assert answer.status == 200
    assert (await oidc.provider.stats(oidc.client.client_id)).get("refresh_token 200") == 1


async def test_storm_after_expiry_makes_exactly_one_refresh_grant(oidc: OidcStack) -> None:
    """50 concurrent requests with an expired access token cause one refresh grant and all succeed."""
    browser = oidc.browser()
    await oidc.login(browser)
    original = (await oidc.session_of(browser)).refresh_token
    browser.forget_access_cookie()
    clones = [browser.clone() for _ in range(STORM)]
    answers = await asyncio.gather(*(clone.request("GET", "/api/rest/proxy/me") for clone in clones))
    assert [answer.status for answer in answers] == [200] * STORM
    stats = await oidc.provider.stats(oidc.client.client_id)
    # A second refresh with the rotated-away token would show as "refresh_token 400" and a revoked grant.
    assert stats == {"authorization_code 200": 1, "refresh_token 200": 1}
    held = {(await oidc.session_of(clone)).refresh_token for clone in clones}
    assert len(held) == 1  # every request came back with the same, rotated refresh token
    assert original not in held


async def test_refresh_rejected_by_the_provider_ends_the_session(oidc: OidcStack) -> None:
    """When the provider answers invalid_grant (grant revoked), the session ends: 401 session_expired."""
    browser = oidc.browser()
    await oidc.login(browser)
    session = await oidc.session_of(browser)
    assert session.refresh_token is not None
    await oidc.provider.revoke(oidc.client, session.refresh_token)  # the user revokes the app
    browser.forget_access_cookie()
    answer = await browser.request("GET", "/api/rest/proxy/me")
    assert answer.status == 401
    assert answer.code == "session_expired"
    assert browser.cookies == {}
    assert (await oidc.provider.stats(oidc.client.client_id)).get("refresh_token 400") == 1


async def test_logout_revokes_and_answers_the_end_session_url(oidc: OidcStack) -> None:
    """Logout revokes the refresh token at the provider, clears the cookies and answers its end-session URL."""
    browser = oidc.browser()
    await oidc.login(browser)
    session = await oidc.session_of(browser)
    assert session.refresh_token is not None
    assert session.access_token is not None
    answer = await browser.request("POST", "/api/auth/logout")
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert browser.cookies == {}
    logout_url = answer.json()["logoutUrl"]
    assert logout_url.startswith(f"{oidc.gateway_url}/api/auth/logout/redirect?")  # no ID token for the page
    redirect = await browser.request("GET", logout_url.removeprefix(oidc.gateway_url), csrf=False)
    assert redirect.status == 302
    logout_url = redirect.headers["Location"]
    assert logout_url.startswith(f"{oidc.provider.issuer}/session/end?")
    assert query(logout_url) == {
        "id_token_hint": session.id_token,
        "client_id": oidc.client.client_id,
        "post_logout_redirect_uri": f"{oidc.gateway_url}/",
    }
    assert (await oidc.provider.introspect(oidc.client, session.refresh_token))["active"] is False
    assert await oidc.provider.resource(session.access_token) == 401  # the whole grant is gone
    # The provider accepts the URL: after its "sign out?" question it returns to the gateway.
    user = oidc.users[0]
    assert await user.confirm_logout(logout_url) == f"{oidc.gateway_url}/"


async def test_logout_without_session_still_offers_the_end_session_url(oidc: OidcStack) -> None:
    """Logout with no session answers 200 and an end-session URL without id_token_hint."""
    answer = await oidc.browser().request("POST", "/api/auth/logout")
    assert answer.status == 200
    assert query(answer.json()["logoutUrl"]) == {
        "client_id": oidc.client.client_id,
        "post_logout_redirect_uri": f"{oidc.gateway_url}/",
    }


async def test_logout_needs_the_csrf_header(oidc: OidcStack) -> None:
    """Logout without X-CSRF is 403 and the refresh token stays valid."""
    browser = oidc.browser()
    await oidc.login(browser)
    session = await oidc.session_of(browser)
    assert session.refresh_token is not None
    answer = await browser.request("POST", "/api/auth/logout", csrf=False)
    assert answer.status == 403
    assert (await oidc.provider.introspect(oidc.client, session.refresh_token))["active"] is True

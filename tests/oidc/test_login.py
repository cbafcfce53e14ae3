"""Signing in through a real OpenID Connect provider: redirect, forms, callback, session, proxied call."""

from __future__ import annotations

import pytest

from ..harness import parse_set_cookie
from .conftest import OidcStack, OidcStackFactory, query

TX_COOKIE = "__Host-oidcTxEtls"
SESSION_COOKIES = {"__Host-refreshTokenEtls", "__Host-accessTokenEtls", "__Host-userDataEtls"}


async def test_login_redirects_to_the_provider_with_pkce_state_and_nonce(oidc: OidcStack) -> None:
    """GET /api/auth/login answers 302 to the authorization endpoint with S256 PKCE, state and nonce."""
    browser = oidc.browser()
    answer = await browser.request("GET", "/api/auth/login?returnTo=/dashboard", csrf=False)
    assert answer.status == 302
    location = answer.headers["Location"]
    assert location.startswith(f"{oidc.provider.issuer}/auth?")
    params = query(location)
    assert params["response_type"] == "code"
    assert params["client_id"] == oidc.client.client_id
    assert params["redirect_uri"] == f"{oidc.gateway_url}/api/auth/callback"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43  # base64url of a SHA-256 digest
    assert len(params["state"]) >= 32
    assert len(params["nonce"]) >= 32
    assert params["scope"].split() == ["openid", "profile", "email", "offline_access"]
    assert params["prompt"] == "consent"  # from OIDC_AUTH_PARAMS
    assert answer.headers["Cache-Control"] == "no-store"


async def test_transaction_cookie_is_sealed_lax_and_short_lived(oidc: OidcStack) -> None:
    """The login transaction travels in one sealed, HttpOnly, Secure, SameSite=Lax cookie of 10 minutes."""
    browser = oidc.browser()
    answer = await browser.request("GET", "/api/auth/login", csrf=False)
    (header,) = answer.set_cookies
    name, value, attributes = parse_set_cookie(header)
    assert name == TX_COOKIE
    assert attributes["samesite"] == "Lax"
    assert attributes["max-age"] == "600"
    assert attributes["path"] == "/"
    assert {"httponly", "secure"} <= attributes.keys()
    assert "domain" not in attributes
    assert value.count(".") == 4  # a compact JWE
    assert query(answer.headers["Location"])["state"] not in value


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post", "none"])
async def test_login_creates_a_session_that_reaches_the_protected_resource(
    make_oidc_stack: OidcStackFactory, auth_method: str
) -> None:
    """After the provider's login and consent forms, the callback creates a session and the API accepts its token."""
    async with make_oidc_stack(auth_method=auth_method) as oidc:
        browser = oidc.browser()
        answer = await oidc.login(browser, return_to="/dashboard?tab=2")
        assert answer.headers["Location"] == "/dashboard?tab=2"
        assert answer.headers["Cache-Control"] == "no-store"
        assert set(browser.cookies) == SESSION_COOKIES  # the transaction cookie is gone
        for header in answer.set_cookies:
            name, _, attributes = parse_set_cookie(header)
            assert attributes["samesite"] == ("Lax" if name == TX_COOKIE else "Strict")
        me = await browser.request("GET", "/api/rest/proxy/me")
        assert me.status == 200
        assert me.json() == {"sub": "alice", "client_id": oidc.client.client_id}
        stats = await oidc.provider.stats(oidc.client.client_id)
        assert stats == {"authorization_code 200": 1}


async def test_user_data_combines_id_token_and_userinfo(oidc: OidcStack) -> None:
    """/api/auth/user shows the ID token's subject with the userinfo claims, and no token or protocol claim."""
    browser = oidc.browser()
    await oidc.login(browser, login="bob")
    answer = await browser.request("GET", "/api/auth/user")
    assert answer.status == 200
    user = answer.json()["user"]
    assert user == {
        "sub": "bob",
        "name": "User bob",  # only the userinfo endpoint has these (oidc-provider keeps ID tokens lean)
        "preferred_username": "bob",
        "email": "bob@example.test",
        "email_verified": True,
    }
    session = await oidc.session_of(browser)
    assert session.id_token is not None
    assert session.id_token not in answer.body.decode()


@pytest.mark.parametrize("return_to", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
async def test_return_to_outside_the_site_falls_back_to_root(oidc: OidcStack, return_to: str) -> None:
    """A returnTo that is not a local path sends the browser to / after the login."""
    answer = await oidc.login(oidc.browser(), return_to=return_to)
    assert answer.headers["Location"] == "/"


async def test_each_login_gets_a_fresh_session_id(oidc: OidcStack) -> None:
    """Signing in again, with a session already in the browser, creates a new session id."""
    browser = oidc.browser()
    await oidc.login(browser)
    first = await oidc.session_of(browser)
    await oidc.login(browser)
    second = await oidc.session_of(browser)
    assert second.sid != first.sid
    assert second.refresh_token != first.refresh_token


async def test_post_login_is_refused_in_oidc_mode(oidc: OidcStack) -> None:
    """POST /api/auth/login (password login) is 405 with BFF_PROVIDER=oidc."""
    answer = await oidc.browser().request("POST", "/api/auth/login", json_body={"username": "alice"})
    assert answer.status == 405
    assert answer.code == "method_not_allowed"


async def test_readiness_reports_the_provider(oidc: OidcStack) -> None:
    """/readyz checks the provider's discovery document and keys."""
    answer = await oidc.browser().request("GET", "/readyz", csrf=False)
    assert answer.status == 200
    assert answer.json()["checks"]["provider"] == "ok"

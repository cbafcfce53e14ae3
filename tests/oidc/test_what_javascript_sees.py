"""What the page may see (security requirement 23) with the real provider: an allow-list of claims,
never cacheable, and a logout URL that holds no ID token (the gateway redirects with the hint)."""

from __future__ import annotations

from ..harness import session_cookies_set
from .conftest import OidcStack, query


async def test_user_is_the_allow_list_and_never_stored_by_a_cache(oidc: OidcStack) -> None:
    """/api/auth/user answers the profile claims only, with Cache-Control: no-store even when no
    cookie changes."""
    browser = oidc.browser()
    await oidc.login(browser)
    answer = await browser.request("GET", "/api/auth/user")
    assert answer.status == 200
    assert session_cookies_set(answer) == []  # nothing changed: still no-store
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json()["user"] == {
        "sub": "alice",
        "name": "User alice",
        "preferred_username": "alice",
        "email": "alice@example.test",
        "email_verified": True,
    }


async def test_logout_url_carries_no_id_token_and_redirects_once(oidc: OidcStack) -> None:
    """The logout answer holds no token; its logoutUrl is a gateway URL that redirects once to the
    provider's end-session endpoint with id_token_hint, which the provider accepts."""
    browser = oidc.browser()
    await oidc.login(browser)
    session = await oidc.session_of(browser)
    assert session.id_token is not None
    answer = await browser.request("POST", "/api/auth/logout")
    assert answer.status == 200
    assert session.id_token not in answer.body.decode()
    assert session.id_token.split(".")[1] not in answer.body.decode()  # not even its claims part
    logout_url = answer.json()["logoutUrl"]
    assert logout_url.startswith(f"{oidc.gateway_url}/api/auth/logout/redirect?ref=")
    path = logout_url.removeprefix(oidc.gateway_url)
    redirect = await browser.request("GET", path, csrf=False, headers={"Accept": "text/html"})
    assert redirect.status == 302
    assert redirect.headers["Cache-Control"] == "no-store"
    assert redirect.headers["Referrer-Policy"] == "no-referrer"
    location = redirect.headers["Location"]
    assert location.startswith(await oidc.provider.end_session_endpoint())
    assert query(location)["id_token_hint"] == session.id_token
    again = await browser.request("GET", path, csrf=False, headers={"Accept": "application/json"})
    assert again.status == 400
    assert again.code == "invalid_request"
    forged = await browser.request("GET", "/api/auth/logout/redirect?ref=x.y.z", csrf=False)
    assert forged.status == 400
    assert await oidc.users[0].confirm_logout(location) == f"{oidc.gateway_url}/"

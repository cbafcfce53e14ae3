"""bffgate in front of django-oauth-toolkit: OpenID Connect login, proxying, refresh, logout."""

from __future__ import annotations

import asyncio

from ....oidc.conftest import query
from .conftest import DotStack

STORM = 20


async def test_login_proxy_storm_retry_and_logout(dot: DotStack) -> None:
    """The whole scenario against DOT: login through its real forms, a GET with a query and a POST echo
    at the API it protects, one refresh grant for a 20-request storm after expiry, refresh + retry on the
    API's 401, and logout revoking the grant at DOT and pointing the browser at DOT's end-session URL."""
    http, server = dot.http, dot.server
    browser = dot.browser()
    answer = await dot.login(browser)
    assert answer.headers["Location"] == "/dashboard"
    me = await browser.request("GET", "/api/auth/user")
    assert me.status == 200
    assert me.json()["user"]["name"] == "Alice Liddell"

    answer = await browser.request("GET", "/api/rest/proxy/echo/?page=2&q=a%20b&q=c")
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "method": "GET",
        "path": "/api/echo/",
        "query": {"page": ["2"], "q": ["a b", "c"]},
        "user": "alice",
        "body": None,
    }
    answer = await browser.request("POST", "/api/rest/proxy/echo/", json_body={"note": "hello"})
    assert answer.status == 200, answer.body
    assert answer.json()["body"] == {"note": "hello"}
    assert answer.json()["method"] == "POST"

    # The access token's lifetime passes: DOT refuses it, the browser drops its cookie.
    before = await dot.session_of(browser)
    await server.hook(http, "expire-access")
    browser.forget_access_cookie()
    clones = [browser.clone() for _ in range(STORM)]
    answers = await asyncio.gather(
        *(c.request("GET", f"/api/rest/proxy/echo/?n={i}") for i, c in enumerate(clones))
    )
    rejected = [a.status for a in answers if a.status != 200]
    assert rejected == []
    assert [a.json()["query"]["n"] for a in answers] == [[str(i)] for i in range(STORM)]
    assert (await server.calls(http)).get("refresh_token 200") == 1
    held = {(await dot.session_of(clone)).refresh_token for clone in clones}
    assert len(held) == 1
    assert before.refresh_token not in held  # rotated

    # The gateway still holds an access token DOT has expired: the API's 401 → refresh → retry.
    browser = clones[0]
    stale = await dot.session_of(browser)
    await server.hook(http, "expire-access")
    answer = await browser.request("POST", "/api/rest/proxy/echo/", json_body={"retry": True})
    assert answer.status == 200, answer.body
    assert answer.json()["body"] == {"retry": True}
    fresh = await dot.session_of(browser)
    assert fresh.access_token != stale.access_token
    calls = await server.calls(http)
    assert calls.get("refresh_token 200") == 2
    assert "refresh_token 400" not in calls

    # Logout revokes the grant at DOT and sends the browser to DOT's end-session endpoint.
    assert (await server.stats(http))["live_refresh_tokens"] == 1
    answer = await browser.request("POST", "/api/auth/logout")
    assert answer.status == 200
    assert browser.cookies == {}
    assert (await server.calls(http)).get("revoke refresh_token 200") == 1
    assert (await server.stats(http))["live_refresh_tokens"] == 0
    logout_url = answer.json()["logoutUrl"]
    assert logout_url.startswith(f"{server.issuer}/logout/?")
    assert query(logout_url) == {
        "id_token_hint": fresh.id_token,
        "client_id": "bffgate",
        "post_logout_redirect_uri": f"{dot.gateway_url}/",
    }
    # DOT accepts it: after its "Confirm Logout" form it returns to the gateway.
    assert await dot.users[0].confirm_logout(logout_url) == f"{dot.gateway_url}/"


async def test_refresh_rejected_by_dot_ends_the_session(dot: DotStack) -> None:
    """The user withdraws the grant at DOT: the next refresh is refused and the session ends (401)."""
    browser = dot.browser()
    await dot.login(browser)
    await dot.server.hook(dot.http, "revoke-refresh")
    browser.forget_access_cookie()
    answer = await browser.request("GET", "/api/rest/proxy/echo/")
    assert answer.status == 401
    assert answer.code == "session_expired"
    assert browser.cookies == {}
    assert (await dot.server.calls(dot.http)).get("refresh_token 400") == 1

"""``GET /api/auth/forward``: the decision a front proxy asks for, in process (the real servers'
recipes are tested in tests/forward_auth/)."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.responses import JSONResponse

from bffgate.forward_auth import cacheable_seconds
from bffgate.session import Session

from .harness import Answer, Browser, Stack, session_cookies_set

FORWARD = "/api/auth/forward"


async def ask(
    browser: Browser, method: str, uri: str = "/api/items", *, style: str = "nginx", **headers: str
) -> Answer:
    """The subrequest a front proxy makes for the browser's ``method uri``."""
    if style == "nginx":
        sent = {"X-Original-Method": method, "X-Original-URI": uri}
    else:
        sent = {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
    csrf = headers.pop("csrf", "yes") == "yes"
    return await browser.request("GET", FORWARD, csrf=csrf, headers={**sent, **headers})


def bearer(answer: Answer) -> str:
    value = answer.headers["Authorization"]
    assert value.startswith("Bearer ")
    return value[len("Bearer ") :]


@pytest.mark.parametrize("style", ["nginx", "caddy"])
async def test_a_signed_in_request_gets_the_sessions_bearer_token_and_a_cache_lifetime(
    stack: Stack, style: str
) -> None:
    browser = await stack.logged_in()
    answer = await ask(browser, "GET", style=style)
    assert answer.status == 200
    assert answer.body == b""
    assert stack.api.verify_access_token(bearer(answer)) is not None
    assert answer.set_cookies == []
    seconds = int(answer.headers["X-Accel-Expires"])
    assert 0 < seconds <= stack.settings.bff_forward_auth_cache_seconds
    assert answer.headers["Cache-Control"] == f"private, max-age={seconds}"
    assert stack.recorder.requests[-1].raw_path == "/auth/login", "the API is not called by a decision"


async def test_without_a_session_fetch_gets_401_and_a_navigation_the_login_redirect(stack: Stack) -> None:
    browser = stack.browser()
    fetch = await ask(browser, "GET", "/app/orders?x=1")
    assert (fetch.status, fetch.code) == (401, "unauthenticated")
    assert "Authorization" not in fetch.headers
    page = await ask(browser, "GET", "/app/orders?x=1", csrf="no", **{"Sec-Fetch-Mode": "navigate"})
    assert page.status == 302
    assert page.headers["Location"] == "/login?returnTo=%2Fapp%2Forders%3Fx%3D1"
    # A form POST without a session is not sent to the login page (its body would be lost).
    form = await ask(browser, "POST", "/app/orders", csrf="no", **{"Sec-Fetch-Mode": "navigate"})
    assert (form.status, form.code) == (401, "unauthenticated")


async def test_the_login_redirect_never_leaves_the_site(stack: Stack) -> None:
    page = await ask(stack.browser(), "GET", "//evil.example/x", csrf="no", Accept="text/html")
    assert page.headers["Location"] == "/login?returnTo=%2F"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_state_changing_methods_need_x_csrf_and_an_allowed_origin(stack: Stack, method: str) -> None:
    browser = await stack.logged_in()
    without = await ask(browser, method, csrf="no")
    assert (without.status, without.code) == (403, "csrf_failed")
    assert "Authorization" not in without.headers
    foreign = await ask(browser, method, Origin="https://evil.example")
    assert (foreign.status, foreign.code) == (403, "csrf_failed")
    allowed = await ask(browser, method, Origin=stack.settings.public_origin)
    assert allowed.status == 200


async def test_safe_methods_pass_without_x_csrf(stack: Stack) -> None:
    """Page loads through the front proxy carry no X-CSRF; reading changes nothing."""
    browser = await stack.logged_in()
    for method in ("GET", "HEAD", "OPTIONS"):
        assert (await ask(browser, method, csrf="no")).status == 200


async def test_a_malformed_original_method_is_a_clear_400(stack: Stack) -> None:
    browser = await stack.logged_in()
    bad = await ask(browser, "GET /x HTTP/1.1")
    assert (bad.status, bad.code) == (400, "invalid_request")


async def test_without_a_method_header_the_subrequests_own_method_is_judged(stack: Stack) -> None:
    """Envoy's HTTP ext_authz asks with the browser's method rather than naming it in a header."""
    browser = await stack.logged_in()
    post = await browser.request("POST", FORWARD, csrf=False)
    assert (post.status, post.code) == (403, "csrf_failed")
    assert (await browser.request("POST", FORWARD)).status == 200
    assert (await browser.request("GET", FORWARD, csrf=False)).status == 200


async def test_an_expired_token_is_refreshed_once_for_a_storm_and_the_cookies_rotate(stack: Stack) -> None:
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    clones = [browser.clone() for _ in range(50)]
    answers = await asyncio.gather(*(ask(c, "GET") for c in clones))
    assert [a.status for a in answers] == [200] * 50
    assert stack.api.refresh_calls == 1
    assert stack.api.reuse_detected == 0
    for answer in answers:
        assert session_cookies_set(answer), "the rotated cookies go back to the browser"
        assert answer.headers["Cache-Control"] == "no-store", "a decision that set cookies is not reused"
        assert "X-Accel-Expires" not in answer.headers
        slots = [answer.headers[f"X-Bffgate-Set-Cookie-{i}"] for i in range(len(answer.set_cookies))]
        assert slots == answer.set_cookies
    again = await ask(clones[0], "GET")
    assert again.status == 200 and again.set_cookies == []


async def test_a_refused_refresh_signs_out(stack: Stack) -> None:
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    stack.recorder.refresh_answer = JSONResponse({"error": "invalid_grant"}, 400)
    answer = await ask(browser, "GET")
    assert (answer.status, answer.code) == (401, "session_expired")
    assert browser.cookies == {}, "the session's cookies are cleared"


async def test_a_failing_provider_is_503_refresh_unavailable(stack: Stack) -> None:
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    stack.recorder.refresh_answer = JSONResponse({"error": "server_error"}, 502)
    answer = await ask(browser, "GET")
    assert (answer.status, answer.code) == (503, "refresh_unavailable")
    assert "Authorization" not in answer.headers


async def test_a_tampered_cookie_is_401(stack: Stack) -> None:
    browser = await stack.logged_in()
    name = next(n for n in browser.cookies if "accessTokenEtls" in n)
    browser.cookies = {name: browser.cookies[name][:-4] + "AAAA"}
    answer = await ask(browser, "GET")
    assert (answer.status, answer.code) == (401, "unauthenticated")


async def test_after_logout_the_old_cookies_get_no_token(stack: Stack) -> None:
    browser = await stack.logged_in()
    stolen = browser.clone()
    assert (await browser.request("POST", "/api/auth/logout")).status == 200
    answer = await ask(stolen, "GET")
    assert answer.status == 401


def test_a_decision_is_never_cacheable_past_the_refresh_point() -> None:
    now = time.time()
    session = Session(
        sid="s", created_at=now, access_token="t", access_issued_at=now, access_expires_at=now + 100
    )
    # The token is refreshed 25 s before expiry (a quarter of its 100 s life is less than the 30 s skew).
    assert cacheable_seconds(session, skew=30, cap=1000, now=now) == 75
    assert cacheable_seconds(session, skew=30, cap=5, now=now) == 5
    assert cacheable_seconds(session, skew=30, cap=5, now=now + 74.5) == 0
    assert cacheable_seconds(session, skew=30, cap=5, now=now + 90) == 0


async def test_a_method_named_twice_differently_is_refused(stack: Stack) -> None:
    """A proxy sets one family of headers and may pass the other on from the browser."""
    browser = await stack.logged_in()
    for style, claim in (("nginx", "X-Forwarded-Method"), ("caddy", "X-Original-Method")):
        answer = await ask(browser, "POST", style=style, csrf="no", **{claim: "GET"})
        assert (answer.status, answer.code) == (400, "invalid_request")
    same = await ask(browser, "GET", csrf="no", **{"X-Forwarded-Method": "GET"})
    assert same.status == 200

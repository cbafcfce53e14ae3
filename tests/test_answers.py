"""Every row of DESIGN.md's "Answers" table, against a real gateway and a real upstream.

Except "missing X-CSRF: 403 csrf_failed", a security requirement owned by test_security.py
(test_proxy_without_csrf_is_403_and_nothing_goes_upstream and the tests after it)."""

from __future__ import annotations

from starlette.responses import JSONResponse

from .conftest import StackFactory
from .harness import Stack, closed_port, running_gateway, settings_for


async def test_no_session_fetch_gets_401_unauthenticated(stack: Stack) -> None:
    """A fetch without a session gets a 401 problem and nothing reaches the API."""
    answer = await stack.browser().request("GET", "/api/rest/proxy/items")
    assert answer.status == 401
    assert answer.code == "unauthenticated"
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert stack.recorder.to("/items") == []


async def test_no_session_navigation_is_redirected_to_login(stack: Stack) -> None:
    """A page navigation without a session goes to the login page with a returnTo."""
    answer = await stack.browser().request(
        "GET", "/api/rest/proxy/items?x=1", headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
    )
    assert answer.status == 302
    assert answer.headers["Location"] == "/login?returnTo=%2Fapi%2Frest%2Fproxy%2Fitems%3Fx%3D1"


async def test_tampered_cookie_is_no_session(stack: Stack) -> None:
    """A tampered cookie is treated as no session: 401, and the bad cookies are cleared."""
    browser = await stack.logged_in()
    name = next(n for n in browser.cookies if "refreshTokenEtls" in n)
    browser.cookies[name] = browser.cookies[name][:-4] + "AAAA"
    browser.forget_access_cookie()
    answer = await browser.request("GET", "/api/rest/proxy/items")
    assert answer.status == 401
    assert answer.code == "unauthenticated"
    assert name not in browser.cookies


async def test_refresh_rejected_ends_session(stack: Stack) -> None:
    """A refresh the provider rejects ends the session: 401 session_expired, cookies cleared."""
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    stack.recorder.refresh_answer = JSONResponse({"error": "invalid_grant"}, 400)
    answer = await browser.request("GET", "/api/rest/proxy/items")
    assert answer.status == 401
    assert answer.code == "session_expired"
    assert answer.headers["Cache-Control"] == "no-store"
    assert browser.cookies == {}


async def test_refresh_failing_transiently_keeps_session(stack: Stack) -> None:
    """A refresh that fails with a 5xx answers 503 and keeps the session; it works once the provider is back."""
    browser = await stack.logged_in()
    browser.forget_access_cookie()
    stack.recorder.refresh_answer = JSONResponse({"error": "server_error"}, 502)
    answer = await browser.request("GET", "/api/rest/proxy/items")
    assert answer.status == 503
    assert answer.code == "refresh_unavailable"
    assert any("refreshTokenEtls" in name for name in browser.cookies)
    stack.recorder.refresh_answer = None
    answer = await browser.request("GET", "/api/rest/proxy/items")
    assert answer.status == 200
    assert len(stack.recorder.to("/auth/refresh")) == 2
    assert stack.api.refresh_calls == 1  # only the second call reached the real endpoint


async def test_url_leaving_remote_api_is_400(stack: Stack) -> None:
    """A customfetch url that is not a relative path is refused with 400 invalid_url."""
    browser = await stack.logged_in()
    answer = await browser.request("POST", "/api/rest/customfetch", json_body={"url": "@evil.example/x"})
    assert answer.status == 400
    assert answer.code == "invalid_url"


async def test_upstream_unreachable_is_502_and_session_kept(stack: Stack) -> None:
    """An API that cannot be reached gives 502 upstream_unavailable; the session survives it."""
    browser = await stack.logged_in()
    dead_port = closed_port()
    async with running_gateway(settings_for(f"http://127.0.0.1:{dead_port}")) as cut_off_url:
        cut_off = browser.clone()
        cut_off.base = cut_off_url
        answer = await cut_off.request("GET", "/api/rest/proxy/items")
    assert answer.status == 502
    assert answer.code == "upstream_unavailable"
    assert cut_off.cookies == browser.cookies
    answer = await browser.request("GET", "/api/rest/proxy/items")
    assert answer.status == 200


async def test_upstream_timeout_is_504(make_stack: StackFactory) -> None:
    """An API that does not start answering within BFF_UPSTREAM_TIMEOUT gives 504 upstream_timeout."""
    async with make_stack(bff_upstream_timeout=0.3) as stack:
        browser = await stack.logged_in()
        answer = await browser.request("GET", "/api/rest/proxy/slow")
        stack.recorder.release_slow.set()
        assert answer.status == 504
        assert answer.code == "upstream_timeout"


async def test_body_over_limit_is_413_and_nothing_goes_upstream(make_stack: StackFactory) -> None:
    """A body over BFF_MAX_BODY_BYTES gets 413 payload_too_large before anything goes upstream."""
    async with make_stack(bff_max_body_bytes=1000) as stack:
        browser = await stack.logged_in()
        answer = await browser.request("POST", "/api/rest/proxy/upload", data=b"x" * 1001)
        assert answer.status == 413
        assert answer.code == "payload_too_large"
        assert stack.recorder.to("/upload") == []


async def test_other_upstream_errors_pass_through_unchanged(stack: Stack) -> None:
    """Upstream 4xx/5xx other than 401 reach the browser with their own status and body."""
    browser = await stack.logged_in()
    for code in (400, 403, 404, 409, 500, 503):
        answer = await browser.request("GET", f"/api/rest/proxy/status/{code}")
        assert answer.status == code
        assert answer.json() == {"status": code, "from": "upstream"}

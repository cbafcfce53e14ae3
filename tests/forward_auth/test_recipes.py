"""The forward-auth recipes with the real servers: Debian's nginx (auth_request + proxy_cache) and
Caddy (forward_auth) in front of a real API, configured by what `bffgate forward-auth-config`
prints, bffgate deciding. The browser talks to the front proxy only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from starlette.responses import JSONResponse

from ..harness import session_cookies_set
from .fronts import FRONTS, Front, assert_no_token, front_stack


@pytest.fixture(params=FRONTS)
async def front(request: pytest.FixtureRequest, http: aiohttp.ClientSession) -> AsyncIterator[Front]:
    async with front_stack(request.param, http) as started:
        yield started


async def test_login_then_proxied_get_and_post_reach_the_api_with_the_token_only(front: Front) -> None:
    browser = await front.logged_in()
    got = await browser.request("GET", "/api/echo/items?q=1", csrf=False)
    assert got.status == 200, got.body
    assert got.json()["query"] == "q=1"
    sent = front.recorder.requests[-1]
    assert sent.raw_path == "/echo/items", "the prefix is removed on the way to the API"
    assert front.api.verify_access_token(sent.headers["authorization"][len("Bearer ") :]) is not None
    assert "cookie" not in sent.headers and "x-csrf" not in sent.headers
    posted = await browser.request("POST", "/api/echo/items", json_body={"name": "tea"})
    assert posted.status == 200, posted.body
    assert posted.json()["method"] == "POST"
    assert posted.json()["body"] == '{"name": "tea"}'
    assert_no_token(front, got, posted)


async def test_state_changing_requests_without_csrf_proof_are_refused_before_the_api(front: Front) -> None:
    browser = await front.logged_in()
    before = len(front.recorder.requests)
    no_header = await browser.request("POST", "/api/echo/items", csrf=False, json_body={})
    assert (no_header.status, no_header.code) == (403, "csrf_failed"), no_header.body
    foreign = await browser.request("DELETE", "/api/echo/items", headers={"Origin": "https://evil.example"})
    assert (foreign.status, foreign.code) == (403, "csrf_failed")
    assert front.recorder.requests[before:] == []
    assert_no_token(front, no_header, foreign)


async def test_a_cached_yes_never_skips_the_csrf_check(front: Front) -> None:
    """The decision cache (nginx) is keyed on the method and the CSRF proof, not the cookie alone."""
    browser = await front.logged_in()
    for _ in range(2):
        assert (await browser.request("GET", "/api/echo/a", csrf=False)).status == 200
        assert (await browser.request("POST", "/api/echo/a", json_body={})).status == 200
    refused = await browser.request("POST", "/api/echo/a", csrf=False, json_body={})
    assert (refused.status, refused.code) == (403, "csrf_failed")
    foreign = await browser.request("POST", "/api/echo/a", headers={"Origin": "https://evil.example"})
    assert foreign.status == 403
    if front.kind == "nginx":
        again = await browser.request("GET", "/api/echo/a", csrf=False)
        assert again.headers["X-Bffgate-Decision-Cache"] == "HIT", (
            "a repeated decision is taken from the cache"
        )


async def test_without_a_session_fetch_gets_401_and_a_page_load_the_login_page(front: Front) -> None:
    browser = front.browser()
    fetch = await browser.request("GET", "/api/echo/orders")
    assert (fetch.status, fetch.code) == (401, "unauthenticated")
    page = await browser.request(
        "GET", "/api/echo/orders?x=1", csrf=False, headers={"Sec-Fetch-Mode": "navigate"}
    )
    assert page.status == 302
    assert page.headers["Location"] == "/login?returnTo=%2Fapi%2Fecho%2Forders%3Fx%3D1"
    assert [r for r in front.recorder.requests if r.raw_path.startswith("/echo")] == []


async def test_expiry_refreshes_once_under_a_storm_of_50_and_the_rotated_cookies_reach_the_browser(
    front: Front,
) -> None:
    browser = await front.logged_in()
    browser.forget_access_cookie()
    clones = [browser.clone() for _ in range(50)]
    answers = await asyncio.gather(*(c.request("GET", "/api/echo/storm", csrf=False) for c in clones))
    assert [a.status for a in answers] == [200] * 50
    assert front.api.refresh_calls == 1
    assert front.api.reuse_detected == 0
    assert all(session_cookies_set(a) for a in answers), "every browser gets the new cookies"
    if front.kind == "nginx":
        assert {a.headers["Cache-Control"] for a in answers} == {"no-store"}, "no cache keeps cookies"
    follow_ups = await asyncio.gather(*(c.request("GET", "/api/echo/after", csrf=False) for c in clones[:5]))
    assert [a.status for a in follow_ups] == [200] * 5
    assert front.api.refresh_calls == 1
    assert_no_token(front, *answers, *follow_ups)


async def test_after_logout_and_with_a_tampered_cookie_nothing_reaches_the_api(front: Front) -> None:
    browser = await front.logged_in()
    tampered = browser.clone()
    name = next(n for n in tampered.cookies if "accessTokenEtls" in n)
    tampered.cookies = {name: tampered.cookies[name][:-4] + "AAAA"}
    assert (await tampered.request("GET", "/api/echo/x")).code == "unauthenticated"
    assert (await browser.request("POST", "/api/auth/logout")).status == 200
    assert browser.cookies == {}
    after = await browser.request("GET", "/api/echo/x")
    assert (after.status, after.code) == (401, "unauthenticated")
    assert [r for r in front.recorder.requests if r.raw_path.startswith("/echo")] == []


async def test_the_decision_endpoint_is_not_reachable_through_the_front_proxy(front: Front) -> None:
    browser = await front.logged_in()
    answer = await browser.request("GET", "/api/auth/forward", headers={"X-Original-Method": "GET"})
    assert answer.status == 404
    assert_no_token(front, answer)
    assert "Authorization" not in answer.headers


async def test_a_provider_that_fails_is_503_refresh_unavailable_through_the_front(front: Front) -> None:
    """auth_request passes on only 401 and 403: the recipe asks bffgate again for its full answer."""
    browser = await front.logged_in()
    browser.forget_access_cookie()
    front.recorder.refresh_answer = JSONResponse({"error": "server_error"}, 502)
    answer = await browser.request("GET", "/api/echo/x", csrf=False)
    assert (answer.status, answer.code) == (503, "refresh_unavailable")
    assert [r for r in front.recorder.requests if r.raw_path.startswith("/echo")] == []


# What the API says -> what the browser gets through nginx, through Caddy.
CACHE_CONTROL_CASES = [
    (None, "private", "private"),
    ("max-age=60", "private, max-age=60", "private, max-age=60"),
    ("no-store", "no-store", "private, no-store"),
    # Caddy's header rules cannot look for `public`: it adds private to every answer.
    ("public, max-age=60", "public, max-age=60", "private, public, max-age=60"),
]


async def test_shared_caches_keep_nothing_of_the_apis_answers(front: Front) -> None:
    """As bffgate's own proxy: `private` added unless the API said public, private or no-store."""
    browser = await front.logged_in()
    for api_says, nginx_gives, caddy_gives in CACHE_CONTROL_CASES:
        query = f"?value={api_says}" if api_says else ""
        answer = await browser.request("GET", f"/api/cache-control{query}", csrf=False)
        assert answer.status == 200
        expected = nginx_gives if front.kind == "nginx" else caddy_gives
        assert answer.headers.getall("Cache-Control") == [expected], api_says


async def test_a_browser_cannot_name_the_method_the_decision_judges(front: Front) -> None:
    """A POST that claims to be a GET (in either family of method headers) still needs its CSRF proof."""
    browser = await front.logged_in()
    before = len(front.recorder.requests)
    for claim in ({"X-Original-Method": "GET"}, {"X-Forwarded-Method": "GET"}):
        answer = await browser.request("POST", "/api/echo/x", csrf=False, headers=claim, json_body={})
        assert answer.status in (400, 403), (claim, answer.status)
    assert front.recorder.requests[before:] == []


async def test_headers_only_a_trusted_hop_may_set_never_reach_the_api_from_the_browser(front: Front) -> None:
    browser = await front.logged_in()
    claims = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "203.0.113.9",
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
        "X-HTTP-Method-Override": "DELETE",
        "Forwarded": "for=203.0.113.9;host=evil.example",
        "True-Client-IP": "203.0.113.9",
    }
    answer = await browser.request("GET", "/api/echo/x", csrf=False, headers=claims)
    assert answer.status == 200
    received = front.recorder.requests[-1].headers
    leaked = {name: value for name, value in received.items() if "203.0.113.9" in value or "evil" in value}
    assert leaked == {}
    assert not {"x-original-url", "x-rewrite-url", "x-http-method-override"} & set(received)

"""Routes (``ROUTES``): several APIs behind one gateway, each with its own token rule and headers.

Real servers only: the gateway (rest provider, the demo API as ``REMOTE_API``) in front of three
recording APIs written with FastAPI (uvicorn), Flask (gunicorn) and Express (node), which keep
every request they receive (``recorders.py``). Each test marks its paths with a fresh value, so the
APIs can be shared by the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bffgate import create_app
from bffgate.cookies import CookieJar
from bffgate.stores.cookie import CookieSessionStore

from ..harness import Browser, Stack, serve, settings_for
from ..test_security import HOSTILE_PROXY_PATHS, raw_request
from ..upstream import create_test_upstream
from .recorders import RecordingApi, express_api, fastapi_api, flask_api, header


@dataclass(frozen=True)
class Apis:
    orders: RecordingApi  # FastAPI: a user API
    files: RecordingApi  # Flask: a second user API
    catalogue: RecordingApi  # Express: a public catalogue (user-or-none)


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apis]:
    logs = tmp_path_factory.mktemp("route-apis")
    with fastapi_api(logs) as orders, flask_api(logs) as files, express_api(logs) as catalogue:
        yield Apis(orders, files, catalogue)


def route_table(apis: Apis) -> list[dict[str, Any]]:
    return [
        {
            "prefix": "/api/orders/",
            "upstream": apis.orders.url + "/v1",
            "token": "user",
            "claim_headers": {"X-User-Id": "id", "X-User-Name": "name"},
        },
        {"prefix": "/api/files/", "upstream": apis.files.url, "token": "user"},
        {
            "prefix": "/api/catalogue/",
            "upstream": apis.catalogue.url + "/shop",
            "token": "user-or-none",
            "claim_headers": {"X-User-Id": "id"},
            "forward_client_address": True,
        },
        # The same origin as the orders API (one connection pool), no token at all.
        {"prefix": "/api/public/", "upstream": apis.orders.url + "/public", "token": "none"},
    ]


@contextlib.asynccontextmanager
async def routed_stack(http: aiohttp.ClientSession, apis: Apis, **overrides: Any) -> AsyncIterator[Stack]:
    """``make_stack`` with the route table, served as ``bffgate serve`` serves (no proxy headers)."""
    upstream, state, recorder = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        settings = settings_for(api_url, routes=route_table(apis), **overrides)
        async with serve(create_app(settings), proxy_headers=False) as gateway_url:
            yield Stack(gateway_url, api_url, state, recorder, settings, http)


@pytest.fixture
async def routed(http: aiohttp.ClientSession, apis: Apis) -> AsyncIterator[Stack]:
    async with routed_stack(http, apis, bff_trusted_proxies="127.0.0.1/32") as stack:
        yield stack


def marker() -> str:
    return "m" + secrets.token_hex(6)


async def access_token_of(stack: Stack, browser: Browser) -> str:
    store = CookieSessionStore(stack.settings, CookieJar(secure=stack.settings.bff_cookie_secure))
    session = await store.load(browser.cookies)
    assert session is not None and session.access_token
    return session.access_token


async def test_each_rule_without_a_session(routed: Stack, apis: Apis) -> None:
    """user: 401 (302 for a page navigation) and nothing sent; user-or-none and none: no Authorization."""
    browser, m = routed.browser(), marker()
    answer = await browser.request("GET", f"/api/orders/{m}")
    assert (answer.status, answer.code) == (401, "unauthenticated")
    page = await browser.request(
        "GET", f"/api/orders/{m}", csrf=False, headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
    )
    assert page.status == 302  # a page navigation goes to the login page
    assert await apis.orders.received(routed.http, m) == []

    catalogue = await browser.request("GET", f"/api/catalogue/items/{m}?q=1")
    assert catalogue.status == 200, catalogue.body
    assert catalogue.json() == {"api": "express", "path": f"/shop/items/{m}", "authorized": False}
    public = await browser.request("GET", f"/api/public/{m}")
    assert public.status == 200 and public.json()["path"] == f"/public/{m}"
    for api in (apis.catalogue, apis.orders):
        (received,) = await api.received(routed.http, m)
        assert header(received, "authorization") == [] and header(received, "cookie") == []
        assert header(received, "x-user-id") == []


async def test_each_rule_with_a_session(routed: Stack, apis: Apis) -> None:
    """user and user-or-none carry the session's token; none never sees it (nor any cookie)."""
    browser, m = await routed.logged_in(), marker()
    token = await access_token_of(routed, browser)
    for path in (f"/api/orders/{m}", f"/api/files/{m}", f"/api/catalogue/{m}", f"/api/public/{m}"):
        answer = await browser.request("GET", path)
        assert answer.status == 200, (path, answer.body)
    for api, prefix in ((apis.orders, "/v1/"), (apis.files, "/"), (apis.catalogue, "/shop/")):
        (received,) = await api.received(routed.http, prefix + m)
        assert header(received, "authorization") == [f"Bearer {token}"]
    (public,) = await apis.orders.received(routed.http, f"/public/{m}")
    assert header(public, "authorization") == [] and header(public, "cookie") == []
    assert token not in str(public)


async def test_csrf_is_required_on_every_route(routed: Stack, apis: Apis) -> None:
    browser, m = await routed.logged_in(), marker()
    for path in (f"/api/orders/{m}", f"/api/catalogue/{m}", f"/api/public/{m}"):
        for method in ("GET", "POST"):
            answer = await browser.request(method, path, csrf=False)
            assert (answer.status, answer.code) == (403, "csrf_failed"), path
        foreign = await browser.request("POST", path, headers={"Origin": "https://evil.example"})
        assert foreign.status == 403
    for api in (apis.orders, apis.catalogue):
        assert await api.received(routed.http, m) == []


@pytest.mark.parametrize("prefix", ["/api/orders/", "/api/catalogue/", "/api/public/"])
@pytest.mark.parametrize("path", HOSTILE_PROXY_PATHS)
async def test_url_escapes_are_refused_on_every_route(routed: Stack, prefix: str, path: str) -> None:
    """Traversal, encoded separators and absolute URLs never leave the route's own base URL."""
    browser = await routed.logged_in()
    answer = await raw_request(routed.gateway_url, prefix + path, browser.cookies)
    assert answer.status == 400, (prefix + path, answer.body)


async def test_url_escape_reaches_no_api(routed: Stack, apis: Apis) -> None:
    browser = await routed.logged_in()
    for prefix in ("/api/orders/", "/api/catalogue/", "/api/public/"):
        for path in ("..%2f..%2f__log", "%2e%2e/%2e%2e/__log", "x/../../__log", "http://evil.example/__log"):
            answer = await raw_request(routed.gateway_url, prefix + path, browser.cookies)
            assert answer.status == 400
    for api in (apis.orders, apis.catalogue):
        assert [
            r for r in await api.received(routed.http, "__log") if "evil" in r["path"] or ".." in r["path"]
        ] == []


async def test_claim_headers_come_from_the_session_and_spoofed_ones_are_dropped(
    routed: Stack, apis: Apis
) -> None:
    browser, m = await routed.logged_in(), marker()
    spoofed = {"X-User-Id": "admin", "x-user-name": "Mallory"}
    assert (await browser.request("GET", f"/api/orders/{m}", headers=spoofed)).status == 200
    (orders,) = await apis.orders.received(routed.http, m)
    assert header(orders, "x-user-id") == ["demo"]
    assert header(orders, "x-user-name") == ["Demo User"]
    # A route without claim headers, the default route, and a caller without a session: dropped too.
    assert (await browser.request("GET", f"/api/files/{m}", headers=spoofed)).status == 200
    (files,) = await apis.files.received(routed.http, m)
    assert header(files, "x-user-id") == [] and header(files, "x-user-name") == []
    assert (await browser.request("GET", f"/api/rest/proxy/echo/{m}", headers=spoofed)).status == 200
    (default,) = [r for r in routed.recorder.requests if m in r.raw_path]
    assert "x-user-id" not in default.headers
    envelope = {"url": f"/echo/c{m}", "options": {"method": "GET", "headers": spoofed}}
    assert (await browser.request("POST", "/api/rest/customfetch", json_body=envelope)).status == 200
    (fetched,) = [r for r in routed.recorder.requests if f"c{m}" in r.raw_path]
    assert "x-user-id" not in fetched.headers and "x-user-name" not in fetched.headers
    anonymous = routed.browser()
    assert (await anonymous.request("GET", f"/api/catalogue/a{m}", headers=spoofed)).status == 200
    (catalogue,) = await apis.catalogue.received(routed.http, f"a{m}")
    assert header(catalogue, "x-user-id") == []


async def test_client_address_is_forwarded_only_as_trusted_proxies_say(routed: Stack, apis: Apis) -> None:
    """The peer (127.0.0.1) is trusted here: its X-Forwarded-For's last untrusted entry is the client."""
    browser, m = routed.browser(), marker()
    chain = {"X-Forwarded-For": "192.0.2.66, 198.51.100.7"}
    assert (await browser.request("GET", f"/api/catalogue/{m}", headers=chain)).status == 200
    (received,) = await apis.catalogue.received(routed.http, m)
    assert header(received, "x-forwarded-for") == ["198.51.100.7"]
    assert header(received, "forwarded") == ["for=198.51.100.7"]
    # A route without forward_client_address: nothing, whatever the browser sent.
    assert (await browser.request("GET", f"/api/public/{m}", headers=chain)).status == 200
    (public,) = await apis.orders.received(routed.http, f"/public/{m}")
    assert header(public, "x-forwarded-for") == [] and header(public, "forwarded") == []
    # The peer is not a trusted proxy: its X-Forwarded-For is not believed, the peer is the client.
    async with routed_stack(routed.http, apis, bff_trusted_proxies="10.0.0.0/8") as other:
        m2 = marker()
        assert (await other.browser().request("GET", f"/api/catalogue/{m2}", headers=chain)).status == 200
        (direct,) = await apis.catalogue.received(routed.http, m2)
        assert header(direct, "x-forwarded-for") == ["127.0.0.1"]


async def test_a_user_storm_across_two_routes_after_expiry_refreshes_once(routed: Stack, apis: Apis) -> None:
    browser, m = await routed.logged_in(), marker()
    browser.forget_access_cookie()  # the access token's cookie ran out: every call must refresh first
    before = routed.api.refresh_calls
    calls = [
        browser.clone().request("GET", f"/api/{name}/{m}/{index}", keep_cookies=False)
        for index in range(20)
        for name in ("orders", "files")
    ]
    answers = await asyncio.gather(*calls)
    assert [a.status for a in answers] == [200] * 40
    assert routed.api.refresh_calls == before + 1
    tokens = {
        header(r, "authorization")[0]
        for api in (apis.orders, apis.files)
        for r in await api.received(routed.http, m)
    }
    assert len(tokens) == 1


async def test_a_401_from_a_user_route_refreshes_and_retries_once(routed: Stack, apis: Apis) -> None:
    browser, m = await routed.logged_in(), marker()
    await apis.files.reject(routed.http, await access_token_of(routed, browser))
    before = routed.api.refresh_calls
    answer = await browser.request("POST", f"/api/files/{m}", json_body={"n": 1})
    assert answer.status == 200, answer.body
    assert routed.api.refresh_calls == before + 1
    first, second = await apis.files.received(routed.http, m)
    assert header(first, "authorization") != header(second, "authorization")
    assert answer.set_cookies  # the refreshed session reaches the browser


async def test_no_route_shadows_the_gateway(routed: Stack) -> None:
    """The default route and the auth endpoints are untouched; an unknown prefix is the router's 404."""
    browser = await routed.logged_in()
    assert (await browser.request("GET", "/api/rest/proxy/echo/x")).status == 200
    assert (await browser.request("GET", "/api/auth/user")).status == 200
    assert (await browser.request("GET", "/api/orders")).status == 404  # the prefix ends with /
    assert (await browser.request("GET", "/api/nothing/x")).status == 404
    assert (await browser.request("TRACE", "/api/orders/x")).status == 405

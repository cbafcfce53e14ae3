"""A token per API (RFC 8707 resource indicators) against the real provider and two real APIs.

The gateway has two routes besides its default one: ``/orders/`` (rule ``user``) and ``/billing/``
(rule ``user-or-none``), each naming its API's resource indicator. oidc-provider issues JWT access
tokens with that audience from the user's refresh token; each API accepts only its own audience and
records every token it receives. Both session stores: sealed cookies and Redis (db 7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from joserfc.jwk import KeySet

from bffgate import create_app
from bffgate.cookies import CookieJar
from bffgate.redis_client import close, connect
from bffgate.route_settings import RouteSettings
from bffgate.session import ApiToken, Session
from bffgate.stores.redis import RedisSessionStore
from bffgate.tokens import unverified_claims

from ..harness import Browser, serve, settings_for
from ..test_live_sockets import handshakes, open_socket
from ..upstream import Recorder, create_socket_api
from .conftest import OidcStack, OidcStackFactory
from .resource_servers import BILLING, ORDERS, ResourceServer

REDIS_DB7 = "redis://127.0.0.1:6379/7"
STORES = pytest.mark.parametrize(
    "store", [{}, {"bff_session_store": "redis", "redis_url": REDIS_DB7}], ids=["cookie", "redis"]
)
STORM = 20
API_COOKIE = "__Host-apiTokensEtls"


class Apis:
    def __init__(self, orders: ResourceServer, billing: ResourceServer, urls: dict[str, str]) -> None:
        self.orders = orders
        self.billing = billing
        self.urls = urls

    def routes(self) -> list[dict[str, Any]]:
        return [
            {"prefix": "/orders/", "upstream": self.urls[ORDERS], "token": "user", "resource": ORDERS},
            {
                "prefix": "/billing/",
                "upstream": self.urls[BILLING],
                "token": "user-or-none",
                "resource": BILLING,
                "scopes": "billing:read",
            },
        ]


@pytest.fixture
async def apis(oidc_issuer: str, http: aiohttp.ClientSession) -> AsyncIterator[Apis]:
    async with http.get(f"{oidc_issuer}/jwks") as response:
        keys = KeySet.import_key_set(await response.json())
    orders = ResourceServer(ORDERS, oidc_issuer, keys)
    billing = ResourceServer(BILLING, oidc_issuer, keys)
    async with serve(orders.app()) as orders_url, serve(billing.app()) as billing_url:
        yield Apis(orders, billing, {ORDERS: orders_url, BILLING: billing_url})


async def session_of(stack: OidcStack, browser: Browser) -> Session:
    """The session behind the browser's cookies, from whichever store the stack uses."""
    if stack.settings.bff_session_store == "cookie":
        return await stack.session_of(browser)
    client = connect(REDIS_DB7)
    try:
        store = RedisSessionStore(stack.settings, CookieJar(secure=True), client)
        session = await store.load(browser.cookies)
    finally:
        await close(client)
    assert session is not None
    return session


async def expire_api_tokens(stack: OidcStack, browser: Browser, *, own_too: bool = False) -> None:
    """The per-API tokens' life ends (``own_too``: the session's own token's too): the browser drops
    their cookies, or (Redis) they are past expiry."""
    if stack.settings.bff_session_store == "cookie":
        for name in [n for n in browser.cookies if n.startswith(API_COOKIE)]:
            del browser.cookies[name]
        if own_too:
            browser.forget_access_cookie()
        return
    client = connect(REDIS_DB7)
    try:
        store = RedisSessionStore(stack.settings, CookieJar(secure=True), client)
        session = await store.load(browser.cookies)
        assert session is not None
        past = time.time() - 1
        expired = {key: ApiToken(t.access_token, past, past - 20) for key, t in session.api_tokens.items()}
        session = replace(session, api_tokens=expired)
        if own_too:
            session = replace(session, access_expires_at=past, access_issued_at=past - 20)
        await store.save(session, existing=True)
    finally:
        await close(client)


def audiences(tokens: list[str]) -> set[str]:
    return {str((unverified_claims(token) or {}).get("aud")) for token in tokens}


@STORES
async def test_each_route_sends_only_its_own_apis_token(
    make_oidc_stack: OidcStackFactory, apis: Apis, store: dict[str, Any]
) -> None:
    """Each API receives a token with its own audience and accepts it; neither ever sees the other's
    token or the session's own, and each refuses the other's."""
    async with make_oidc_stack(routes=apis.routes(), **store) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        orders = await browser.request("GET", "/orders/me")
        billing = await browser.request("GET", "/billing/me")
        default = await browser.request("GET", "/api/rest/proxy/me")
        assert orders.status == 200, orders.body
        assert billing.status == 200, billing.body
        assert default.status == 200  # the session's own (userinfo) token still serves REMOTE_API
        assert orders.json()["aud"] == ORDERS and orders.json()["sub"] == "alice"
        assert billing.json()["aud"] == BILLING and billing.json()["scope"] == "billing:read"
        assert audiences(apis.orders.tokens) == {ORDERS}
        assert audiences(apis.billing.tokens) == {BILLING}
        assert not set(apis.orders.tokens) & set(apis.billing.tokens)
        session = await session_of(oidc, browser)
        assert session.access_token not in apis.orders.tokens + apis.billing.tokens
        # Each API accepts only its own audience: the other API's token is refused.
        assert apis.billing.verify(apis.orders.tokens[0]) is None
        assert apis.orders.verify(apis.billing.tokens[0]) is None
        # Served from the session from now on: no more grants.
        assert (await browser.request("GET", "/orders/me")).status == 200
        stats = await oidc.provider.stats(oidc.client.client_id)
        assert stats == {
            "authorization_code 200": 1,
            f"refresh_token 200 {ORDERS}": 1,
            f"refresh_token 200 {BILLING}": 1,
        }


@STORES
async def test_forward_auth_hands_each_route_its_own_apis_token(
    make_oidc_stack: OidcStackFactory, apis: Apis, store: dict[str, Any]
) -> None:
    """A front proxy asking for a request to /orders/ or /billing/ gets that API's token to send, never
    the session's own or the other API's: the same rule as the gateway's own proxy."""
    async with make_oidc_stack(routes=apis.routes(), **store) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        bearer: dict[str, str] = {}
        for uri in ("/orders/me", "/billing/me", "/api/rest/proxy/me"):
            decision = await browser.request(
                "GET", "/api/auth/forward", headers={"X-Original-Method": "GET", "X-Original-URI": uri}
            )
            assert decision.status == 200, decision.body
            bearer[uri] = decision.headers["Authorization"].removeprefix("Bearer ")
        assert audiences([bearer["/orders/me"]]) == {ORDERS}
        assert audiences([bearer["/billing/me"]]) == {BILLING}
        assert apis.orders.verify(bearer["/orders/me"]) is not None
        assert apis.billing.verify(bearer["/billing/me"]) is not None
        session = await session_of(oidc, browser)
        assert bearer["/api/rest/proxy/me"] == session.access_token
        assert session.access_token not in (bearer["/orders/me"], bearer["/billing/me"])


@STORES
async def test_storm_across_two_routes_after_expiry_makes_one_grant_per_token(
    make_oidc_stack: OidcStackFactory, apis: Apis, store: dict[str, Any]
) -> None:
    """Concurrent calls to both routes and the default one after all three tokens expired: one grant
    per token, none presenting a refresh token another grant had rotated (the provider would revoke
    the whole grant)."""
    async with make_oidc_stack(routes=apis.routes(), **store) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        assert (await browser.request("GET", "/orders/me")).status == 200
        assert (await browser.request("GET", "/billing/me")).status == 200
        await expire_api_tokens(oidc, browser, own_too=True)
        clones = [browser.clone() for _ in range(3 * STORM)]
        paths = ["/orders/me", "/billing/me", "/api/rest/proxy/me"] * STORM
        answers = await asyncio.gather(
            *(clone.request("GET", path) for clone, path in zip(clones, paths, strict=True))
        )
        assert [answer.status for answer in answers] == [200] * (3 * STORM)
        stats = await oidc.provider.stats(oidc.client.client_id)
        assert stats == {
            "authorization_code 200": 1,
            "refresh_token 200": 1,
            f"refresh_token 200 {ORDERS}": 2,
            f"refresh_token 200 {BILLING}": 2,
        }
        assert audiences(apis.orders.tokens) == {ORDERS}
        assert audiences(apis.billing.tokens) == {BILLING}
        # Whichever answer the browser kept last, its cookies still lead to live tokens.
        for clone in clones[:2] + clones[-2:]:
            assert (await clone.request("GET", "/orders/me")).status == 200
            assert (await clone.request("GET", "/billing/me")).status == 200
        assert "refresh_token 400" not in await oidc.provider.stats(oidc.client.client_id)


@pytest.mark.parametrize(
    "store",
    [{"redis_url": REDIS_DB7}, {"bff_session_store": "redis", "redis_url": REDIS_DB7}],
    ids=["cookie+redis", "redis"],
)
async def test_storm_across_two_instances_makes_one_grant_per_token(
    make_oidc_stack: OidcStackFactory, apis: Apis, store: dict[str, Any]
) -> None:
    """The same storm split over two gateway instances sharing Redis: still one grant per token."""
    stack = make_oidc_stack(routes=apis.routes(), **store)
    async with stack as oidc, serve(create_app(oidc.settings)) as second_url:
        browser = oidc.browser()
        await oidc.login(browser)
        assert (await browser.request("GET", "/orders/me")).status == 200
        assert (await browser.request("GET", "/billing/me")).status == 200
        await expire_api_tokens(oidc, browser)
        clones = [browser.clone() for _ in range(2 * STORM)]
        for clone in clones[::2]:
            clone.base = second_url
        paths = ["/orders/me", "/orders/me", "/billing/me", "/billing/me"] * (STORM // 2)
        answers = await asyncio.gather(
            *(clone.request("GET", path) for clone, path in zip(clones, paths, strict=True))
        )
        assert [answer.status for answer in answers] == [200] * (2 * STORM)
        stats = await oidc.provider.stats(oidc.client.client_id)
        assert stats == {
            "authorization_code 200": 1,
            f"refresh_token 200 {ORDERS}": 2,
            f"refresh_token 200 {BILLING}": 2,
        }


@STORES
async def test_logout_clears_every_per_api_token(
    make_oidc_stack: OidcStackFactory, apis: Apis, store: dict[str, Any]
) -> None:
    """After logout the browser holds no per-API token and neither route sends one any more."""
    async with make_oidc_stack(routes=apis.routes(), **store) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        assert (await browser.request("GET", "/orders/me")).status == 200
        assert (await browser.request("GET", "/billing/me")).status == 200
        if not store:
            assert any(name.startswith(API_COOKIE) for name in browser.cookies)
        copy = browser.clone()
        answer = await browser.request("POST", "/api/auth/logout")
        assert answer.status == 200
        assert browser.cookies == {}
        before = len(apis.orders.tokens), len(apis.billing.tokens)
        assert (await browser.request("GET", "/orders/me")).status == 401
        billing = await browser.request("GET", "/billing/me")  # user-or-none: goes, without a token
        assert billing.status == 200 and billing.json()["anonymous"] is True
        # A copy of the old cookies gets nothing either (the logout sticks in this process).
        assert (await copy.request("GET", "/orders/me")).status == 401
        assert (len(apis.orders.tokens), len(apis.billing.tokens)) == before


async def test_a_401_from_an_api_gets_one_new_token_for_that_api_and_one_retry(
    make_oidc_stack: OidcStackFactory, apis: Apis
) -> None:
    """The API refuses a token it would accept: one grant for that API alone, the call retried once
    with the new token; a second refusal is passed through."""
    async with make_oidc_stack(routes=apis.routes()) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        assert (await browser.request("GET", "/orders/me")).status == 200
        apis.orders.refuse_next = 1
        assert (await browser.request("GET", "/orders/me")).status == 200
        assert len(set(apis.orders.tokens)) == 2  # the refused token, then a new one
        apis.orders.refuse_next = 2
        assert (await browser.request("GET", "/orders/me")).status == 401
        stats = await oidc.provider.stats(oidc.client.client_id)
        assert stats == {"authorization_code 200": 1, f"refresh_token 200 {ORDERS}": 3}
        assert apis.billing.tokens == []


async def test_a_user_or_none_route_without_a_session_sends_no_token(
    make_oidc_stack: OidcStackFactory, apis: Apis
) -> None:
    """Without a session the billing route calls its API without Authorization and no grant is made."""
    async with make_oidc_stack(routes=apis.routes()) as oidc:
        answer = await oidc.browser().request("GET", "/billing/me")
        assert answer.status == 200 and answer.json()["anonymous"] is True
        assert apis.billing.tokens == []
        assert await oidc.provider.stats(oidc.client.client_id) == {}


def test_a_resource_needs_an_openid_connect_provider() -> None:
    """ROUTES[i].resource with BFF_PROVIDER=rest stops start-up naming the key and the fix."""
    route = {"prefix": "/orders/", "upstream": "http://127.0.0.1:9/", "token": "user", "resource": ORDERS}
    with pytest.raises(ValueError, match=r"ROUTES\[0\]\.resource: a per-API token needs BFF_PROVIDER=oidc"):
        settings_for("http://127.0.0.1:9", routes=[route])


def test_a_resource_is_an_absolute_uri_on_a_user_route() -> None:
    """A relative resource, or one on a route without a user token, is refused at start-up."""
    base = {"prefix": "/orders/", "upstream": "http://127.0.0.1:9/"}
    oidc = {"bff_provider": "oidc", "oidc_issuer": "http://127.0.0.1:9", "oidc_client_id": "c"}
    with pytest.raises(ValueError, match="absolute URI without a fragment"):
        settings_for("http://127.0.0.1:9", routes=[{**base, "token": "user", "resource": "/orders"}], **oidc)
    with pytest.raises(ValueError, match=r"ROUTES\[0\]\.resource: is only used with token = user"):
        settings_for("http://127.0.0.1:9", routes=[{**base, "token": "none", "resource": ORDERS}], **oidc)


async def test_an_api_the_sign_in_did_not_ask_for_is_refused_and_the_session_lives_on(
    make_oidc_stack: OidcStackFactory, apis: Apis
) -> None:
    """A route added after the user signed in answers 403 api_token_refused without asking the
    provider (oidc-provider spends the refresh token on such a request before refusing it, which
    would end the session); the session and its other routes keep working."""
    orders_only = apis.routes()[:1]
    async with make_oidc_stack(routes=orders_only) as oidc:
        browser = oidc.browser()
        await oidc.login(browser)
        assert (await browser.request("GET", "/orders/me")).status == 200
        routes = [RouteSettings.model_validate(route) for route in apis.routes()]
        async with serve(create_app(oidc.settings.model_copy(update={"routes": routes}))) as url:
            later = browser.clone()
            later.base = url  # the same session, on a gateway with one more route
            answer = await later.request("GET", "/billing/me")
            assert answer.status == 403
            assert answer.code == "api_token_refused"
            assert apis.billing.tokens == []
            await expire_api_tokens(oidc, later)
            assert (await later.request("GET", "/orders/me")).status == 200
        stats = await oidc.provider.stats(oidc.client.client_id)
        assert stats == {"authorization_code 200": 1, f"refresh_token 200 {ORDERS}": 2}


async def test_a_websocket_on_a_route_naming_its_api_carries_that_apis_token(
    make_oidc_stack: OidcStackFactory,
) -> None:
    """A handshake to a ``user`` route with ``resource``: the route's WebSocket API gets the user's
    token for that API alone (its audience), not the session's own token."""
    recorder = Recorder()
    async with serve(create_socket_api(recorder), lifespan="off") as socket_api_url:
        live = [{"prefix": "/live/", "upstream": socket_api_url, "token": "user", "resource": ORDERS}]
        async with make_oidc_stack(routes=live) as oidc:
            browser = oidc.browser()
            await oidc.login(browser)
            async with open_socket(browser, "echo", prefix="/live/", origin=oidc.gateway_url) as socket:
                await socket.send("hello")
                assert await socket.recv() == "hello"
            [handshake] = handshakes(recorder)
            token = handshake.headers["authorization"].removeprefix("Bearer ")
            assert audiences([token]) == {ORDERS}
            assert (unverified_claims(token) or {}).get("sub") == "alice"
            assert token != (await oidc.session_of(browser)).access_token

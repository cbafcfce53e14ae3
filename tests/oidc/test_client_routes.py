"""``token = "client"`` routes against the real oidc-provider (client credentials enabled).

The gateway (``BFF_PROVIDER=oidc``) has a user route, a client route and a ``none`` route in front of
recording APIs (FastAPI, Flask, Express: ``tests/routes/recorders.py``). The provider counts the
grants it answers per client (``/__test/stats``), so "one grant" is the provider's own count.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bffgate import create_app

from ..harness import Browser, serve, settings_for
from ..routes.recorders import RecordingApi, express_api, fastapi_api, flask_api, header
from ..test_live_sockets import handshakes, open_socket
from ..upstream import Recorder, create_socket_api
from .conftest import OidcStack, OidcStackFactory
from .support import ProviderApi

GRANTS = "client_credentials 200"
REDIS_DB = 12


@dataclass(frozen=True)
class Apis:
    billing: RecordingApi  # FastAPI, token = client
    profile: RecordingApi  # Flask, token = user
    status: RecordingApi  # Express, token = none


@pytest.fixture(scope="module")
def apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apis]:
    logs = tmp_path_factory.mktemp("client-route-apis")
    with fastapi_api(logs) as billing, flask_api(logs) as profile, express_api(logs) as status:
        yield Apis(billing, profile, status)


def routes(apis: Apis) -> list[dict[str, Any]]:
    return [
        {"prefix": "/api/billing/", "upstream": apis.billing.url, "token": "client"},
        {"prefix": "/api/profile/", "upstream": apis.profile.url, "token": "user"},
        {"prefix": "/api/status/", "upstream": apis.status.url, "token": "none"},
    ]


def with_client_credentials(gateway_url: str) -> dict[str, Any]:
    return {"grant_types": ["authorization_code", "refresh_token", "client_credentials"]}


def marker() -> str:
    return "m" + secrets.token_hex(6)


async def grants(stack: OidcStack) -> int:
    return (await stack.provider.stats(stack.client.client_id)).get(GRANTS, 0)


async def test_client_route_sends_the_gateways_token_with_or_without_a_session(
    make_oidc_stack: OidcStackFactory, apis: Apis
) -> None:
    async with make_oidc_stack(client_metadata=with_client_credentials, routes=routes(apis)) as stack:
        anonymous, m = stack.browser(), marker()
        answer = await anonymous.request("GET", f"/api/billing/invoices/{m}")
        assert answer.status == 200, answer.body
        assert not answer.set_cookies  # never in a cookie
        (first,) = await apis.billing.received(stack.http, m)
        (authorization,) = header(first, "authorization")
        client_token = authorization.removeprefix("Bearer ")
        introspected = await stack.provider.introspect(stack.client, client_token)
        assert introspected["active"] is True and introspected["client_id"] == stack.client.client_id
        assert "sub" not in introspected  # the client's own token, no user in it

        browser = stack.browser()
        await stack.login(browser)
        user_token = (await stack.session_of(browser)).access_token
        assert user_token
        m2 = marker()
        for path in (f"/api/billing/{m2}", f"/api/profile/{m2}", f"/api/status/{m2}"):
            assert (await browser.request("GET", path)).status == 200, path
        (billing,) = await apis.billing.received(stack.http, m2)
        assert header(billing, "authorization") == [f"Bearer {client_token}"]  # cached, not the user's
        (profile,) = await apis.profile.received(stack.http, m2)
        assert header(profile, "authorization") == [f"Bearer {user_token}"]
        (status,) = await apis.status.received(stack.http, m2)
        assert header(status, "authorization") == []
        for api in (apis.billing, apis.status):  # the user's token never reaches a client/none API
            assert user_token not in str(await api.received(stack.http, ""))
        assert await grants(stack) == 1


async def test_a_storm_of_50_callers_gets_one_grant(make_oidc_stack: OidcStackFactory, apis: Apis) -> None:
    async with make_oidc_stack(client_metadata=with_client_credentials, routes=routes(apis)) as stack:
        m = marker()
        answers = await asyncio.gather(
            *(stack.browser().request("GET", f"/api/billing/{m}/{n}") for n in range(50))
        )
        assert [a.status for a in answers] == [200] * 50
        assert await grants(stack) == 1
        tokens = {header(r, "authorization")[0] for r in await apis.billing.received(stack.http, m)}
        assert len(tokens) == 1


async def test_a_401_gets_one_new_grant_and_one_retry(make_oidc_stack: OidcStackFactory, apis: Apis) -> None:
    async with make_oidc_stack(client_metadata=with_client_credentials, routes=routes(apis)) as stack:
        browser, m = stack.browser(), marker()
        assert (await browser.request("GET", f"/api/billing/{m}")).status == 200
        (first,) = await apis.billing.received(stack.http, m)
        await apis.billing.reject(stack.http, header(first, "authorization")[0].removeprefix("Bearer "))
        m2 = marker()
        answers = await asyncio.gather(
            *(browser.request("POST", f"/api/billing/{m2}/{n}", json_body={"n": n}) for n in range(5))
        )
        assert [a.status for a in answers] == [200] * 5
        assert await grants(stack) == 2  # one new grant for all five 401s
        tokens = [header(r, "authorization")[0] for r in await apis.billing.received(stack.http, m2)]
        assert len(tokens) == 10 and len(set(tokens)) == 2


async def test_two_gateways_sharing_redis_get_one_grant(
    make_oidc_stack: OidcStackFactory, apis: Apis
) -> None:
    """With REDIS_URL the grant is single-flight across instances too (a lock and a sealed copy)."""
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    async with (
        make_oidc_stack(
            client_metadata=with_client_credentials, routes=routes(apis), redis_url=redis_url
        ) as stack,
        serve(create_app(stack.settings)) as second_url,
    ):
        m = marker()
        first, second = stack.browser(), stack.browser()
        second.base = second_url
        calls = [b.request("GET", f"/api/billing/{m}/{n}") for n in range(25) for b in (first, second)]
        answers = await asyncio.gather(*calls)
        assert [a.status for a in answers] == [200] * 50
        assert await grants(stack) == 1


async def test_rest_provider_with_a_configured_token_endpoint(
    provider: ProviderApi, http: aiohttp.ClientSession, apis: Apis
) -> None:
    """BFF_PROVIDER=rest: the route names the token endpoint and its own client; a refused grant is a
    502 problem that shows no secret, and nothing reaches the API."""
    client = await provider.register(
        "http://127.0.0.1:1", extra={"grant_types": ["authorization_code", "client_credentials"]}
    )
    assert client.client_secret
    m = marker()
    route = {"upstream": apis.billing.url, "token": "client", "client_token_url": f"{provider.issuer}/token"}
    routes = [
        {
            **route,
            "prefix": "/api/billing/",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
        {**route, "prefix": "/api/wrong/", "client_id": client.client_id, "client_secret": "not-the-secret"},
    ]
    settings = settings_for(f"{provider.issuer}/resource", routes=routes)
    async with serve(create_app(settings)) as url:
        browser = Browser(http, url)
        answer = await browser.request("GET", f"/api/billing/{m}")
        assert answer.status == 200, answer.body
        (received,) = await apis.billing.received(http, m)
        token = header(received, "authorization")[0].removeprefix("Bearer ")
        assert (await provider.introspect(client, token))["client_id"] == client.client_id
        refused = await browser.request("GET", f"/api/wrong/{m}")
        assert (refused.status, refused.code) == (502, "upstream_unavailable")
        assert b"not-the-secret" not in refused.body and client.client_secret.encode() not in refused.body
        assert b"invalid_client" in refused.body
        assert len(await apis.billing.received(http, m)) == 1


async def test_a_websocket_on_a_client_route_carries_the_gateways_token(
    make_oidc_stack: OidcStackFactory,
) -> None:
    """A handshake to a ``client`` route's prefix, without a session: the route's WebSocket API gets the
    gateway's client-credentials token (no user in it), never a cookie."""
    recorder = Recorder()
    async with serve(create_socket_api(recorder), lifespan="off") as socket_api_url:
        live = [{"prefix": "/api/live/", "upstream": socket_api_url, "token": "client"}]
        async with make_oidc_stack(client_metadata=with_client_credentials, routes=live) as stack:
            async with open_socket(
                stack.browser(), "echo", prefix="/api/live/", origin=stack.gateway_url
            ) as socket:
                await socket.send("hello")
                assert await socket.recv() == "hello"
            [handshake] = handshakes(recorder)
            client_token = handshake.headers["authorization"].removeprefix("Bearer ")
            introspected = await stack.provider.introspect(stack.client, client_token)
            assert introspected["active"] is True and introspected["client_id"] == stack.client.client_id
            assert "sub" not in introspected
            assert "cookie" not in handshake.headers

"""WebSockets on configured routes (``ROUTES``): a handshake to a route's prefix is relayed to that
route's upstream with that route's credentials, after the same Origin check as the default route.

Real parts: the gateway with its default API (the demo API, also the identity provider) and a second
Starlette WebSocket API under uvicorn on a port of its own as the routes' upstream, driven by the
``websockets`` client as a browser would (``test_live_sockets``'s helpers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from bffgate.live_sockets import SESSION_ENDED

from .conftest import StackFactory
from .harness import Stack, nothing_goes_upstream, serve
from .test_live_sockets import closed_with, handshakes, open_socket
from .upstream import Recorder, create_socket_api

USER, EITHER, NONE = "/api/live/", "/api/feed/", "/api/open/"


@dataclass(frozen=True)
class Routed:
    stack: Stack  # the gateway, its default API and identity provider
    api: Recorder  # what the routes' WebSocket API received


@pytest.fixture
async def routed(make_stack: StackFactory) -> AsyncIterator[Routed]:
    recorder = Recorder()
    async with serve(create_socket_api(recorder), lifespan="off") as api_url:
        routes: list[dict[str, Any]] = [
            {"prefix": USER, "upstream": api_url, "token": "user", "claim_headers": {"X-User-Id": "id"}},
            {"prefix": EITHER, "upstream": api_url, "token": "user-or-none"},
            {"prefix": NONE, "upstream": api_url, "token": "none"},
        ]
        async with make_stack(routes=routes) as stack:
            yield Routed(stack, recorder)


async def echoes(socket: Any) -> bool:
    await socket.send("ping")
    return bool(await socket.recv() == "ping")


def bearer(handshake: Any) -> str | None:
    value: str | None = handshake.headers.get("authorization")
    return value.removeprefix("Bearer ") if value else None


async def test_a_user_route_sends_the_sessions_bearer_and_its_claim_headers(routed: Routed) -> None:
    """The route's upstream gets the session's Bearer, the route's claim header (never the browser's
    own of that name) and no cookie; messages go both ways."""
    browser = await routed.stack.logged_in()
    with nothing_goes_upstream(routed.stack):  # the default API is not involved
        async with open_socket(browser, "echo", prefix=USER, headers={"X-User-Id": "admin"}) as socket:
            assert await echoes(socket)
    [handshake] = handshakes(routed.api)
    assert handshake.raw_path == "/echo"
    token = bearer(handshake)
    assert token is not None and routed.stack.api.verify_access_token(token) is not None
    assert handshake.headers["x-user-id"] == "demo"
    assert "cookie" not in handshake.headers


async def test_a_user_route_refuses_a_caller_without_a_session(routed: Routed) -> None:
    with nothing_goes_upstream(routed.api), pytest.raises(InvalidStatus) as refused:
        async with open_socket(routed.stack.browser(), "echo", prefix=USER):
            pass
    assert refused.value.response.status_code == 401


async def test_a_none_route_sends_no_authorization(routed: Routed) -> None:
    """Logged in or not, a ``none`` route's API gets neither a Bearer nor the cookies."""
    browser = await routed.stack.logged_in()
    async with open_socket(browser, "echo", prefix=NONE) as socket:
        assert await echoes(socket)
    [handshake] = handshakes(routed.api)
    assert "authorization" not in handshake.headers
    assert "cookie" not in handshake.headers


async def test_a_user_or_none_route_sends_a_bearer_only_with_a_session(routed: Routed) -> None:
    stack = routed.stack
    async with open_socket(await stack.logged_in(), "echo", prefix=EITHER) as socket:
        assert await echoes(socket)
    async with open_socket(stack.browser(), "echo", prefix=EITHER) as socket:
        assert await echoes(socket)
    with_session, without = handshakes(routed.api)
    token = bearer(with_session)
    assert token is not None and stack.api.verify_access_token(token) is not None
    assert bearer(without) is None


@pytest.mark.parametrize("prefix", [USER, EITHER, NONE])
async def test_a_foreign_origin_is_refused_on_every_route(routed: Routed, prefix: str) -> None:
    """Cross-site WebSocket hijacking on a route: 403 before anything reaches its API."""
    browser = await routed.stack.logged_in()
    with nothing_goes_upstream(routed.api), pytest.raises(InvalidStatus) as refused:
        async with open_socket(browser, "echo", prefix=prefix, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    assert b'"csrf_failed"' in (refused.value.response.body or b"")


async def test_a_path_leaving_the_routes_upstream_is_refused(routed: Routed) -> None:
    """The route's URL containment (``ApiRoute.urls``): 400, nothing upstream."""
    with nothing_goes_upstream(routed.api), pytest.raises(InvalidStatus) as refused:
        async with open_socket(routed.stack.browser(), "a/%2e%2e/%2e%2e/admin", prefix=NONE):
            pass
    assert refused.value.response.status_code == 400


async def test_logout_closes_a_route_socket_opened_with_a_session(routed: Routed) -> None:
    """A socket on a user-or-none route with a session ends with the session (4401)."""
    browser = await routed.stack.logged_in()
    async with open_socket(browser, "ticks?every=0.05", prefix=EITHER) as socket:
        await socket.recv()
        assert (await browser.request("POST", "/api/auth/logout")).status == 200
        assert await closed_with(socket) == SESSION_ENDED

"""WebSockets through a real ``bffgate serve`` (bounded httptools protocol, uvicorn's websockets-sansio)
to a Node ``ws`` API; logins and refreshes go to the demo API (BFF_LOGIN_URL / BFF_REFRESH_URL)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from bffgate.demo.api import DemoState, create_demo_api

from ..harness import Browser, serve
from ..processes import gateway_process
from .node_ws_server import node_ws_server

OUR_ORIGIN = "http://127.0.0.1:8000"  # the default BFF_PUBLIC_URL's


@dataclass
class NodeStack:
    gateway_url: str
    node_url: str
    api: DemoState
    http: aiohttp.ClientSession

    async def handshakes(self) -> list[dict[str, Any]]:
        async with self.http.get(self.node_url + "/_handshakes") as response:
            result: list[dict[str, Any]] = await response.json()
            return result


@pytest.fixture
async def node_stack(http: aiohttp.ClientSession) -> AsyncIterator[NodeStack]:
    demo, state = create_demo_api()
    async with serve(demo, lifespan="off") as demo_url, node_ws_server() as node_url:
        env = {"BFF_LOGIN_URL": demo_url + "/auth/login", "BFF_REFRESH_URL": demo_url + "/auth/refresh"}
        async with gateway_process(node_url, env) as gateway:
            yield NodeStack(gateway.url, node_url, state, http)


def socket_to(stack: NodeStack, browser: Browser, path: str, **options: Any) -> Any:
    return connect(
        stack.gateway_url.replace("http://", "ws://") + "/api/rest/proxy/" + path,
        additional_headers={"Cookie": browser.cookie_header()} if browser.cookies else {},
        origin=Origin(OUR_ORIGIN),
        proxy=None,
        **options,
    )


async def test_node_ws_api_gets_the_bearer_and_echoes(node_stack: NodeStack) -> None:
    """Text and a 10 MiB binary message round-trip through `bffgate serve` to a Node ws API, which
    received a valid Bearer, the sub-protocol and no cookie."""
    browser = Browser(node_stack.http, node_stack.gateway_url)
    await browser.login()
    payload = os.urandom(10 * 1024 * 1024)
    protocols = [Subprotocol("graphql-transport-ws")]
    async with socket_to(node_stack, browser, "echo", subprotocols=protocols, max_size=None) as socket:
        assert socket.subprotocol == "graphql-transport-ws"
        await socket.send("ping from python")
        assert await socket.recv() == "ping from python"
        await socket.send(payload)
        assert await socket.recv() == payload
    [handshake] = await node_stack.handshakes()
    assert handshake["path"] == "/echo"
    assert handshake["cookie"] is None
    assert handshake["protocols"] == "graphql-transport-ws"
    assert node_stack.api.verify_access_token(handshake["authorization"].removeprefix("Bearer ")) is not None


async def test_node_ws_close_code_passes_through(node_stack: NodeStack) -> None:
    """The Node API closes with 4404: the browser sees 4404 and the API's reason."""
    browser = Browser(node_stack.http, node_stack.gateway_url)
    await browser.login()
    async with socket_to(node_stack, browser, "nothing-here") as socket:
        with contextlib.suppress(Exception):
            await socket.recv()
        assert socket.close_code == 4404
        assert socket.close_reason == "no such socket"


async def test_node_ws_without_session_nothing_reaches_the_api(node_stack: NodeStack) -> None:
    """No session: 401 from `bffgate serve`, no handshake at the Node API."""
    with pytest.raises(InvalidStatus) as refused:
        async with socket_to(node_stack, Browser(node_stack.http, node_stack.gateway_url), "echo"):
            pass
    assert refused.value.response.status_code == 401
    assert await node_stack.handshakes() == []

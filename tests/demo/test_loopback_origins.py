"""`bffgate demo` works under each loopback name people type; a real deployment stays strict."""

from __future__ import annotations

import aiohttp
import pytest

from bffgate.demo import create_demo_app

from ..harness import CREDENTIALS, Browser, Stack, bind_loopback, serve


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]"])
async def test_demo_login_works_from_every_loopback_name(name: str, http: aiohttp.ClientSession) -> None:
    """Opened at http://localhost:PORT (not the printed 127.0.0.1), the demo's login is not refused."""
    sock = bind_loopback()
    port = sock.getsockname()[1]
    app, _ = create_demo_app("127.0.0.1", port)
    async with serve(app, sock=sock) as url:
        browser = Browser(http, url)
        origin = {"Origin": f"http://{name}:{port}"}
        login = await browser.request("POST", "/api/auth/login", json_body=CREDENTIALS, headers=origin)
        assert login.status == 200, login.body
        other_port = await browser.request(
            "POST", "/api/auth/login", json_body=CREDENTIALS, headers={"Origin": f"http://{name}:1"}
        )
        assert (other_port.status, other_port.code) == (403, "csrf_failed")


async def test_a_real_deployment_allows_only_its_public_origin(stack: Stack) -> None:
    """Outside the demo, http://localhost:8000 is not http://127.0.0.1:8000 (BFF_PUBLIC_URL's default)."""
    browser = stack.browser()
    origin = {"Origin": "http://localhost:8000"}
    refused = await browser.request("POST", "/api/auth/login", json_body=CREDENTIALS, headers=origin)
    assert (refused.status, refused.code) == (403, "csrf_failed")
    ours = {"Origin": "http://127.0.0.1:8000"}
    assert (
        await browser.request("POST", "/api/auth/login", json_body=CREDENTIALS, headers=ours)
    ).status == 200

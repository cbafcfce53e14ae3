"""``create_app`` as a library: its public surface, and mounting it inside another ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import bffgate
from bffgate import create_app

from .conftest import StackFactory
from .harness import Browser, serve


def test_public_api_does_not_drift() -> None:
    """The package exports exactly its documented names, sorted."""
    assert bffgate.__all__ == sorted(bffgate.__all__)
    assert bffgate.__all__ == [
        "BffError",
        "ConfigError",
        "Settings",
        "__version__",
        "create_app",
        "load_settings",
    ]


async def test_mounted_under_a_prefix_in_a_host_app(make_stack: StackFactory) -> None:
    """Mounted at /bff in another Starlette app, the gateway logs in and proxies under that prefix."""
    async with make_stack() as stack:
        gateway = create_app(stack.settings)

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with gateway.router.lifespan_context(gateway):  # mounted apps get no lifespan of their own
                yield

        async def home(request: object) -> PlainTextResponse:
            return PlainTextResponse("host app")

        host = Starlette(routes=[Route("/", home), Mount("/bff", app=gateway)], lifespan=lifespan)
        async with serve(host) as url:
            browser = Browser(stack.http, url + "/bff")
            await browser.login()
            items = await browser.request("GET", "/api/rest/proxy/items?x=1")
            refused = await browser.request("GET", "/api/rest/proxy/items", csrf=False)
            async with stack.http.get(url + "/") as page:
                assert await page.text() == "host app"
    assert items.status == 200
    assert [r.raw_path + "?" + r.query for r in stack.recorder.to("/items")] == ["/items?x=1"]
    assert refused.code == "csrf_failed"

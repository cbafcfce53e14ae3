"""``create_app`` as a library: mounted inside another ASGI app, wrapped by user middleware (its public
surface, ``__all__``, is kept in tests/unit/test_package.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bffgate import create_app

from .conftest import StackFactory
from .harness import Browser, serve


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


async def test_user_middleware_wraps_the_proxied_calls(make_stack: StackFactory) -> None:
    """Middleware added with ``app.add_middleware`` sees proxied calls and forward-auth decisions too
    (README: the proxied call)."""
    seen: list[tuple[str, int]] = []

    class RecordAnswers:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def record(message: Message) -> None:
                if message["type"] == "http.response.start":
                    seen.append((scope["path"], message["status"]))
                await send(message)

            await self.app(scope, receive, record if scope["type"] == "http" else send)

    async with make_stack() as stack:
        gateway = create_app(stack.settings)
        gateway.add_middleware(RecordAnswers)
        async with serve(gateway) as url:
            browser = Browser(stack.http, url)
            assert (await browser.login()).status == 200
            assert (await browser.request("GET", "/api/rest/proxy/me")).status == 200
            envelope = {"url": "/me"}
            assert (await browser.request("POST", "/api/rest/customfetch", json_body=envelope)).status == 200
            decision = await browser.request("GET", "/api/auth/forward", headers={"X-Original-URI": "/x"})
            assert decision.status == 200
    assert seen == [
        ("/api/auth/login", 200),
        ("/api/rest/proxy/me", 200),
        ("/api/rest/customfetch", 200),
        ("/api/auth/forward", 200),
    ]

"""The benchmark's baseline servers, each run as its own process on 127.0.0.1.

``python bench/servers.py KIND --port P [--upstream URL] [--access-ttl S]`` with KIND one of:

* ``aiohttp-proxy``   bare aiohttp.web server + one pooled aiohttp client (no session, no CSRF)
* ``starlette-proxy`` bare Starlette route + one pooled aiohttp client, on uvicorn (uvloop, httptools):
                      the gateway's own stack with none of its security work
* ``asgi-proxy``      a bare ASGI callable + the aiohttp client on uvicorn: the floor of that stack
                      (GET/HEAD only: it does not read request bodies)
* ``asgi-http1``      the same bare ASGI callable + bffgate's own HTTP/1.1 client (``bffgate.http1``):
                      the floor of the gateway's stack, so gateway minus this = its security work
* ``fastapi-httpx``   FastAPI + httpx.AsyncClient on uvicorn, the usual tutorial proxy
* ``demo-api``        bffgate's demo API (rotating refresh tokens, reuse detection) for the storm

Every proxy forwards ``/{path}?{query}`` under ``--upstream``, with the browser's headers minus
Host/Cookie and hop-by-hop ones, reads small answers (≤ 64 KiB with a Content-Length) at once and
streams larger ones in 64 KiB chunks: the same policy as the gateway, so the difference is the
gateway's security work and nothing else.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

SMALL_BODY = 64 * 1024
CHUNK = 64 * 1024
DROP_REQUEST = frozenset(
    {"host", "cookie", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"}
)
DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "date", "server"})


async def relay(answer: Any, send: Any, chunks: AsyncIterator[bytes]) -> None:
    """Send an upstream answer (aiohttp's or bffgate.http1's) to an ASGI client the way the gateway
    does: small bodies at once, large ones as ``chunks`` arrive; shared by the bare ASGI baselines."""
    try:
        headers = [(k.lower(), v) for k, v in answer.raw_headers if k.lower().decode() not in DROP_RESPONSE]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        length = answer.content_length
        if length is not None and length <= SMALL_BODY:
            await send({"type": "http.response.body", "body": await answer.read()})
            return
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        answer.release()


def forwarded_headers(scope: Any) -> list[tuple[str, str]]:
    """The ASGI request's headers minus Host, Cookie and hop-by-hop ones (the bare ASGI baselines)."""
    return [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in scope["headers"]
        if k.decode("latin-1") not in DROP_REQUEST
    ]


def query_suffix(scope: Any) -> str:
    query: str = scope["query_string"].decode("latin-1")
    return "?" + query if query else ""


def run_uvicorn(app: Any, port: int) -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


# -- bare aiohttp.web + aiohttp client ---------------------------------------------------------------


def aiohttp_proxy(upstream: str, port: int) -> None:
    import aiohttp
    import uvloop
    from aiohttp import web

    client_key = web.AppKey("client", aiohttp.ClientSession)

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        ) as client:
            app[client_key] = client
            yield

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in DROP_REQUEST]
        body = await request.read() if request.can_read_body else None
        async with request.app[client_key].request(
            request.method,
            upstream + request.raw_path,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            out = [(k, v) for k, v in answer.headers.items() if k.lower() not in DROP_RESPONSE]
            length = answer.content_length
            if length is not None and length <= SMALL_BODY:
                response = web.Response(status=answer.status, body=await answer.read())
                response.headers.extend(out)
                return response
            stream = web.StreamResponse(status=answer.status)
            stream.headers.extend(out)
            await stream.prepare(request)
            async for chunk in answer.content.iter_chunked(CHUNK):
                await stream.write(chunk)
            await stream.write_eof()
            return stream

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        backlog=2048,
        shutdown_timeout=1.0,
        loop=uvloop.new_event_loop(),  # as fast a loop as the gateway gets
    )


# -- bare Starlette + aiohttp client on uvicorn ---------------------------------------------------------


def starlette_proxy(upstream: str, port: int) -> None:
    import aiohttp
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    state: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        ) as client:
            state["client"] = client
            yield

    class Forwarded:
        def __init__(self, answer: aiohttp.ClientResponse) -> None:
            self.answer = answer

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await relay(self.answer, send, self.answer.content.iter_chunked(CHUNK))

    async def proxy(request: Request) -> Forwarded:
        body = await request.body() if request.method not in ("GET", "HEAD") else None
        url = upstream + request.scope["path"] + query_suffix(request.scope)
        answer = await state["client"].request(
            request.method, url, headers=forwarded_headers(request.scope), data=body, allow_redirects=False
        )
        return Forwarded(answer)

    app = Starlette(
        routes=[Route("/{path:path}", proxy, methods=["GET", "POST", "PUT", "DELETE"])], lifespan=lifespan
    )
    run_uvicorn(app, port)


# -- bare ASGI callable + aiohttp client on uvicorn (no Starlette) -------------------------------------------


def asgi_proxy(upstream: str, port: int) -> None:
    """The floor of the gateway's server stack: uvicorn and the aiohttp client with no framework."""
    import aiohttp
    from starlette.types import Receive, Scope, Send

    state: dict[str, aiohttp.ClientSession] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["client"] = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0),
                        auto_decompress=False,
                        cookie_jar=aiohttp.DummyCookieJar(),
                        skip_auto_headers=("User-Agent", "Accept-Encoding"),
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["client"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        url = upstream + scope["path"] + query_suffix(scope)
        answer = await state["client"].request(
            scope["method"], url, headers=forwarded_headers(scope), allow_redirects=False
        )
        await relay(answer, send, answer.content.iter_chunked(CHUNK))

    run_uvicorn(app, port)


def asgi_http1(upstream: str, port: int) -> None:
    """The floor of the gateway's own stack: uvicorn and bffgate.http1, with no security work."""
    from starlette.types import Receive, Scope, Send

    from bffgate.http1 import Http1Pool

    client = Http1Pool(upstream, connect_timeout=5.0, read_timeout=30.0)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        target = scope["raw_path"].decode("latin-1") + query_suffix(scope)
        answer = await client.request(scope["method"], target, forwarded_headers(scope))
        await relay(answer, send, answer.iter_chunks())

    run_uvicorn(app, port)


# -- FastAPI + httpx on uvicorn ----------------------------------------------------------------------------


def fastapi_httpx(upstream: str, port: int) -> None:
    import httpx
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from starlette.background import BackgroundTask

    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, timeout=30.0) as client:
            state["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    async def proxy(path, request):  # type: ignore[no-untyped-def]  # annotated below, see there
        client = state["client"]
        headers = [(k, v) for k, v in request.headers.items() if k not in DROP_REQUEST]
        outbound = client.build_request(
            request.method,
            "/" + path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        answer = await client.send(outbound, stream=True)
        out = {k: v for k, v in answer.headers.items() if k.lower() not in DROP_RESPONSE}
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=out,
            background=BackgroundTask(answer.aclose),
        )

    # FastAPI reads parameter types from the annotations; with `from __future__ import annotations`
    # they would be strings naming this function's local imports, so they are set as objects here.
    proxy.__annotations__ = {"path": str, "request": Request, "return": StreamingResponse}
    app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], response_model=None)(proxy)

    run_uvicorn(app, port)


# -- the real demo API (storm) --------------------------------------------------------------------------------


def demo_api(access_ttl: float, port: int) -> None:
    from bffgate.demo.api import create_demo_api

    app, _ = create_demo_api(access_ttl=access_ttl)
    run_uvicorn(app, port)


def main() -> None:
    parser = argparse.ArgumentParser(description="bffgate benchmark baselines (127.0.0.1 only)")
    parser.add_argument(
        "kind",
        choices=["aiohttp-proxy", "starlette-proxy", "asgi-proxy", "asgi-http1", "fastapi-httpx", "demo-api"],
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:8001")
    parser.add_argument("--access-ttl", type=float, default=600.0)
    args = parser.parse_args()
    upstream = args.upstream.rstrip("/")
    if args.kind == "aiohttp-proxy":
        aiohttp_proxy(upstream, args.port)
    elif args.kind == "starlette-proxy":
        starlette_proxy(upstream, args.port)
    elif args.kind == "asgi-proxy":
        asgi_proxy(upstream, args.port)
    elif args.kind == "asgi-http1":
        asgi_http1(upstream, args.port)
    elif args.kind == "fastapi-httpx":
        fastapi_httpx(upstream, args.port)
    else:
        demo_api(args.access_ttl, args.port)


if __name__ == "__main__":
    main()

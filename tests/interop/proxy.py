"""A recording reverse proxy between the gateway and a peer API: what the API was asked, and answered.

The scenario counts refresh calls here, the same way for every framework and language, without
instrumenting the apps (they stay as their documentation writes them). Requests and answers pass
through unchanged: the request line's path and query as sent, every header but the hop-by-hop ones
and ``Host``, the body byte for byte, and every ``Set-Cookie`` of the answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass(frozen=True)
class Exchange:
    method: str
    target: str  # path and query, as sent
    status: int
    authorization: str | None


@dataclass
class ProxyRecord:
    url: str
    exchanges: list[Exchange] = field(default_factory=list)

    def count(self, method: str, path: str) -> int:
        """How many ``method`` requests to exactly ``path`` (query ignored) reached the API."""
        return sum(1 for e in self.exchanges if e.method == method and e.target.split("?")[0] == path)

    def to(self, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.target.split("?")[0] == path]


@contextlib.asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[ProxyRecord]:
    """Forward every request to ``upstream`` (a base URL); yields the proxy's URL and its record."""
    client = aiohttp.ClientSession(
        # A new connection per request: the APIs' servers close idle ones after 2 s (gunicorn) or 5 s
        # (node), the scenario waits about that long for a token to expire, and a kept connection
        # could be taken just as the server closes it.
        connector=aiohttp.TCPConnector(force_close=True),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
    )
    record = ProxyRecord("")

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        url = URL(upstream + request.raw_path, encoded=True)
        async with client.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as answer:
            payload = await answer.read()
            answer_headers = CIMultiDict(
                (k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP
            )
        record.exchanges.append(
            Exchange(request.method, request.raw_path, answer.status, request.headers.get("Authorization"))
        )
        return web.Response(status=answer.status, body=payload, headers=answer_headers)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    record.url = f"http://127.0.0.1:{port}"
    try:
        yield record
    finally:
        await runner.cleanup()
        await client.close()

"""Real servers on ephemeral loopback ports, and a browser-like client that keeps cookies.

Shared by every integration test: the gateway under test, the bundled demo API as the upstream (with
refresh-token rotation and reuse detection), and a recording upstream for what the API receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import uvicorn
from multidict import CIMultiDictProxy
from starlette.types import ASGIApp

from bffgate import Settings, create_app
from bffgate.demo.api import DemoState

from .upstream import Recorder

SECRET_A = "a" * 16 + "-test-secret-access-0123456789"
SECRET_R = "r" * 16 + "-test-secret-refresh-0123456789"
CREDENTIALS = {"username": "demo", "password": "demo"}
# The cookie store's cookie names as a browser sees them (BFF_COOKIE_SECURE=true).
ACCESS = "__Host-accessTokenEtls"
REFRESH = "__Host-refreshTokenEtls"
USER = "__Host-userDataEtls"
SESSION_COOKIES = (ACCESS, REFRESH, USER)


class ReadyServer(uvicorn.Server):
    """A uvicorn server that signals, rather than being polled, once it accepts connections, and
    that stops as soon as ``should_exit`` is set (uvicorn's own loop checks it every 0.1 s)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.ready = asyncio.Event()
        self._exit = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown without its fixed 0.1 s pauses: idle connections close at once, so a
        few loop turns let their ``connection_lost`` run before the (polling) wait for the rest."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for _ in range(10):
            if not self.server_state.connections:
                break
            await asyncio.sleep(0)
        await self._wait_tasks_to_complete()
        await self.lifespan.shutdown()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with bind_loopback() as sock:
        return int(sock.getsockname()[1])


def bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp,
    *,
    sock: socket.socket | None = None,
    lifespan: Literal["on", "off"] = "on",
    proxy_headers: bool = True,
) -> AsyncIterator[str]:
    """Run ``app`` on an ephemeral loopback port in this event loop; yields its base URL.

    ``proxy_headers=False``: as ``bffgate serve`` runs, the client address is the socket's peer
    (uvicorn's default believes 127.0.0.1's X-Forwarded-For and rewrites it).
    """
    sock = sock or bind_loopback()
    port = sock.getsockname()[1]
    # Keep idle connections longer than aiohttp's client does (15 s): with uvicorn's 5 s default, a test
    # that waits a few seconds (a token expiring) reuses a connection the server is closing (reset).
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan=lifespan,
        server_header=False,
        timeout_keep_alive=75,
        proxy_headers=proxy_headers,
    )
    server = ReadyServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    try:
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        if not server.ready.is_set():
            raise RuntimeError("uvicorn did not start within 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        ready.cancel()
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Answer:
    """One HTTP answer as a browser would see it."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def set_cookies(self) -> list[str]:
        return self.headers.getall("Set-Cookie", [])

    @property
    def code(self) -> str | None:
        """The problem ``code`` of an RFC 9457 answer."""
        if self.headers.get("Content-Type", "").startswith("application/problem+json"):
            return str(self.json()["code"])
        return None


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """``(name, value, attributes)``; attribute names lower-cased, flags map to ""."""
    first, *rest = header.split(";")
    name, _, value = first.strip().partition("=")
    attributes = {}
    for part in rest:
        key, _, attr_value = part.strip().partition("=")
        attributes[key.lower()] = attr_value
    return name, value, attributes


def session_cookies_set(answer: Answer) -> list[str]:
    """The session cookies (cookie or Redis store) that ``answer`` sets; clearing ones do not count."""
    names = []
    for header in answer.set_cookies:
        name, _, attributes = parse_set_cookie(header)
        if attributes.get("max-age") != "0" and any(
            part in name for part in ("TokenEtls", "userDataEtls", "sessionEtls")
        ):
            names.append(name)
    return names


@dataclass
class Browser:
    """Keeps cookies like a browser (Max-Age=0 deletes), sends X-CSRF unless told not to."""

    http: aiohttp.ClientSession
    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    async def request(
        self,
        method: str,
        path: str,
        *,
        csrf: bool = True,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        keep_cookies: bool = True,
    ) -> Answer:
        sent = dict(headers or {})
        if csrf:
            sent.setdefault("X-CSRF", "1")
        if self.cookies:
            sent["Cookie"] = self.cookie_header()
        async with self.http.request(
            method, self.base + path, headers=sent, json=json_body, data=data, allow_redirects=False
        ) as response:
            answer = Answer(response.status, response.headers, await response.read())
        if keep_cookies:
            self.absorb(answer.set_cookies)
        return answer

    def cookie_header(self) -> str:
        """The ``Cookie`` header this browser sends (for requests made without ``request``)."""
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def absorb(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            name, value, attributes = parse_set_cookie(header)
            if attributes.get("max-age") == "0":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    async def login(self) -> Answer:
        answer = await self.request("POST", "/api/auth/login", json_body=CREDENTIALS)
        assert answer.status == 200, answer.body
        return answer

    def forget_access_cookie(self) -> None:
        """What the browser does when the access cookie's Max-Age (the token's life) runs out."""
        for name in [n for n in self.cookies if "accessTokenEtls" in n or "userDataEtls" in n]:
            del self.cookies[name]

    def clone(self) -> Browser:
        return Browser(self.http, self.base, dict(self.cookies))


def settings_for(api_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "remote_api": api_url,
        "etls_access": SECRET_A,
        "etls_refresh": SECRET_R,
        **overrides,
    }
    return Settings(**values)


@dataclass
class Stack:
    """A running gateway in front of a running upstream (demo API + recording endpoints)."""

    gateway_url: str
    api_url: str
    api: DemoState
    recorder: Any
    settings: Settings
    http: aiohttp.ClientSession

    def browser(self) -> Browser:
        return Browser(self.http, self.gateway_url)

    async def logged_in(self) -> Browser:
        browser = self.browser()
        await browser.login()
        return browser


@contextlib.contextmanager
def nothing_goes_upstream(stack: Stack | Recorder) -> Iterator[None]:
    """Asserts that whatever the block sends, no request reaches the API (the stack's, or the one
    whose ``Recorder`` is given: a route's upstream)."""
    recorder = stack.recorder if isinstance(stack, Stack) else stack
    before = len(recorder.requests)
    yield
    assert recorder.requests[before:] == [], "a request reached the API"


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[str]:
    async with serve(create_app(settings)) as url:
        yield url

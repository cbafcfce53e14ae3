"""A hostile API behind the real gateway, on raw sockets: what it does with one user's bytes stays there.

The API below is a raw HTTP/1.1 server. It serves the ``rest`` provider's login and refresh (the user
name is in every token, so each answer shows whose token it carried) and, per test, routes that break
HTTP framing the way real APIs do: more bytes than ``Content-Length`` arriving late, a body after a
204, an endpoint that answers without reading its body (CL.0), trailers, answers that stall. Browsers
are aiohttp sessions with their own cookies, or raw sockets where the framing towards the browser is
the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httptools
import pytest

from .harness import Answer, Browser, running_gateway, settings_for
from .rawserver import Peer, RawServer, Request, start_raw_server, within

Route = Callable[[Peer, Request], Awaitable[None]]


def answer(status: int, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Reason", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_answer(value: Any) -> bytes:
    return answer(200, json.dumps(value).encode(), "Content-Type: application/json")


@dataclass
class HostileApi:
    """The raw API: login, refresh and ``/whoami`` (echoes the Authorization it got), plus test routes."""

    routes: dict[str, Route] = field(default_factory=dict)
    presented_refresh_tokens: list[str] = field(default_factory=list)
    refresh_tokens: Callable[[int], dict[str, Any]] | None = None  # the n-th refresh's answer
    server: RawServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def requests_to(self, path: str) -> list[Request]:
        assert self.server is not None
        return [r for r in self.server.requests if r.line.split()[1].split("?")[0] == path]

    async def handle(self, peer: Peer) -> None:
        while (request := await peer.request(body=False)) is not None:
            await self.dispatch(peer, request)

    async def dispatch(self, peer: Peer, request: Request) -> None:
        path = request.line.split()[1].split("?")[0]
        route = self.routes.get(path)
        if route is not None:
            await route(peer, request)
            return
        body = await peer.read_body(request)
        if path == "/auth/login":
            user = json.loads(body)["username"]
            peer.writer.write(
                json_answer({"accessToken": f"at-{user}", "refreshToken": f"rt-{user}", "expiresIn": 3600})
            )
        elif path == "/auth/refresh":
            self.presented_refresh_tokens.append(json.loads(body)["refreshToken"])
            assert self.refresh_tokens is not None, "this test expects no refresh"
            peer.writer.write(json_answer(self.refresh_tokens(len(self.presented_refresh_tokens))))
        elif path == "/whoami":
            peer.writer.write(answer(200, request.headers.get("authorization", "").encode()))
        else:
            peer.writer.write(answer(404))


@dataclass
class Gateway:
    url: str
    api: HostileApi
    http: aiohttp.ClientSession

    async def signed_in(self, user: str) -> Browser:
        browser = Browser(self.http, self.url)
        login = await browser.request(
            "POST", "/api/auth/login", json_body={"username": user, "password": "x"}
        )
        assert login.status == 200, login.body
        return browser


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
async def gateway(http: aiohttp.ClientSession) -> AsyncIterator[GatewayFactory]:
    """``async with gateway(**settings) as gw``: the real gateway in front of a fresh hostile API."""
    async with contextlib.AsyncExitStack() as stack:

        @contextlib.asynccontextmanager
        async def start(**overrides: Any) -> AsyncIterator[Gateway]:
            api = HostileApi()
            api.server = await start_raw_server(stack, api.handle)
            async with running_gateway(settings_for(api.url, **overrides)) as url:
                yield Gateway(url, api, http)

        yield start


async def whoami(browser: Browser) -> Answer:
    return await browser.request("GET", "/api/rest/proxy/whoami")


# -- item 1: no byte of one user's exchange reaches another user -------------------------------------

POISON = answer(200, b"poison")
FIRST_ANSWERS = {
    "bytes after Content-Length": answer(200, b"ok"),
    "body after 204": b"HTTP/1.1 204 No Content\r\n\r\n",
    "body after 304": b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n',
}


def answers_then_sends_more_later(api: HostileApi, first: bytes) -> Route:
    """Answer, then -- once the next request is on the wire -- send a whole extra answer before its own:
    excess bytes that arrive "a moment later", after the client reused the connection."""

    async def route(peer: Peer, request: Request) -> None:
        await peer.read_body(request)
        peer.writer.write(first)
        following = await peer.request(body=False)
        if following is None:
            return
        peer.writer.write(POISON)
        await api.dispatch(peer, following)

    return route


@pytest.mark.parametrize("first", list(FIRST_ANSWERS.values()), ids=list(FIRST_ANSWERS))
async def test_late_excess_bytes_never_reach_another_session(gateway: GatewayFactory, first: bytes) -> None:
    """Alice's call leaves late bytes behind; bob, carol and dave, one after the other, each get their
    own answer (their own token echoed), never the poison nor a neighbour's answer."""
    async with gateway() as gw:
        api = gw.api
        api.routes["/leaky"] = answers_then_sends_more_later(api, first)
        alice = await gw.signed_in("alice")
        others = {name: await gw.signed_in(name) for name in ("bob", "carol", "dave")}
        leaky = await alice.request("GET", "/api/rest/proxy/leaky")
        assert leaky.status == int(first[9:12])
        for name, browser in others.items():
            reply = await whoami(browser)
            assert (reply.status, reply.body) == (200, f"Bearer at-{name}".encode())
        alice_connections = {r.connection for r in api.requests_to("/leaky")}
        others_connections = {r.connection for r in api.requests_to("/whoami")}
        assert alice_connections.isdisjoint(others_connections)


async def test_a_late_login_answer_never_signs_in_the_next_user(gateway: GatewayFactory) -> None:
    """The provider client too (the ``rest`` login endpoint here): an extra login answer carrying
    alice's tokens, arriving after bob's login request, must not make bob alice."""
    async with gateway() as gw:
        api = gw.api
        first_login = True

        async def login(peer: Peer, request: Request) -> None:
            nonlocal first_login
            user = json.loads(await peer.read_body(request))["username"]
            tokens = json_answer({"accessToken": f"at-{user}", "refreshToken": f"rt-{user}"})
            if not first_login:
                peer.writer.write(tokens)
                return
            first_login = False
            peer.writer.write(tokens)
            following = await peer.request(body=False)
            if following is not None:
                peer.writer.write(tokens)  # alice's tokens again, now ahead of the next answer
                await api.dispatch(peer, following)

        api.routes["/auth/login"] = login
        alice = await gw.signed_in("alice")
        bob = await gw.signed_in("bob")
        assert (await whoami(alice)).body == b"Bearer at-alice"
        assert (await whoami(bob)).body == b"Bearer at-bob"


async def test_a_body_the_api_never_read_cannot_swallow_another_users_request(
    gateway: GatewayFactory,
) -> None:
    """CL.0: ``/note`` answers without reading its body, so the API parses mallory's body as the start
    of the next request on that connection. Bob's request must never be that next request: his
    Authorization never reaches mallory's ``/stash``, and he gets his own answer."""
    async with gateway() as gw:
        api = gw.api

        async def answers_unread(peer: Peer, request: Request) -> None:
            peer.writer.write(answer(200, b"noted"))  # the body stays in the API's buffer

        async def stash(peer: Peer, request: Request) -> None:
            peer.writer.write(answer(200, b"stashed"))  # where mallory would read the head back

        api.routes |= {"/note": answers_unread, "/stash": stash}
        mallory, bob = await gw.signed_in("mallory"), await gw.signed_in("bob")
        smuggled = b"GET /stash HTTP/1.1\r\nX-Swallow: "  # no end: the next head completes it
        noted = await mallory.request("POST", "/api/rest/proxy/note", data=smuggled)
        assert (noted.status, noted.body) == (200, b"noted")
        reply = await whoami(bob)
        assert (reply.status, reply.body) == (200, b"Bearer at-bob")
        assert all(b"at-bob" not in r.head for r in api.requests_to("/stash"))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_get_and_head_bodies_are_never_forwarded(gateway: GatewayFactory, method: str) -> None:
    """A GET or HEAD with a body is refused (400): an API that ignores such a body would take it for
    the next request on the connection. The same holds for the customfetch envelope."""
    async with gateway() as gw:
        bob = await gw.signed_in("bob")
        proxied = await bob.request(method, "/api/rest/proxy/whoami", data=b"GET /stash HTTP/1.1\r\n\r\n")
        assert proxied.status == 400
        envelope = {"url": "/whoami", "options": {"method": method, "body": "GET /stash HTTP/1.1\r\n\r\n"}}
        enveloped = await bob.request("POST", "/api/rest/customfetch", json_body=envelope)
        assert (enveloped.status, enveloped.code) == (400, "invalid_request")
        assert gw.api.requests_to("/whoami") == []
        assert (await whoami(bob)).body == b"Bearer at-bob"  # and a plain GET still goes through


# -- item 4: response trailers never become headers ----------------------------------------------------


async def test_response_trailers_never_become_headers(gateway: GatewayFactory) -> None:
    """A chunked answer whose trailers arrive with the head: the browser sees the head's fields only."""
    async with gateway() as gw:

        async def with_trailers(peer: Peer, request: Request) -> None:
            peer.writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: Content-Type, Location, X-Trailer\r\n\r\n"
                b"2\r\n{}\r\n0\r\n"
                b"Content-Type: text/html\r\nLocation: https://evil.example/\r\nX-Trailer: 1\r\n\r\n"
            )

        gw.api.routes["/trailers"] = with_trailers
        bob = await gw.signed_in("bob")
        reply = await bob.request("GET", "/api/rest/proxy/trailers")
        assert (reply.status, reply.body) == (200, b"{}")
        assert reply.headers.getall("Content-Type") == ["application/json"]
        assert "Location" not in reply.headers
        assert "X-Trailer" not in reply.headers


# -- item 10: answers to the browser are always well framed ---------------------------------------------


class RawAnswer:
    """One answer read off a raw browser socket with llhttp (httptools): status, headers and body."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def cookie_of(browser: Browser) -> str:
    return "; ".join(f"{name}={value}" for name, value in browser.cookies.items())


async def raw_connection(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gw.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, browser: Browser, head: str, body: bytes = b""
) -> tuple[int, RawAnswer]:
    """Send one request on a raw keep-alive connection and read its whole answer (``ConnectionError``
    if the gateway cuts the connection first)."""
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    request = (
        f"{head} HTTP/1.1\r\nHost: gw\r\nX-CSRF: 1\r\nCookie: {cookie}\r\nContent-Length: {len(body)}\r\n"
    )
    writer.write(request.encode() + b"\r\n" + body)
    received = RawAnswer()
    parser = httptools.HttpResponseParser(received)
    while not received.complete:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the gateway cut the connection mid-answer")
        parser.feed_data(data)
    return parser.get_status_code(), received


BODILESS_ANSWERS = {
    "204 with Content-Length": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "304 with Content-Length": b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n',
}


@pytest.mark.parametrize("wire", list(BODILESS_ANSWERS.values()), ids=list(BODILESS_ANSWERS))
async def test_bodiless_api_answers_reach_the_browser_well_framed(
    gateway: GatewayFactory, wire: bytes
) -> None:
    """An API 204/304 declaring a length: the browser gets the answer whole, and its connection stays
    usable for the next request (no "shorter than Content-Length" cut)."""
    async with gateway() as gw:

        async def bodiless(peer: Peer, request: Request) -> None:
            peer.writer.write(wire)

        gw.api.routes["/bodiless"] = bodiless
        bob = await gw.signed_in("bob")
        reader, writer = await raw_connection(gw)
        try:
            status, first = await within(exchange(reader, writer, bob, "GET /api/rest/proxy/bodiless"))
            assert (status, first.body) == (int(wire[9:12]), b"")
            status, second = await within(exchange(reader, writer, bob, "GET /api/rest/proxy/whoami"))
            assert (status, second.body) == (200, b"Bearer at-bob")
        finally:
            writer.close()


async def test_customfetch_head_reaches_the_browser_well_framed(gateway: GatewayFactory) -> None:
    """customfetch ``"method": "HEAD"``: the API's HEAD answer declares 1234 bytes it never sends; the
    browser's POST gets a complete (empty) answer and its connection stays usable."""
    async with gateway() as gw:

        async def head_only(peer: Peer, request: Request) -> None:
            assert request.line.startswith("HEAD ")
            peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n")

        gw.api.routes["/sized"] = head_only
        bob = await gw.signed_in("bob")
        envelope = json.dumps({"url": "/sized", "options": {"method": "HEAD"}}).encode()
        reader, writer = await raw_connection(gw)
        try:
            status, first = await within(
                exchange(reader, writer, bob, "POST /api/rest/customfetch", envelope)
            )
            assert (status, first.body) == (200, b"")
            status, second = await within(exchange(reader, writer, bob, "GET /api/rest/proxy/whoami"))
            assert (status, second.body) == (200, b"Bearer at-bob")
        finally:
            writer.close()


# -- item 11: a browser that stops reading does not pin the API's exchange --------------------------------


async def test_a_browser_that_stops_reading_releases_the_api(gateway: GatewayFactory) -> None:
    """An endless download to a browser that never reads: once the buffers are full, the gateway waits
    at most the upstream timeout for the browser, then hangs up on the API."""
    async with gateway(bff_upstream_timeout=1.0) as gw:
        hung_up = asyncio.Event()

        async def endless(peer: Peer, request: Request) -> None:
            peer.writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n%b\r\n" % (65536, b"x" * 65536)
            try:
                while True:
                    peer.writer.write(chunk)
                    await peer.writer.drain()
            except ConnectionError:
                hung_up.set()

        gw.api.routes["/endless"] = endless
        bob = await gw.signed_in("bob")
        _, writer = await raw_connection(gw)
        try:
            writer.write(
                f"GET /api/rest/proxy/endless HTTP/1.1\r\nHost: gw\r\nX-CSRF: 1\r\nCookie: {cookie_of(bob)}\r\n\r\n".encode()
            )
            await within(hung_up.wait())  # ... and this browser never reads a byte
        finally:
            writer.close()


# -- item 9: a refresh whose tokens do not fit the cookies ------------------------------------------------


async def test_a_refresh_too_large_for_cookies_is_a_502_that_keeps_the_rotated_refresh_token(
    gateway: GatewayFactory,
) -> None:
    """The provider's refreshed access token is too large for the cookies: every attempt is the
    documented 502 ``session_too_large`` (not a plain 500), each next refresh presents the refresh
    token the previous one returned (never a spent one), and no API connection is left open."""
    async with gateway() as gw:
        huge = "A" * 40_000  # sealed, more than the 8 cookie chunks allow
        gw.api.refresh_tokens = lambda n: {"accessToken": huge, "refreshToken": f"rt-{n}", "expiresIn": 3600}
        bob = await gw.signed_in("bob")
        for _ in range(3):
            bob.forget_access_cookie()  # the access token expired: the next call refreshes
            reply = await whoami(bob)
            assert (reply.status, reply.code) == (502, "session_too_large"), reply.body[:200]
        assert gw.api.presented_refresh_tokens == ["rt-bob", "rt-1", "rt-2"]
        assert len({r.connection for r in gw.api.requests_to("/whoami")}) <= 1

"""Hostile raw clients against the gateway served the way ``bffgate serve`` serves it (its own process).

Request heads bounded in size and time on every route, idle connections bounded in number, trailers
that never become headers, one reading of the proxy prefix. Each test waits for the server's own
decision (an answer or a closed connection), with a head timeout of 0.5 s where time is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from .harness import Browser, serve
from .processes import GatewayProcess, gateway_process
from .upstream import Recorder, create_test_upstream

MiB = 1024 * 1024
HEAD_TIMEOUT = 0.5  # BFF_HEAD_TIMEOUT in these tests
CLOSE_WITHIN = 10.0  # how long a test waits for a close the bounds promise (20x the timeout)


@dataclass
class Served:
    """A gateway process in front of a recording upstream."""

    gateway: GatewayProcess
    recorder: Recorder
    http: aiohttp.ClientSession

    @property
    def port(self) -> int:
        return int(self.gateway.url.rsplit(":", 1)[1])

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def signed_in(self) -> Browser:
        browser = Browser(self.http, self.gateway.url)
        await browser.login()
        return browser

    def peak_rss_bytes(self) -> int:
        """The process's resident-set high-water mark (VmHWM), as the kernel counts it."""
        status = Path(f"/proc/{self.gateway.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024


@contextlib.asynccontextmanager
async def served(http: aiohttp.ClientSession, **env: str) -> AsyncIterator[Served]:
    upstream, _, recorder = create_test_upstream()
    async with (
        serve(upstream, lifespan="off") as api_url,
        gateway_process(api_url, {"BFF_HEAD_TIMEOUT": str(HEAD_TIMEOUT), **env}) as gateway,
    ):
        yield Served(gateway, recorder, http)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length body (all the gateway's answers here have one)."""
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (whatever it sent before), False if it stays open."""
    try:
        async with asyncio.timeout(CLOSE_WITHIN):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def cookie_header(browser: Browser) -> bytes:
    return "; ".join(f"{k}={v}" for k, v in browser.cookies.items()).encode("latin-1")


# ---------------------------------------------------------------------------------------------------
# Size


async def test_a_huge_head_without_session_is_cut_off_while_it_arrives(http: aiohttp.ClientSession) -> None:
    """100 MiB of header bytes: refused (431 or reset) after a few MiB, the process does not grow by it."""
    async with served(http) as gateway:
        reader, writer = await gateway.connect()
        rss_before = gateway.peak_rss_bytes()
        writer.write(b"GET /api/auth/user HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
        filler, sent = b"a" * MiB, 0
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while sent < 100 * MiB:
                writer.write(filler)
                await writer.drain()
                sent += len(filler)
        growth = gateway.peak_rss_bytes() - rss_before
        # What the loopback socket buffers hold is all that went out before the refusal.
        assert sent < 16 * MiB, f"{sent // MiB} MiB of one head were accepted"
        assert growth < 16 * MiB, f"the gateway grew by {growth // MiB} MiB"
        with contextlib.suppress(ConnectionResetError):
            status_line = await reader.readline()
            assert status_line in (b"", b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        writer.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("POST", "/api/auth/login"),
        ("GET", "/api/rest/proxy/echo/x"),
        ("GET", "/nowhere"),
    ],
)
async def test_a_head_over_the_bound_gets_431_on_every_route(
    http: aiohttp.ClientSession, method: str, path: str
) -> None:
    """Just over BFF_MAX_HEAD_BYTES on any route: a 431 problem and a closed connection; nothing upstream."""
    async with served(http, BFF_MAX_HEAD_BYTES="4096") as gateway:
        reader, writer = await gateway.connect()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: {'a' * 4096}\r\n\r\n"
        writer.write(head.encode())
        status, headers, body = await read_answer(reader)
        assert status == 431
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "headers_too_large"
        assert await closed_by_server(reader)
        writer.close()
        assert gateway.recorder.requests == []


async def test_a_head_of_exactly_the_bound_is_served(http: aiohttp.ClientSession) -> None:
    """A head of exactly BFF_MAX_HEAD_BYTES reaches the API whole, twice on one kept-alive connection."""
    bound = 16384
    async with served(http, BFF_MAX_HEAD_BYTES=str(bound)) as gateway:
        browser = await gateway.signed_in()
        reader, writer = await gateway.connect()
        start = (
            b"GET /api/rest/proxy/echo/big HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF: 1\r\n"
            b"Cookie: " + cookie_header(browser) + b"\r\nX-Big: "
        )
        filler = b"b" * (bound - len(start) - 4)
        head = start + filler + b"\r\n\r\n"
        assert len(head) == bound
        for _ in range(2):
            writer.write(head)
            status, _, body = await read_answer(reader)
            assert status == 200, body
            assert json.loads(body)["headers"]["x-big"] == filler.decode()
        writer.close()


async def test_bodies_and_pipelined_requests_are_not_heads(http: aiohttp.ClientSession) -> None:
    """Under a 4 KiB head bound: a 1 MiB upload (length and chunked) arrives whole; pipelined requests
    in one write are answered in order."""
    async with served(http, BFF_MAX_HEAD_BYTES="4096") as gateway:
        browser = await gateway.signed_in()
        cookie = b"Cookie: " + cookie_header(browser) + b"\r\n"
        reader, writer = await gateway.connect()
        body = b"u" * MiB
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in [body[:1000], body[1000:]])
        writer.write(
            b"POST /api/rest/proxy/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF: 1\r\n"
            + cookie
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
            + b"POST /api/rest/proxy/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF: 1\r\n"
            + cookie
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + chunked
            + b"0\r\n\r\n"
            + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        answers = [await read_answer(reader) for _ in range(3)]
        writer.close()
    assert [(status, json.loads(body)) for status, _, body in answers] == [
        (200, {"received": MiB}),
        (200, {"received": MiB}),
        (200, {"status": "ok"}),
    ]


# ---------------------------------------------------------------------------------------------------
# Time and number


@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"], ids=["nothing", "half"]
)
async def test_a_connection_without_a_whole_head_is_closed(http: aiohttp.ClientSession, sent: bytes) -> None:
    """A connection that sends nothing, or half a head, is closed after BFF_HEAD_TIMEOUT."""
    async with served(http) as gateway:
        reader, writer = await gateway.connect()
        writer.write(sent)
        assert await closed_by_server(reader)
        writer.close()


async def test_a_trickled_head_is_closed_however_often_bytes_arrive(http: aiohttp.ClientSession) -> None:
    """Slowloris: a header byte every 0.1 s (well within uvicorn's keep-alive) does not keep it open."""
    async with served(http) as gateway:
        reader, writer = await gateway.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed = False
        for _ in range(int(CLOSE_WITHIN / 0.1)):
            try:
                writer.write(b"s")  # the client's pace, not a synchronisation: the read below waits
                await writer.drain()
                await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            except ConnectionResetError:
                pass
            closed = True
            break
        writer.close()
        assert closed, "the trickling connection stayed open"


async def test_an_idle_connection_after_an_answer_is_closed(http: aiohttp.ClientSession) -> None:
    """After an answer, the next head must come within the bound too."""
    async with served(http) as gateway:
        reader, writer = await gateway.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = await read_answer(reader)
        assert status == 200
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # keeps uvicorn's keep-alive timer off
        assert await closed_by_server(reader)
        writer.close()


async def test_waiting_connections_are_bounded_in_number_oldest_closed_first(
    http: aiohttp.ClientSession,
) -> None:
    """With BFF_MAX_IDLE_CONNECTIONS=3, a fourth waiting connection closes the one that waited longest."""
    async with served(http, BFF_MAX_IDLE_CONNECTIONS="3", BFF_HEAD_TIMEOUT="60") as gateway:
        connections = []
        for _ in range(3):  # one after the other, each answered once, then each starts its next head
            reader, writer = await gateway.connect()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await read_answer(reader))[0] == 200
            writer.write(b"GET /healthz HTTP/1.1\r\n")  # keeps uvicorn's keep-alive timer off
            connections.append((reader, writer))
        newest = await gateway.connect()
        oldest_reader, _ = connections[0]
        assert await closed_by_server(oldest_reader)
        for reader, writer in connections[1:]:  # the others still serve: the rest of their heads
            writer.write(b"Host: 127.0.0.1\r\n\r\n")
            assert (await read_answer(reader))[0] == 200
        reader, writer = newest
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await read_answer(reader))[0] == 200
        for _, writer in [*connections, newest]:
            writer.close()


# ---------------------------------------------------------------------------------------------------
# Trailers and the proxy prefix

CHUNKED_WITH_TRAILERS = (
    b"5\r\nhello\r\n0\r\n"
    b"X-Injected: after-the-csrf-check\r\nAuthorization: Bearer forged\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
)


async def send_chunked_with_trailers(port: int, browser: Browser) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/rest/proxy/echo/trailers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF: 1\r\n"
        b"Cookie: " + cookie_header(browser) + b"\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_WITH_TRAILERS
    )
    status, _, body = await read_answer(reader)
    writer.close()
    return status, body


def assert_no_trailer_arrived(recorder: Recorder) -> None:
    (arrived,) = recorder.to("/echo/trailers")
    assert "x-injected" not in arrived.headers
    assert arrived.headers["authorization"] != "Bearer forged"
    assert recorder.bodies[-1] == b"hello"


async def test_trailers_of_a_chunked_request_never_reach_the_api(http: aiohttp.ClientSession) -> None:
    """Served as `bffgate serve` serves it: the body arrives, its trailer fields do not."""
    async with served(http) as gateway:
        browser = await gateway.signed_in()
        status, body = await send_chunked_with_trailers(gateway.port, browser)
        assert status == 200, body
        assert_no_trailer_arrived(gateway.recorder)


async def test_an_oversized_trailer_section_is_cut_off(http: aiohttp.ClientSession) -> None:
    """Trailer fields past BFF_MAX_HEAD_BYTES close the connection before the request goes anywhere."""
    async with served(http, BFF_MAX_HEAD_BYTES="4096") as gateway:
        browser = await gateway.signed_in()
        before = len(gateway.recorder.requests)
        reader, writer = await gateway.connect()
        writer.write(
            b"POST /api/rest/proxy/echo/trailers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF: 1\r\n"
            b"Cookie: " + cookie_header(browser) + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Trailer: " + b"t" * 40_000 + b"\r\n\r\n"
        )
        assert await closed_by_server(reader)
        writer.close()
        assert gateway.recorder.requests[before:] == []


async def test_the_proxy_prefix_is_read_where_routing_found_it(http: aiohttp.ClientSession) -> None:
    """A raw path whose literal prefix comes later than the decoded one is refused, never re-routed."""
    async with served(http) as gateway:
        browser = await gateway.signed_in()
        before = len(gateway.recorder.requests)
        answers = []
        for path in (
            b"/api/rest/prox%79/x/api/rest/proxy/echo/admin",
            b"/api/rest/proxy/echo/api/rest/proxy/x",
        ):
            reader, writer = await gateway.connect()
            writer.write(
                b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF: 1\r\n"
                b"Cookie: " + cookie_header(browser) + b"\r\n\r\n"
            )
            answers.append(await read_answer(reader))
            writer.close()
        (refused_status, _, refused_body), (kept_status, _, _) = answers
        assert refused_status == 400
        assert json.loads(refused_body)["code"] == "invalid_url"
        assert kept_status == 200  # the prefix's text further down a proxied path is just path
        assert [r.raw_path for r in gateway.recorder.requests[before:]] == ["/echo/api/rest/proxy/x"]

"""The proxy path's HTTP/1.1 client (``bffgate.http1``) against real loopback sockets.

Wire-level cases run against a tiny raw server: its handler reads requests off the socket and writes
exact bytes, and it records every connection and request head it saw. Assertions are about what a
caller of ``Http1Pool`` or the API behind it can observe.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bffgate.http1 import (
    MAX_RESPONSE_HEAD_BYTES,
    READ_HIGH_WATER,
    READ_LOW_WATER,
    Http1Pool,
    Response,
)
from bffgate.transport import SINGLE_USE, TransportError, TransportTimeout, UnsendableRequest

from .harness import closed_port
from .rawserver import Handler, Peer, RawServer, start_raw_server, within

SOCKET_READ = 256 * 1024  # the most one read of asyncio's socket transport hands to data_received


ServeFactory = Callable[..., Awaitable[RawServer]]
PoolFactory = Callable[..., Http1Pool]


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """``await serve(handler)`` starts a raw server on an ephemeral loopback port (stopped after the test)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> RawServer:
            return await start_raw_server(stack, handler, ssl_context=ssl_context)

        yield start


@pytest.fixture
async def pools() -> AsyncIterator[PoolFactory]:
    """``pools(url, **options)`` makes an ``Http1Pool`` (5 s timeouts unless told) closed after the test."""
    made: list[Http1Pool] = []

    def make(url: str, **options: Any) -> Http1Pool:
        options = {"connect_timeout": 5.0, "read_timeout": 5.0, **options}
        made.append(Http1Pool(url, **options))
        return made[-1]

    yield make
    for pool in made:
        await pool.close()


def answer(status: int = 200, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Reason", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK = answer(200, b"ok")
FILLERS = MAX_RESPONSE_HEAD_BYTES // 1000 + 1  # 1000-byte header values: their values alone are too many
OVERSIZED_HEAD = b"HTTP/1.1 200 OK\r\n%s\r\n" % (b"X-Filler: %s\r\n" % (b"f" * 1000) * FILLERS)


def answering(*answers: bytes) -> Handler:
    """Answer each connection's n-th request with ``answers[n]`` (the last one repeats) until EOF."""

    async def handler(peer: Peer) -> None:
        count = 0
        while await peer.request() is not None:
            peer.writer.write(answers[min(count, len(answers) - 1)])
            count += 1

    return handler


def sends(wire: bytes, *, close: bool = False) -> Handler:
    """Read one request, write ``wire``, then close or keep the connection open until the client closes."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(wire)
        if not close:
            await peer.until_eof()

    return handler


def answers_once_then(released: asyncio.Event, act: Handler) -> Handler:
    """Connection 1 answers one request, waits for ``released`` and then does ``act`` while the
    client holds it idle; later connections answer every request."""

    async def handler(peer: Peer) -> None:
        if peer.number > 1:
            return await answering(OK)(peer)
        await peer.request()
        peer.writer.write(OK)
        await released.wait()
        return await act(peer)

    return handler


def hangs_up_after(first: int, others: int) -> Handler:
    """Answer ``first`` requests on connection 1 (``others`` on later ones), then read one more and close
    without answering: a server whose keep-alive timeout fires as the request arrives."""

    async def handler(peer: Peer) -> None:
        for _ in range(first if peer.number == 1 else others):
            if await peer.request() is None:
                return
            peer.writer.write(OK)
        await peer.request()

    return handler


async def get(pool: Http1Pool, target: str = "/", headers: list[tuple[str, str]] | None = None) -> bytes:
    """A whole GET: the body, with the answer released."""
    response = await pool.request("GET", target, headers or [])
    try:
        return await response.read()
    finally:
        response.release()


async def drain(response: Response) -> bytes:
    return b"".join([chunk async for chunk in response.iter_chunks()])


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


# -- requests on the wire -----------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection_and_frames_each_request(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    server = await serve(answering(answer(200, b"hello", "X-Answer: 1")))
    pool = pools(server.url)
    first = await pool.request("GET", "/a?x=1", [("X-Trace", "t1"), ("X-Name", "café")])
    assert (first.status, first.raw_headers) == (200, [(b"Content-Length", b"5"), (b"X-Answer", b"1")])
    assert await first.read() == b"hello"
    first.release()
    for method, body in (("POST", b"payload"), ("PUT", b"")):
        response = await pool.request(method, "/b", [("Content-Type", "text/plain")], body)
        assert await response.read() == b"hello"
        response.release()

    assert len(server.peers) == 1 and [r.connection for r in server.requests] == [1, 1, 1]
    get_, post, put = server.requests
    assert get_.line == "GET /a?x=1 HTTP/1.1"
    assert get_.headers == {"host": f"127.0.0.1:{server.port}", "x-trace": "t1", "x-name": "café"}
    assert b"X-Name: caf\xe9\r\n" in get_.head  # latin-1 on the wire
    assert post.line == "POST /b HTTP/1.1" and post.headers["content-length"] == "7"
    assert post.body == b"payload" and "transfer-encoding" not in post.headers
    assert put.headers["content-length"] == "0" and put.body == b""


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_streamed_upload_arrives_whole(serve: ServeFactory, pools: PoolFactory, declared: bool) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url)
    parts = (b"first,", b"", b"second,", b"x" * 300_000)  # an empty part must not end a chunked body
    data = b"".join(parts)
    length = len(data) if declared else None
    response = await pool.request("PUT", "/up", [], stream(*parts), content_length=length)
    assert await response.read() == b"ok"
    response.release()
    assert await get(pool) == b"ok"  # the framing held: the connection carries the next request

    upload, _ = server.requests
    assert upload.body == data and [r.connection for r in server.requests] == [1, 1]
    if declared:
        assert (
            upload.headers["content-length"] == str(len(data)) and "transfer-encoding" not in upload.headers
        )
    else:
        assert upload.headers["transfer-encoding"] == "chunked" and "content-length" not in upload.headers


# -- answers ------------------------------------------------------------------------------------------


async def test_chunked_answer_streams_whole(serve: ServeFactory, pools: PoolFactory) -> None:
    chunks = (b"alpha", b"b" * 700_000, b"omega")
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*chunks)
    server = await serve(answering(wire, OK))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert response.content_length is None
    assert await drain(response) == b"".join(chunks)
    response.release()
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 1]


async def test_close_delimited_answer_is_complete(serve: ServeFactory, pools: PoolFactory) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, over the read high-water mark
    server = await serve(sends(b"HTTP/1.1 200 OK\r\n\r\n" + body, close=True))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert await drain(response) == body
    response.release()
    second = await pool.request("GET", "/", [])
    assert await drain(second) == body
    second.release()
    assert [r.connection for r in server.requests] == [1, 2]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 10\r\n\r\n',  # no body despite it
    ],
    ids=["204", "304"],
)
async def test_bodiless_answers_keep_the_connection(
    serve: ServeFactory, pools: PoolFactory, head: bytes
) -> None:
    server = await serve(answering(head, OK))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert (response.status, await response.read()) == (int(head[9:12]), b"")
    response.release()
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 1]


@pytest.mark.parametrize(
    "wire",
    [answer(200, b"ok", "Connection: close"), b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ids=["connection-close", "http-1.0"],
)
async def test_an_answer_without_keep_alive_ends_its_connection(
    serve: ServeFactory, pools: PoolFactory, wire: bytes
) -> None:
    server = await serve(answering(wire))  # which, unlike the answer says, keeps the connection open
    pool = pools(server.url)
    assert await get(pool) == b"ok"
    await within(server.peers[0].eof.wait())  # the client closed it
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 2]


async def test_head_answer_has_no_body(serve: ServeFactory, pools: PoolFactory) -> None:
    async def handler(peer: Peer) -> None:
        while request := await peer.request():
            head = request.line.startswith("HEAD ")
            peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" if head else OK)

    server = await serve(handler)
    pool = pools(server.url)
    response = await pool.request("HEAD", "/", [])
    assert (response.status, response.content_length) == (200, 1234)
    assert await within(response.read()) == b""
    response.release()
    assert await get(pool) == b"ok"


async def test_informational_answers_are_skipped(serve: ServeFactory, pools: PoolFactory) -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    server = await serve(answering(early + answer(200, b"final", "X-Final: 1"), OK))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert (response.status, response.raw_headers) == (200, [(b"Content-Length", b"5"), (b"X-Final", b"1")])
    assert await response.read() == b"final"
    response.release()
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 1]


# -- read flow control --------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked", "tls"])
async def test_reading_pauses_while_the_consumer_lags(
    serve: ServeFactory, pools: PoolFactory, tmp_path: Path, framing: str
) -> None:
    """32 MiB ready to send: the client buffers at most the high-water mark plus one socket read,
    stops reading the socket, and resumes once the consumer has taken it down to the low-water mark."""
    block, blocks = bytes(range(256)) * 4096, 32

    async def handler(peer: Peer) -> None:
        await peer.request()
        if framing == "chunked":
            peer.writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(block) * blocks))
        for _ in range(blocks):
            peer.writer.write(b"%x\r\n%b\r\n" % (len(block), block) if framing == "chunked" else block)
            await peer.writer.drain()
        if framing == "chunked":
            peer.writer.write(b"0\r\n\r\n")
        await peer.until_eof()

    if framing == "tls":
        server_context, client_context = tls_contexts(tmp_path)
        server = await serve(handler, ssl_context=server_context)
        pool = pools(server.url, ssl_context=client_context)
    else:
        server = await serve(handler)
        pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    transport = response._connection.transport
    chunks = response.iter_chunks()
    digest, received, pauses = hashlib.sha256(), 0, 0
    while True:
        while not response._paused and not response.complete:  # let the answer pile up unread
            await within(response._wait_for_data())
        if response.complete:
            break
        pauses += 1
        assert READ_HIGH_WATER < response._buffered <= READ_HIGH_WATER + SOCKET_READ
        assert not transport.is_reading()
        while response._paused:  # consume until reading resumes
            chunk = await anext(chunks)
            digest.update(chunk)
            received += len(chunk)
        assert transport.is_reading() and response._buffered <= READ_LOW_WATER
    async for chunk in chunks:
        digest.update(chunk)
        received += len(chunk)
    response.release()
    assert received == len(block) * blocks
    assert digest.digest() == hashlib.sha256(block * blocks).digest()
    assert pauses >= 10


async def test_read_returns_a_body_larger_than_the_high_water_mark(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """read() takes the whole body: flow control must not pause a reader that never drains chunks."""
    body = b"r" * (READ_HIGH_WATER * 4)
    server = await serve(sends(answer(200, body)))
    pool = pools(server.url, read_timeout=0.5)
    response = await pool.request("GET", "/", [])
    try:
        assert await response.read() == body
    finally:
        response.release()


# -- the keep-alive race ------------------------------------------------------------------------------


async def test_a_connection_closed_right_after_its_answer_costs_a_get_nothing(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    server = await serve(sends(OK, close=True))  # keep-alive as far as the answer says
    pool = pools(server.url)
    assert [await get(pool), await get(pool)] == [b"ok", b"ok"]
    assert [r.connection for r in server.requests] == [1, 2]


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    released, closed = asyncio.Event(), asyncio.Event()

    async def idle_timeout(peer: Peer) -> None:
        peer.writer.close()
        await peer.writer.wait_closed()
        closed.set()

    server = await serve(answers_once_then(released, idle_timeout))
    pool = pools(server.url)
    assert await get(pool) == b"ok"
    released.set()
    await within(closed.wait())
    # A POST is never retried: it only succeeds if the client noticed the close while idle.
    response = await pool.request("POST", "/", [], b"data")
    assert await response.read() == b"ok"
    response.release()
    assert [r.connection for r in server.requests] == [1, 2]


async def test_get_is_retried_once_when_a_reused_connection_closes_unanswered(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    server = await serve(hangs_up_after(1, 1))
    pool = pools(server.url)
    assert await get(pool, "/first") == b"ok"
    assert await get(pool, "/second") == b"ok"
    assert [(r.line, r.connection) for r in server.requests] == [
        ("GET /first HTTP/1.1", 1),
        ("GET /second HTTP/1.1", 1),  # read, then the connection closed unanswered
        ("GET /second HTTP/1.1", 2),  # the retry
    ]


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", lambda: b"data"), ("PATCH", lambda: None), ("PUT", lambda: stream(b"streamed"))],
    ids=["post", "patch", "streamed-put"],
)
async def test_unsafe_or_unreplayable_requests_are_not_retried(
    serve: ServeFactory,
    pools: PoolFactory,
    method: str,
    body: Callable[[], bytes | AsyncIterator[bytes] | None],
) -> None:
    server = await serve(hangs_up_after(1, 1))
    pool = pools(server.url)
    assert await get(pool) == b"ok"
    with pytest.raises(TransportError):
        await pool.request(method, "/", [], body())
    assert [r.connection for r in server.requests] == [1, 1] and len(server.peers) == 1


async def test_a_failed_retry_is_not_retried_again(serve: ServeFactory, pools: PoolFactory) -> None:
    server = await serve(hangs_up_after(1, 0))  # later connections hang up on their first request
    pool = pools(server.url)
    assert await get(pool) == b"ok"
    with pytest.raises(TransportError):
        await pool.request("GET", "/again", [])
    unanswered = [r.connection for r in server.requests if r.line == "GET /again HTTP/1.1"]
    assert unanswered == [1, 2] and len(server.peers) == 2


async def test_the_retry_goes_to_a_fresh_connection(serve: ServeFactory, pools: PoolFactory) -> None:
    """The one retry must not spend itself on another idle connection that died the same way."""
    server = await serve(hangs_up_after(1, 1))  # every connection hangs up on its second request
    pool = pools(server.url)
    assert list(await asyncio.gather(get(pool), get(pool))) == [b"ok", b"ok"]  # two idle connections
    assert len(server.peers) == 2
    assert await get(pool, "/again") == b"ok"  # both idle ones are dead: the retry needs a new one
    assert [r.connection for r in server.requests if r.line == "GET /again HTTP/1.1"] == [2, 3]


# -- failures -----------------------------------------------------------------------------------------


async def test_connection_refused_is_an_upstream_error(pools: PoolFactory) -> None:
    pool = pools(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransportError) as caught:
        await pool.request("GET", "/", [])
    assert not isinstance(caught.value, TransportTimeout)


async def test_no_answer_times_out_and_drops_the_connection(serve: ServeFactory, pools: PoolFactory) -> None:
    server = await serve(sends(b""))
    pool = pools(server.url, read_timeout=0.2)
    with pytest.raises(TransportTimeout):
        await pool.request("GET", "/", [])
    await within(server.peers[0].eof.wait())


async def test_a_stall_mid_body_times_out(serve: ServeFactory, pools: PoolFactory) -> None:
    server = await serve(sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"))
    pool = pools(server.url, read_timeout=0.2)
    response = await pool.request("GET", "/", [])
    chunks = response.iter_chunks()
    assert await anext(chunks) == b"12345"  # what arrived is handed over before the failure
    with pytest.raises(TransportTimeout):
        await anext(chunks)
    response.release()
    await within(server.peers[0].eof.wait())


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_close_mid_body_is_an_upstream_error(
    serve: ServeFactory, pools: PoolFactory, wire: bytes
) -> None:
    server = await serve(sends(wire, close=True))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    with pytest.raises(TransportError) as caught:
        await response.read()
    assert not isinstance(caught.value, TransportTimeout)
    response.release()


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"hello world\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        OVERSIZED_HEAD,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ],
    ids=["bad-status", "garbage", "bad-length", "two-lengths", "head-too-large", "101"],
)
async def test_an_unusable_answer_is_an_upstream_error(
    serve: ServeFactory, pools: PoolFactory, wire: bytes
) -> None:
    server = await serve(sends(wire))
    pool = pools(server.url)
    with pytest.raises(TransportError) as caught:
        await pool.request("GET", "/", [])
    assert not isinstance(caught.value, TransportTimeout)
    await within(server.peers[0].eof.wait())  # the client hung up (the server kept the connection)


async def test_an_endless_header_line_is_cut_off(serve: ServeFactory, pools: PoolFactory) -> None:
    """The head limit counts bytes as they arrive, not only complete header lines (no unbounded buffer,
    and a 502 at once rather than a 504 after the read timeout)."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 4 MiB, and never a line end
                peer.writer.write(b"e" * 65536)
                await peer.writer.drain()
        await peer.until_eof()

    server = await serve(handler)
    pool = pools(server.url, read_timeout=0.5)
    with pytest.raises(TransportError) as caught:
        await pool.request("GET", "/", [])
    assert not isinstance(caught.value, TransportTimeout)


@pytest.mark.parametrize("together", [True, False], ids=["same-read", "after-the-answer"])
async def test_a_second_answer_to_one_request_drops_the_connection(
    serve: ServeFactory, pools: PoolFactory, together: bool
) -> None:
    read = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.number > 1:
            return await answering(OK)(peer)
        await peer.request()
        peer.writer.write(answer(200, b"one") + (answer(200, b"two") if together else b""))
        await read.wait()
        if not together:
            peer.writer.write(answer(200, b"two"))
        return await peer.until_eof()

    server = await serve(handler)
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert await response.read() == b"one"  # the first answer stands
    read.set()
    await within(server.peers[0].eof.wait())  # the client hung up on the extra answer
    response.release()
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 2]


async def test_bytes_while_idle_drop_the_connection(serve: ServeFactory, pools: PoolFactory) -> None:
    released = asyncio.Event()

    async def unasked_answer(peer: Peer) -> None:
        peer.writer.write(b"HTTP/1.1 200 OK\r\n")
        await peer.until_eof()

    server = await serve(answers_once_then(released, unasked_answer))
    pool = pools(server.url)
    assert await get(pool) == b"ok"
    released.set()
    await within(server.peers[0].eof.wait())
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 2]


# -- the request guard --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/", [("X-A", "v\r\nX-Injected: 1")]),
        ("/", [("X-A", "v\nX-Injected: 1")]),
        ("/", [("X-A", "v\rX-Injected: 1")]),
        ("/", [("X-A\r\nX-Injected", "1")]),
        ("/a b", []),
        ("/a\r\nX-Injected: 1", []),
        ("/ HTTP/1.1\r\nHost: x\r\n\r\nGET /Injected", []),
        ("/", [("X-A", "\u20ac")]),  # not latin-1
    ],
    ids=["crlf-value", "lf-value", "cr-value", "crlf-name", "space-target", "crlf-target", "smuggle", "euro"],
)
async def test_a_request_that_cannot_be_written_safely_is_refused_unsent(
    serve: ServeFactory, pools: PoolFactory, target: str, headers: list[tuple[str, str]]
) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url)
    assert await get(pool, "/ok") == b"ok"  # an idle connection the request could have gone to
    with pytest.raises(UnsendableRequest):
        await pool.request("GET", target, headers)
    assert await get(pool, "/ok") == b"ok"
    assert [(r.line, r.connection) for r in server.requests] == [("GET /ok HTTP/1.1", 1)] * 2
    assert not any(b"Injected" in r.head or b"\xe2" in r.head for r in server.requests)


# -- release and close --------------------------------------------------------------------------------


async def test_a_second_release_leaves_the_next_exchange_alone(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    go = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(answer(200, b"one"))
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
        await go.wait()
        peer.writer.write(b"two")
        await answering(OK)(peer)

    server = await serve(handler)
    pool = pools(server.url)
    first = await pool.request("GET", "/", [])
    assert await first.read() == b"one"
    first.release()
    second = await pool.request("GET", "/", [])  # the same connection, now busy with this exchange
    first.release()
    first.close()
    go.set()
    assert await second.read() == b"two"
    second.release()
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 1, 1]


async def test_closing_an_unread_answer_drops_its_connection(serve: ServeFactory, pools: PoolFactory) -> None:
    server = await serve(answering(answer(200, b"unread")))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    response.close()
    response.release()  # a no-op now
    await within(server.peers[0].eof.wait())
    assert await get(pool) == b"unread"
    assert [r.connection for r in server.requests] == [1, 2]


async def test_cancelling_a_request_drops_its_connection(serve: ServeFactory, pools: PoolFactory) -> None:
    asked = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        asked.set()
        await peer.until_eof()

    server = await serve(handler)
    pool = pools(server.url)
    pending = asyncio.create_task(pool.request("GET", "/", []))
    await within(asked.wait())
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await within(server.peers[0].eof.wait())


# -- an answer before the upload ends -----------------------------------------------------------------


async def test_an_upload_cut_short_by_an_early_answer_never_reuses_the_connection(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """Once the upload stopped early, the server may still expect body bytes: even a keep-alive answer
    that completes later must not put the connection back (the next request would be read as body)."""
    answered, finish = asyncio.Event(), asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.number > 1:
            return await answering(OK)(peer)
        await peer.request(body=False)  # answer before reading the (chunked) body
        peer.writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\n")
        answered.set()
        await finish.wait()
        peer.writer.write(b"full")
        return await peer.until_eof()

    server = await serve(handler)
    pool = pools(server.url, read_timeout=0.5)

    async def body() -> AsyncIterator[bytes]:
        await answered.wait()
        # A round trip on another connection takes several loop turns: by its end the client has
        # parsed the 413 head that was already waiting on its socket.
        assert await get(pools(server.url)) == b"ok"
        yield b"never sent: the answer has begun"

    response = await pool.request("PUT", "/", [], body())
    assert response.status == 413
    finish.set()
    assert await response.read() == b"full"
    response.release()
    # Connection 1 still expects the rest of a chunked body: the next request must not go there.
    assert await get(pool) == b"ok"
    assert server.requests[-1].connection == 3


async def test_an_answer_before_a_buffered_body_was_sent_never_reuses_the_connection(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """CL.0: the API answers after the head, leaving the body unread (its parser would take the body for
    the next request). The client still holds part of it unsent, so it must not reuse the connection."""

    async def handler(peer: Peer) -> None:
        if peer.number > 1:
            await answering(OK)(peer)
            return
        await peer.request(body=False)
        peer.writer.write(OK)
        await peer.until_eof()

    server = await serve(handler)
    pool = pools(server.url)
    response = await pool.request("POST", "/", [], b"b" * (16 * 1024 * 1024))
    assert await within(response.read()) == b"ok"
    response.release()
    assert await within(get(pool)) == b"ok"
    assert [r.connection for r in server.requests] == [1, 2]


async def test_an_early_answer_ends_a_stalled_upload(serve: ServeFactory, pools: PoolFactory) -> None:
    """An upload waiting for a full socket to drain sees the answer's head at once (not only when the
    read timeout fires: then, with the answer unfinished, a 504 instead of the API's 413)."""
    rest = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request(body=False)  # and reads nothing more: the client's writes stall
        peer.writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo ")
        await rest.wait()
        peer.writer.write(b"large")
        await peer.until_eof()

    server = await serve(handler)
    pool = pools(server.url, read_timeout=0.5)
    body = stream(*[b"u" * 65536] * 1024)  # 64 MiB, far more than the socket buffers hold
    try:
        response = await pool.request("POST", "/", [], body)
    finally:
        rest.set()
    assert (response.status, await response.read()) == (413, b"too large")
    response.release()


# -- the pool's lifecycle -----------------------------------------------------------------------------


async def test_close_drops_idle_connections_and_refuses_requests(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url)
    in_flight = await pool.request("GET", "/", [])  # connection 1, busy
    assert await get(pool) == b"ok"  # connection 2, then idle
    await pool.close()
    await within(server.peers[1].eof.wait())
    assert await in_flight.read() == b"ok"  # an answer under way still completes...
    in_flight.release()
    await within(server.peers[0].eof.wait())  # ...and its connection is closed, not kept
    with pytest.raises(TransportError):
        await pool.request("GET", "/", [])
    assert len(server.peers) == 2


async def test_an_expired_idle_connection_is_closed_not_reused(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url)
    assert await get(pool) == b"ok"
    pool.idle_timeout = 0  # every idle connection is now past its time
    assert await get(pool) == b"ok"
    await within(server.peers[0].eof.wait())
    assert [r.connection for r in server.requests] == [1, 2]


async def test_max_idle_keeps_the_newest_connections(serve: ServeFactory, pools: PoolFactory) -> None:
    server = await serve(answering(OK))
    pool = pools(server.url, max_idle=1)
    older, newer = await asyncio.gather(*(pool.request("GET", f"/{n}", []) for n in range(2)))
    for response in (older, newer):
        assert await response.read() == b"ok"
        response.release()
    by_target = {r.line.split()[1]: r.connection for r in server.requests}
    assert sorted(by_target.values()) == [1, 2]
    await within(server.peers[by_target["/0"] - 1].eof.wait())  # the older idle one was closed
    assert await get(pool, "/again") == b"ok"
    assert server.requests[-1].connection == by_target["/1"]


async def test_a_connection_only_carries_requests_of_its_partition(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """Two sessions one after the other: each gets (and then reuses) a connection of its own."""
    server = await serve(answering(OK))
    pool = pools(server.url)
    for partition in ("alice", "bob", "alice", "bob"):
        response = await pool.request("GET", f"/{partition}", [], partition=partition)
        assert await response.read() == b"ok"
        response.release()
    by_target: dict[str, set[int]] = {}
    for request in server.requests:
        by_target.setdefault(request.line.split()[1], set()).add(request.connection)
    assert by_target == {"/alice": {1}, "/bob": {2}}


async def test_max_idle_bounds_idle_connections_over_all_partitions(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """Three sessions, room for two idle connections: the oldest one (alice's) is closed."""
    server = await serve(answering(OK))
    pool = pools(server.url, max_idle=2)
    for partition in ("alice", "bob", "carol"):
        response = await pool.request("GET", "/", [], partition=partition)
        assert await response.read() == b"ok"
        response.release()
    assert pool.idle_count == 2
    await within(server.peers[0].eof.wait())  # alice's
    response = await pool.request("GET", "/again", [], partition="carol")
    assert await response.read() == b"ok"
    response.release()
    assert server.requests[-1].connection == 3


async def test_trailers_never_join_the_answers_headers(serve: ServeFactory, pools: PoolFactory) -> None:
    """Trailers that arrive together with the head are dropped, not merged into ``raw_headers``."""
    trailers = b"0\r\nContent-Type: text/html\r\nLocation: https://evil.example/\r\n\r\n"
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    server = await serve(answering(wire + b"2\r\n{}\r\n" + trailers))
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert response.raw_headers == [
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Type", b"application/json"),
    ]
    assert await response.read() == b"{}"
    response.release()
    assert await get(pool) == b"{}"  # the connection stays usable
    assert [r.connection for r in server.requests] == [1, 1]


async def test_a_204_that_declares_a_body_ends_its_connection(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """RFC 9110 forbids a length on a 204; an API that sends one may send the body too, later."""

    async def handler(peer: Peer) -> None:
        while request := await peer.request():
            first = request is server.requests[0]
            peer.writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n" if first else OK)

    server = await serve(handler)
    pool = pools(server.url)
    response = await pool.request("GET", "/", [])
    assert (response.status, await response.read()) == (204, b"")
    response.release()
    await within(server.peers[0].eof.wait())
    assert await get(pool) == b"ok"
    assert [r.connection for r in server.requests] == [1, 2]


# -- HTTPS --------------------------------------------------------------------------------------------


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1 and a client one trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bffgate test API")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def test_https_keep_alive(serve: ServeFactory, pools: PoolFactory, tmp_path: Path) -> None:
    server_context, client_context = tls_contexts(tmp_path)
    server = await serve(answering(OK), ssl_context=server_context)
    pool = pools(server.url, ssl_context=client_context)
    assert [await get(pool), await get(pool)] == [b"ok", b"ok"]
    assert [r.connection for r in server.requests] == [1, 1]
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"


async def test_https_refuses_an_untrusted_certificate(
    serve: ServeFactory, pools: PoolFactory, tmp_path: Path
) -> None:
    server_context, _ = tls_contexts(tmp_path)
    server = await serve(answering(OK), ssl_context=server_context)
    pool = pools(server.url)  # the system's trust store
    with pytest.raises(TransportError):
        await pool.request("GET", "/", [])
    assert server.requests == []


async def test_a_single_use_partition_never_reuses_its_connection(
    serve: ServeFactory, pools: PoolFactory
) -> None:
    """Calls without a session (``SINGLE_USE``) each get a connection of their own, closed after use,
    while a session's connection is kept and reused by that session."""
    server = await serve(answering(OK))
    pool = pools(server.url)
    for _ in range(2):
        response = await pool.request("GET", "/anonymous", [], partition=SINGLE_USE)
        assert await response.read() == b"ok"
        response.release()
        assert pool.idle_count == 0
    for _ in range(2):
        response = await pool.request("GET", "/session", [], partition="sid-1")
        assert await response.read() == b"ok"
        response.release()
    assert pool.idle_count == 1
    assert [r.connection for r in server.requests] == [1, 2, 3, 3]

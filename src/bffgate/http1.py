"""The proxy path's HTTP/1.1 client: one keep-alive pool to ``REMOTE_API``, parsed by httptools.

Private to the gateway: the proxied call sees it only as an ``ApiTransport`` (``transport.py``).

Why not aiohttp's client here, which bffgate keeps for provider calls: the proxy path runs on every
request, and there aiohttp's general-purpose machinery (URL objects, multidicts, request and response
classes, per-request timers and trace hooks) cost 87 of the gateway's 174 CPU µs per request
(bench/README.md). A reverse proxy to a single origin needs far less: write one request head, let
llhttp (httptools, the parser uvicorn uses) parse the answer, hand its body over as it arrives.

What this client does, and no more:
- one origin (``http`` or ``https``), keep-alive connections reused most-recent-first *within one
  partition* (the gateway's partition is the session), idle ones closed after ``idle_timeout``, as soon
  as the server closes them, or when more than ``max_idle`` are idle over all partitions;
- request bodies as bytes (with Content-Length) or streamed (Content-Length when declared, else
  chunked), with write flow control;
- answers read whole or streamed with read flow control (reading pauses while the browser is slower
  than the API), 1xx answers skipped, HEAD and close-delimited bodies handled;
- a read timeout on every wait for the answer's head and on each stalled write, and an idle timeout
  (its own setting, ``stream_idle_timeout``) on each pause of a body that has begun: a server-sent
  event stream whose heartbeat comes every 40 s is not cut by a 30 s read timeout while bytes keep
  arriving, yet a stream that goes silent for good is;
- one retry, on a fresh connection, of an idempotent request with a replayable body when a reused
  connection turns out to have been closed by the server before it answered (the keep-alive race).
Not here, because a same-origin reverse proxy does not need them: HTTP/2 to the API, outbound HTTP
proxies, redirects (the browser gets them as they are), decompression (bodies pass byte for byte).
Failures are the transport's neutral ``TransportError`` and ``TransportTimeout`` (and
``UnsendableRequest``); ``transport.transport_problem`` maps them to 502, 504 and 400 answers.

Why partitions: a connection's bytes are only as trustworthy as the API's framing. An API that sends
more than its ``Content-Length`` (or a body after a 204) a moment late, or that answers a POST without
reading its body (CL.0: the body becomes the start of the *next* request it parses), shifts the
connection's request/answer pairing, and nothing on the client side can see that happen in time. So a
connection only ever carries the requests of the partition that opened it: whatever an API does with
one session's bytes, they reach that session's own later exchanges and never another user's. A call
without a session (``transport.SINGLE_USE``) gets a connection of its own, closed after its exchange.
On top of that, a connection is never reused after an exchange whose end is in doubt: extra bytes, an
answer that came before the request body was sent, a HEAD, a close-delimited body, a 204 that declares a
body, any error.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator, Hashable
from typing import cast

import httptools
from yarl import URL

from .metrics import API_CONNECTIONS
from .transport import SINGLE_USE, TransportError, TransportTimeout, UnsendableRequest

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
MAX_RESPONSE_HEAD_BYTES = 64 * 1024  # a longer head is broken or hostile (trailers count too)
READ_HIGH_WATER = 256 * 1024  # stop reading from the API when this much waits for the browser
READ_LOW_WATER = 64 * 1024


class ServerClosedIdle(TransportError):
    """A reused connection closed before any byte of the answer arrived (safe to retry idempotent calls)."""


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one origin, each kept for the partition that opened it."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float | None,
        stream_idle_timeout: float | None = None,
        idle_timeout: float = 15.0,
        max_idle: int = 2048,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.host
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._host_line = f"Host: {url.host_port_subcomponent}\r\n"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # Between the bytes of a body once its head has arrived (None: the read timeout again).
        self.stream_idle_timeout = read_timeout if stream_idle_timeout is None else stream_idle_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        # Idle connections by partition (newest last), and all of them oldest first: the global bound
        # and the expiry walk the second, a request takes from the first.
        self._idle: dict[Hashable, list[Connection]] = {}
        self._idle_order: collections.OrderedDict[Connection, None] = collections.OrderedDict()
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle_order)

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None = None,
        *,
        content_length: int | None = None,
        partition: Hashable = None,
    ) -> Response:
        """Send ``method target`` and return the answer once its head has arrived.

        ``target`` is the encoded path and query. ``body``: None (no body), bytes (sent with its
        Content-Length), or an async iterator (sent with ``content_length`` if given, else chunked).
        ``partition``: the request only travels on connections opened for the same partition (the
        gateway passes the session id), so one partition's bytes never reach another's answers.
        The caller must ``release()`` the answer (or read it to the end and then release it).
        """
        head = self._head(method, target, headers, body, content_length)
        replayable = body is None or isinstance(body, bytes)
        chunked = not replayable and content_length is None
        retry_allowed = replayable and method in IDEMPOTENT_METHODS
        fresh = False
        while True:
            connection, reused = await self._acquire(partition, fresh=fresh)
            try:
                return await connection.exchange(method, head, body, chunked=chunked)
            except ServerClosedIdle:
                connection.close()
                if not (reused and retry_allowed):
                    raise
                # Once, and on a new connection: the other idle ones likely died the same way.
                retry_allowed, fresh = False, True
            except BaseException:
                connection.close()
                raise

    def _head(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n", self._host_line]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif body is not None:
            lines.append(
                f"Content-Length: {content_length}\r\n"
                if content_length is not None
                else "Transfer-Encoding: chunked\r\n"
            )
        lines.append("\r\n")
        text = "".join(lines)
        # Every line break must be one of ours: a CR or LF inside a name, value or target would let
        # the caller write headers (or a whole request) of its own. Callers validate; this is the net.
        if text.count("\n") != len(lines) or text.count("\r") != len(lines) or " " in method + target:
            raise UnsendableRequest("a header or the URL contains a line break")
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise UnsendableRequest("a header contains characters HTTP/1.1 cannot carry") from None

    async def _acquire(self, partition: Hashable, *, fresh: bool = False) -> tuple[Connection, bool]:
        stack = self._idle.get(partition)
        deadline = time.monotonic() - self.idle_timeout
        while stack and not fresh:
            connection = stack.pop()
            del self._idle_order[connection]
            if not stack:
                del self._idle[partition]
            if connection.usable and connection.idle_since > deadline:
                return connection, True
            connection.close()
        if self._closed:
            raise TransportError("the gateway is shutting down")
        connection = await self._connect()
        connection.partition = partition
        return connection, False

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError as exc:
            raise TransportTimeout(
                f"the remote API did not accept a connection within {self.connect_timeout:g} s"
            ) from exc
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
            raise TransportError(f"the remote API could not be reached ({type(exc).__name__})") from exc
        return connection

    def put_back(self, connection: Connection) -> None:
        """Keep a connection whose last exchange ended cleanly, closing the oldest idle ones as needed."""
        if self._closed or not connection.usable or connection.partition is SINGLE_USE:
            connection.close()
            return
        connection.idle_since = now = time.monotonic()
        stack = self._idle.setdefault(connection.partition, [])
        stack.append(connection)
        self._idle_order[connection] = None
        # Amortised clean-up: the oldest idle connection is the first to expire.
        order = self._idle_order
        while order:
            oldest = next(iter(order))
            if len(order) <= self.max_idle and now - oldest.idle_since <= self.idle_timeout:
                break
            self._forget(oldest)

    def _forget(self, connection: Connection) -> None:
        """Close an idle connection and drop it from both indexes."""
        del self._idle_order[connection]
        stack = self._idle[connection.partition]
        stack.remove(connection)
        if not stack:
            del self._idle[connection.partition]
        connection.close()

    async def close(self) -> None:
        self._closed = True
        while self._idle_order:
            self._forget(next(iter(self._idle_order)))


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; it carries one exchange at a time."""

    transport: asyncio.Transport  # set by connection_made, before the pool ever hands this out

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.partition: Hashable = None  # set by the pool: the only requests this connection carries
        self.response: Response | None = None
        self.idle_since = 0.0
        self.closed = False
        self.spent = False  # the request was cut short: the server may still expect body bytes
        self._drain: asyncio.Future[None] | None = None

    @property
    def usable(self) -> bool:
        return not self.closed and not self.transport.is_closing()

    async def exchange(
        self, method: str, head: bytes, body: bytes | AsyncIterator[bytes] | None, *, chunked: bool
    ) -> Response:
        response = Response(self, method)
        self.response = response
        if body is None:
            self.transport.write(head)
        elif isinstance(body, bytes):
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            await self._upload(response, body, chunked=chunked)
        await response.wait_for_head()
        return response

    async def _upload(self, response: Response, body: AsyncIterator[bytes], *, chunked: bool) -> None:
        async for chunk in body:
            if response.head_done or self.closed:
                break  # the API answered (or hung up) before reading everything: stop sending
            if chunked:
                if chunk:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                self.transport.write(chunk)
            await self._drained(response)
        else:
            if chunked and not self.closed:
                self.transport.write(b"0\r\n\r\n")
            return
        self.spent = True

    async def _drained(self, response: Response) -> None:
        if self._drain is None:
            return
        await response.wait(self._drain)  # resolved by resume_writing, an early answer, or a hang-up

    def answer_began(self) -> None:
        """The answer's head arrived: an upload waiting for the socket stops waiting (and sending)."""
        if self.transport.get_write_buffer_size():
            # Part of the request was not even sent yet: the API answered without reading its body
            # (CL.0), and would take what follows for the next request. Never reuse this connection.
            self.spent = True
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def finish(self, response: Response) -> None:
        """The exchange of ``response`` is over: keep the connection if it ended cleanly."""
        if self.response is not response:
            return  # finished before (release after close): the connection may serve another request now
        self.response = None
        if response.complete and response.reusable and response.error is None and not self.spent:
            self.pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        API_CONNECTIONS.inc()  # asyncio calls connection_lost exactly once after this

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes while idle: the server is confused; never reuse this one
            self.close()
            return
        response.received(data)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        API_CONNECTIONS.dec()
        self.closed = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.response is not None:
            self.response.connection_lost()

    def pause_writing(self) -> None:
        self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)


class Response:
    """An answer from the API: status and raw headers at once, the body as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunked_body",
        "_chunks",
        "_connection",
        "_fed_before_head",
        "_head_bytes",
        "_informational",
        "_loop",
        "_method",
        "_parser",
        "_paused",
        "_reading_all",
        "_received_any",
        "_waiter",
        "complete",
        "content_length",
        "error",
        "head_done",
        "raw_headers",
        "reusable",
        "status",
    )

    def __init__(self, connection: Connection, method: str) -> None:
        self._connection = connection
        self._method = method
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._reading_all = False
        self._waiter: asyncio.Future[None] | None = None
        self._informational = False
        self._head_bytes = 0
        self._fed_before_head = 0
        self._received_any = False
        self._chunked_body = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.head_done = False
        self.complete = False
        self.reusable = False
        self.error: TransportError | None = None

    # -- reading -----------------------------------------------------------------------------------

    async def wait_for_head(self) -> None:
        while not self.head_done:
            await self._wait_for_data()

    async def read(self) -> bytes:
        """The whole body (callers only use this for bodies they know are small)."""
        self._reading_all = True  # whoever reads it all takes it all: no flow control
        if self._paused:
            self._paused = False
            self._resume_reading()
        while not self.complete:
            await self._wait_for_data()
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; reading from the API pauses while the consumer lags behind."""
        chunks = self._chunks
        while True:
            if chunks:
                chunk = chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= READ_LOW_WATER:
                    self._paused = False
                    self._resume_reading()
                yield chunk
            elif self.complete:
                return
            else:
                await self._wait_for_data()

    def release(self) -> None:
        """Hand the connection back (answer read to the end) or close it (anything else); idempotent."""
        self._connection.finish(self)

    def close(self) -> None:
        """Drop the connection, whatever state the answer is in; a reader still waiting gets an error."""
        self.reusable = False
        self._fail(TransportError("the answer was abandoned"))
        self._connection.finish(self)

    async def _wait_for_data(self) -> None:
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self._loop.create_future()
        await self.wait(waiter)
        self._waiter = None
        if self.error is not None:
            raise self.error

    async def wait(self, future: asyncio.Future[None]) -> None:
        """Wait for ``future``; after the timeout the exchange fails with ``TransportTimeout``: the read
        timeout until the answer's head has arrived, then the stream idle timeout."""
        timeout = self._timeout()
        timer = self._loop.call_later(timeout, self._timed_out, future) if timeout is not None else None
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
        if self.error is not None:
            raise self.error

    def _timeout(self) -> float | None:
        pool = self._connection.pool
        return pool.stream_idle_timeout if self.head_done else pool.read_timeout

    def _timed_out(self, future: asyncio.Future[None]) -> None:
        if self.head_done:
            message = f"the remote API's answer was silent for {self._timeout():g} s"
        else:
            message = f"the remote API did not answer within {self._timeout():g} s"
        self._fail(TransportTimeout(message))
        if not future.done():
            future.set_result(None)
        self._connection.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: TransportError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._wake()

    def _resume_reading(self) -> None:
        if not self._connection.closed:
            self._connection.transport.resume_reading()

    # -- fed by the connection ---------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        self._received_any = True
        if self.complete:  # bytes after the answer: never reuse this connection
            self.reusable = False
            self._connection.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:  # includes errors raised by our callbacks
            # After a whole answer (extra bytes, data after "Connection: close") the answer stands;
            # either way this connection's framing cannot be trusted again.
            self.reusable = False
            cause = exc.__cause__ or exc.__context__
            self._fail(
                cause
                if isinstance(cause, TransportError)
                else TransportError("the remote API's answer is malformed")
            )
            self._connection.close()
            return
        if not self.head_done:
            # httptools keeps an unfinished header line to itself, where on_header cannot count it:
            # everything received while the head is still incomplete is head.
            self._fed_before_head += len(data)
            if self._fed_before_head > MAX_RESPONSE_HEAD_BYTES:
                self._fail(TransportError("the remote API's answer has too many headers"))
                self._connection.close()

    def connection_lost(self) -> None:
        if self.complete:
            return
        if not self._received_any:
            self._fail(ServerClosedIdle("the remote API closed the connection without answering"))
        elif self.head_done and self.content_length is None and not self._chunked_body:
            self.complete = True  # a body delimited by the end of the connection (HTTP/1.0 style)
            self._wake()
        else:
            self._fail(TransportError("the remote API closed the connection mid-answer"))

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.head_done:  # a second answer to one request
            raise TransportError("the remote API sent more than one answer")
        self.raw_headers = []
        self.content_length = None
        self._chunked_body = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise TransportError("the remote API's answer has too many headers")
        if self.head_done:
            # A trailer of a chunked body (llhttp reports them like header fields). Merged into the
            # head, one arriving early would become a second Content-Type or a Location for the
            # browser: trailers are dropped.
            return
        self.raw_headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            self.content_length = int(value)
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._chunked_body = b"chunked" in value.lower()

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:  # we never ask to switch protocols
                raise TransportError("the remote API switched protocols unasked")
            self._informational = True  # 100 Continue, 103 Early Hints: the real answer follows
            return
        self.status = status
        self.head_done = True
        self._connection.answer_began()
        if self._method == "HEAD":
            # llhttp cannot be told the answer has no body; stop here and never reuse the connection.
            self.complete = True
            self.reusable = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._paused and not self._reading_all:
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self.complete:
            return
        self.complete = True
        # A 204 that declares a body is from an API whose framing is confused: if those bytes come
        # after all, they must find a closed connection.
        self.reusable = self._parser.should_keep_alive() and not (
            self.status == 204 and (self._chunked_body or self.content_length)
        )
        self._wake()

"""A raw HTTP/1.1 server for tests: handlers read requests off the socket and write exact bytes.

It records every connection and request head it saw, so tests can tell which connection carried what.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
MiB = 1024 * 1024


# -- a raw HTTP/1.1 server ----------------------------------------------------------------------------


@dataclass
class Request:
    """One request as the server read it off the wire."""

    connection: int  # 1 for the server's first accepted connection, 2 for the next, ...
    head: bytes
    body: bytes = b""

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:-2]
        return {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


class Peer:
    """The server's side of one accepted connection, as a handler sees it."""

    def __init__(
        self, server: RawServer, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server, self.number, self.reader, self.writer = server, number, reader, writer
        self.eof = asyncio.Event()  # set once a read found that the client closed its side

    async def request(self, *, body: bool = True) -> Request | None:
        """The next request (its body de-chunked unless ``body=False``), or None once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError):
            self.eof.set()
            return None
        request = Request(self.number, head)
        self.server.requests.append(request)
        if body:
            request.body = await self._body(request.headers)
        return request

    async def read_body(self, request: Request) -> bytes:
        """The body of a request read with ``body=False``, for handlers that decide per route."""
        request.body = await self._body(request.headers)
        return request.body

    async def _body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") != "chunked":
            return await self.reader.readexactly(int(headers.get("content-length", "0")))
        data = bytearray()
        while size := int((await self.reader.readuntil(b"\r\n"))[:-2], 16):
            data += (await self.reader.readexactly(size + 2))[:-2]
        await self.reader.readexactly(2)
        return bytes(data)

    async def until_eof(self) -> None:
        """Discard whatever the client sends until it closes the connection."""
        with contextlib.suppress(ConnectionResetError):
            while await self.reader.read(MiB):
                pass
        self.eof.set()


Handler = Callable[[Peer], Coroutine[Any, Any, None]]


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.handlers: list[asyncio.Task[None]] = []  # cancelled when the test ends
        self.connections: list[asyncio.Task[Any]] = []
        self.port = 0
        self.url = ""

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(self, len(self.peers) + 1, reader, writer)
        self.peers.append(peer)
        connection = asyncio.current_task()
        assert connection is not None
        self.connections.append(connection)
        handler = asyncio.create_task(self.handler(peer))
        self.handlers.append(handler)
        try:
            await asyncio.wait([handler])
            if not handler.cancelled() and (error := handler.exception()) is not None:
                self.errors.append(error)  # a broken handler must fail the test
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def within(awaitable: Awaitable[T]) -> T:
    """Await something the test relies on; if a bug stops it from happening, fail instead of hanging."""
    async with asyncio.timeout(5):
        return await awaitable


async def start_raw_server(
    stack: contextlib.AsyncExitStack, handler: Handler, *, ssl_context: ssl.SSLContext | None = None
) -> RawServer:
    """A raw server on an ephemeral loopback port, stopped (and its handlers' errors raised) by ``stack``."""
    server = RawServer(handler)
    listener = await asyncio.start_server(server.accept, "127.0.0.1", 0, ssl=ssl_context)
    server.port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{server.port}"

    async def stop() -> None:
        listener.close()
        for handler in server.handlers:
            handler.cancel()
        for peer in server.peers:  # unsent bytes must not hold up the end of the test
            peer.writer.transport.abort()
        await asyncio.gather(*server.connections, return_exceptions=True)
        await listener.wait_closed()
        assert not server.errors, server.errors

    stack.push_async_callback(stop)
    return server

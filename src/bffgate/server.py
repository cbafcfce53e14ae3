"""The HTTP/1.1 server protocol bffgate runs under uvicorn: request heads bounded in size and in time.

uvicorn's ``httptools`` protocol buffers a request head without limit (a 100 MiB header grows the
process by as much), waits for it for ever (a connection that sends nothing, or a byte every few
seconds, stays open), and appends the trailer fields of a chunked request to ``scope["headers"]``,
where the app takes them for fields of the head. ``BoundedHttpToolsProtocol`` is that protocol with
these rules added where the bytes arrive, before any app code runs, so they hold on every route, with
or without a session:

* **Size.** At most ``BFF_MAX_HEAD_BYTES`` are fed to the parser between two steps of progress
  (a head completed, body bytes delivered, a message completed). A head that grows past the bound
  is answered ``431`` (or, mid-answer, the connection is closed) as soon as the bound is passed, not
  after it was buffered. The count is exact for a head that starts a read, which is every request a
  browser or a proxy sends after the previous answer; a head that arrives in the same read as the end
  of the previous request (pipelining) is counted from the end of that read, so it may reach twice
  the bound. An oversized trailer section is cut off the same way. The parser thus never holds more
  than twice the bound of an unfinished head or trailer per connection.
* **Time.** A connection waiting for a head (new, or idle after an answer) must deliver the whole
  head within ``BFF_HEAD_TIMEOUT`` seconds, however it trickles; else it is closed. After an early
  answer, the rest of the body the app did not wait for counts as part of that wait. uvicorn's own
  keep-alive timeout (5 s without a byte) still applies.
* **Number.** At most ``BFF_MAX_IDLE_CONNECTIONS`` connections per process wait for a head; the
  next one closes the one that has waited longest (as nginx reuses its idle connections), so a
  flood of idle or slow connections evicts itself, not the browsers that send whole requests.
* **Trailers** of a chunked request are dropped: ``scope["headers"]`` is the head and nothing else.

Why a protocol subclass rather than the alternatives: an ASGI middleware runs only after the whole head
was buffered; uvicorn's ``h11`` mode caps heads (``h11_max_incomplete_event_size``) but has no head
timeout and parses in pure Python, where ``httptools`` uses llhttp; a front proxy helps but cannot be
assumed. The subclass overrides ``data_received``, three parser callbacks and the connection's
made / lost / answered hooks, each calling uvicorn's own, so everything else is uvicorn's; it costs
about 1 µs of CPU per request. It reads its bounds from the environment (``ServerSettings``) once per
process, so it can be named by import string (``uvicorn --http bffgate.server:BoundedHttpToolsProtocol``)
and survives uvicorn's worker processes.

Not here: request bodies (``proxy.read_body`` bounds them per route) and the app's own 64 KiB check of
the forwarded header fields (``proxy.forwardable_request_headers``), which still applies when
``create_app`` runs under another server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from http import HTTPStatus
from typing import Any
from weakref import WeakKeyDictionary

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import ServerSettings, load_server_settings
from .errors import HeadersTooLarge
from .problems import NO_STORE, error_answer

log = logging.getLogger("bffgate.server")

# What `bffgate serve` and `bffgate demo` pass to uvicorn as `http=` (an import string survives the
# worker processes uvicorn spawns).
HTTP_PROTOCOL = "bffgate.server:BoundedHttpToolsProtocol"
# WebSockets from browsers (live_socket.py): uvicorn's protocol on the ``websockets`` library's sans-I/O
# core. A handshake is parsed by the bounded HTTP protocol above, which then hands the connection over
# (``_still_ours``); the socket's messages are bounded by ``ws_max_size`` (BFF_WS_MAX_MESSAGE_BYTES).
WS_PROTOCOL = "websockets-sansio"


@functools.cache
def server_settings() -> ServerSettings:
    """The bounds, read from the environment once per process (``ConfigError`` if invalid)."""
    return load_server_settings()


def head_refusal(max_head_bytes: int) -> bytes:
    """The whole 431 answer, as bytes: rendered and counted by ``error_answer`` like every problem
    the app answers (problem JSON, its ``code``), not to be stored by any cache; then the connection
    closes. Built per refusal, which is rare: cheaper than the head that caused it."""
    error = HeadersTooLarge(f"the request head is larger than {max_head_bytes} bytes")
    response = error_answer(error, headers=NO_STORE)
    status = HTTPStatus(response.status_code)
    lines = [f"HTTP/1.1 {status.value} {status.phrase}".encode("latin-1")]
    lines += [name + b": " + value for name, value in response.raw_headers]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + bytes(response.body)


class WaitingConnections:
    """The connections of one server that wait for a request head, in the order they began to wait.

    All may wait equally long, so that order is also the order of their deadlines: one timer, set for
    the first deadline, serves them all (a timer per request would cost as much as the rest of this
    module), and past the bound on their number the first is the one that has waited longest.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, limit: int) -> None:
        self._loop = loop
        self._timeout = timeout
        self._limit = limit
        self._since: dict[BoundedHttpToolsProtocol, float] = {}  # dicts keep insertion order
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: BoundedHttpToolsProtocol) -> None:
        self._since.pop(connection, None)
        self._since[connection] = self._loop.time()
        while len(self._since) > self._limit:
            self._close_first()
        if self._timer is None:
            self._expire()

    def discard(self, connection: BoundedHttpToolsProtocol) -> None:
        self._since.pop(connection, None)

    def __len__(self) -> int:
        return len(self._since)

    def _expire(self) -> None:
        """Close every connection past its deadline; then wait for the next deadline, if any."""
        self._timer = None
        now = self._loop.time()
        while self._since:
            deadline = next(iter(self._since.values())) + self._timeout
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            self._close_first()

    def _close_first(self) -> None:
        first = next(iter(self._since))
        del self._since[first]
        first.close_waiting()


_waiting: WeakKeyDictionary[ServerState, WaitingConnections] = WeakKeyDictionary()


def waiting_connections(
    server_state: ServerState, loop: asyncio.AbstractEventLoop, limits: ServerSettings
) -> WaitingConnections:
    """The waiting connections of the server ``server_state`` belongs to (one registry per server)."""
    registry = _waiting.get(server_state)
    if registry is None:
        registry = WaitingConnections(loop, limits.bff_head_timeout, limits.bff_max_idle_connections)
        _waiting[server_state] = registry
    return registry


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads (size, time, number waiting) and no trailers."""

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, server_state, *args, **kwargs)
        limits = server_settings()
        self._max_head_bytes = limits.bff_max_head_bytes
        self._waiting = waiting_connections(server_state, self.loop, limits)
        self._unparsed = 0  # bytes fed since the parser last made progress
        self._progressed = False

    # -- the connection's life ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting.add(self)  # from now on, a whole head must arrive in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.discard(self)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head (and the rest of a body the app did not wait for) must come in time.
        if self._idle() and not self.transport.is_closing():
            self._waiting.add(self)

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def close_waiting(self) -> None:
        """Close a connection that took too long for its head, or that waited longest when too many wait."""
        self._waiting.discard(self)
        if not self.transport.is_closing():
            self.transport.close()

    # -- bytes in ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._unparsed + len(data) < self._max_head_bytes:  # the usual case: all of it, at once
            self._progressed = False
            super().data_received(data)
            self._unparsed = 0 if self._progressed else self._unparsed + len(data)
            return
        while data and self._still_ours():
            room = self._max_head_bytes - self._unparsed
            if room <= 0:
                self._refuse()
                return
            piece, data = data[:room], data[room:]
            self._progressed = False
            super().data_received(piece)
            # After progress, the rest of the piece is not counted: at most one piece goes unseen.
            self._unparsed = 0 if self._progressed else self._unparsed + len(piece)
        if self._unparsed >= self._max_head_bytes and self._still_ours():
            self._refuse()

    def _still_ours(self) -> bool:
        """False once the connection closes or was handed to a WebSocket protocol."""
        return not self.transport.is_closing() and self.transport.get_protocol() is self

    def _refuse(self) -> None:
        log.warning(
            "a request head or trailer section passed %d bytes; connection closed", self._max_head_bytes
        )
        if self._idle():  # nothing else is being written: the client can read why
            self.transport.write(head_refusal(self._max_head_bytes))
        self.close_waiting()

    # -- parser callbacks (run inside data_received) -----------------------------------------------

    def on_headers_complete(self) -> None:
        self._progressed = True
        self._waiting.discard(self)
        super().on_headers_complete()
        # The scope keeps the head's fields; any later field (a chunked body's trailers) goes to a
        # copy that only uvicorn's upgrade check reads. (Cheaper than filtering every on_header.)
        self.headers = list(self.headers)

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._progressed = True
        super().on_message_complete()

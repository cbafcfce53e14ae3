"""The HTTP/1.1 server protocol bffgate runs under uvicorn: request heads bounded in size and in time.

uvicorn's ``httptools`` protocol buffers a request head without limit (a 100 MiB header grows the
process by as much) and waits for it for ever (a connection that sends nothing, or a byte every few
seconds, stays open), and it appends the trailer fields of a chunked request to ``scope["headers"]``
after the app has read them. ``BoundedHttpToolsProtocol`` is that protocol with three rules added
where the bytes arrive, before any app code runs, so they hold on every route, with or without a
session:

* **Size.** At most ``BFF_MAX_HEAD_BYTES`` are fed to the parser between two steps of progress
  (a head completed, body bytes delivered, a message completed). A head that grows past the bound
  is answered ``431`` (or, mid-answer, the connection is closed) as soon as the bound is passed, not
  after it was buffered. The count is exact for a head that starts a read, which is every request a
  browser or a proxy sends after the previous answer; a head that arrives in the same read as the end
  of the previous request (pipelining) is counted from the end of that read, so it may reach twice
  the bound. An oversized trailer section is cut off the same way. The parser thus never holds more
  than twice the bound of an unfinished head or trailer per connection.
* **Time.** A connection waiting for a head (new, or idle after an answer) must deliver the whole
  head within ``BFF_HEAD_TIMEOUT`` seconds, however it trickles; else it is closed. uvicorn's own
  keep-alive timeout (5 s without a byte) still applies.
* **Number.** At most ``BFF_MAX_IDLE_CONNECTIONS`` connections per process wait for a head; the
  next one closes the one that has waited longest (as nginx reuses its idle connections), so a
  flood of idle or slow connections evicts itself, not the browsers that send whole requests.
* **Trailers** of a chunked request are dropped: ``scope["headers"]`` is the head and nothing else.

Why a protocol subclass rather than the alternatives: uvicorn's ``h11`` mode has a head-size limit
(``h11_max_incomplete_event_size``) but no head timeout and costs the throughput that made us choose
``httptools`` (see bench/README.md); an ASGI middleware runs only after the whole head was buffered;
a front proxy helps but cannot be assumed. The subclass overrides only parser callbacks and
``data_received``, so every other behaviour is uvicorn's. It reads its bounds from the environment
(``ServerSettings``) once per process, so it can be named by import string
(``uvicorn --http bffgate.server:BoundedHttpToolsProtocol``) and survives uvicorn's worker processes.

Not here: request bodies (``proxy.read_body`` bounds them per route) and the app's own 64 KiB check of
the forwarded header fields (``proxy.forwardable_request_headers``), which still applies when
``create_app`` runs under another server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any
from weakref import WeakKeyDictionary

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import ServerSettings, load_server_settings
from .errors import HeadersTooLarge
from .problems import problem_response

log = logging.getLogger("bffgate.server")

# What `bffgate serve` and `bffgate demo` pass to uvicorn as `http=` (an import string survives the
# worker processes uvicorn spawns).
HTTP_PROTOCOL = "bffgate.server:BoundedHttpToolsProtocol"


@functools.cache
def server_settings() -> ServerSettings:
    """The bounds, read from the environment once per process (``ConfigError`` if invalid)."""
    return load_server_settings()


@functools.cache
def head_refusal(max_head_bytes: int) -> bytes:
    """The whole 431 answer, as bytes: the same problem document the app would send."""
    response = problem_response(HeadersTooLarge(f"the request head is larger than {max_head_bytes} bytes"))
    lines = [b"HTTP/1.1 431 Request Header Fields Too Large"]
    lines += [name + b": " + value for name, value in response.raw_headers]
    lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + bytes(response.body)


class WaitingConnections:
    """The connections of one server that wait for a request head, longest-waiting first."""

    def __init__(self) -> None:
        self._order: dict[BoundedHttpToolsProtocol, None] = {}  # dicts keep insertion order

    def add(self, connection: BoundedHttpToolsProtocol, limit: int) -> None:
        self._order.pop(connection, None)
        self._order[connection] = None
        while len(self._order) > limit:
            oldest = next(iter(self._order))
            del self._order[oldest]
            oldest.close_waiting()

    def discard(self, connection: BoundedHttpToolsProtocol) -> None:
        self._order.pop(connection, None)

    def __len__(self) -> int:
        return len(self._order)


_waiting: WeakKeyDictionary[ServerState, WaitingConnections] = WeakKeyDictionary()


def waiting_connections(server_state: ServerState) -> WaitingConnections:
    """The waiting connections of the server ``server_state`` belongs to (one registry per server)."""
    registry = _waiting.get(server_state)
    if registry is None:
        registry = _waiting[server_state] = WaitingConnections()
    return registry


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded heads (size, time, number waiting) and no trailers."""

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, server_state, *args, **kwargs)
        limits = server_settings()
        self._max_head_bytes = limits.bff_max_head_bytes
        self._head_timeout = limits.bff_head_timeout
        self._max_waiting = limits.bff_max_idle_connections
        self._waiting = waiting_connections(server_state)
        self._in_head = True  # the parser is between messages or inside a head (not a body)
        self._unparsed = 0  # bytes fed since the parser last made progress
        self._progressed = False
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the connection's life ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head (and the rest of a body the app did not wait for) must come in time.
        if self._idle() and not self.transport.is_closing():
            self._await_head()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_head(self) -> None:
        """From now on, a whole head must arrive within the timeout (and this one counts as waiting)."""
        self._stop_waiting()
        self._head_timer = self.loop.call_later(self._head_timeout, self.close_waiting)
        self._waiting.add(self, self._max_waiting)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._waiting.discard(self)

    def close_waiting(self) -> None:
        """Close a connection that took too long for its head, or that waited longest when too many wait."""
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()

    # -- bytes in ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
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

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # after the head, a field is a trailer: never a header of the request
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._progressed = True
        self._stop_waiting()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._progressed = True
        super().on_message_complete()

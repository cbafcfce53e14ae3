"""A WebSocket through the gateway: the browser's handshake to ``/api/rest/proxy/{path}`` (or to a
configured route's prefix) becomes a WebSocket to ``ws(s)://REMOTE_API/{path}`` (the route's upstream)
with the route's credentials, and messages are relayed both ways.

``ProxiedCall`` hands every ``websocket`` scope on the proxy prefix or a route's prefix here. One socket:

1. **Before anything reaches the API** (answered as HTTP problems, like the proxied call): the session
   from the cookies (401 on ``user`` routes; other rules take it if there is one), then the ``Origin``,
   which must be present and allowed (403: browsers send no ``X-CSRF`` on a handshake, so the Origin
   is the defence against cross-site WebSocket hijacking, with the ``SameSite=Strict`` cookies), then
   the path under the route's upstream (400, ``api_url``).
2. **Limits**: ``BFF_WS_MAX_PER_SESSION`` and ``BFF_WS_MAX_PER_PROCESS`` (``live_sockets``). A socket
   over a limit is accepted and closed at once with 4429, so the page can tell why; the API is not
   contacted.
3. **The API's handshake** with the route's credentials (``route_credentials.route_token``: a fresh
   access token, single-flight refresh; the route's client token; or none), the route's claim and
   forwarded headers, the browser's sub-protocols and end-to-end headers, never its cookies; on a 401
   to a call that carried a token, one renewal and one retry, as for HTTP. Any other refusal passes
   through with the API's status; an unreachable API is a 502/504 problem. The browser is accepted
   with the sub-protocol the API chose, and the cookies of a session refreshed on the way.
4. **The relay**: text and binary messages both ways, each ``send`` awaited, so a slow side slows the
   other (uvicorn stops reading from a browser whose messages we have not taken; the ``websockets``
   client stops reading from the API past ``API_QUEUE`` messages): memory per socket stays bounded
   by a few messages of at most ``BFF_WS_MAX_MESSAGE_BYTES``. Pings and pongs are per hop (ASGI does
   not carry them): uvicorn pings the browser, the client pings the API. A close on either side is
   passed to the other with its code; the gateway's own codes are in ``live_sockets``.

Not here: tokens during the connection. The access token is judged by the API at the handshake; the
gateway never cuts a socket because that token expired (``live_sockets`` says what does end it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.typing import Subprotocol
from yarl import URL

from .config import Settings
from .errors import BffError, CsrfFailed, UpstreamError, UpstreamTimeout
from .gateway import TRACKED_SESSION_KEY, Gateway, RequestSession
from .header_filter import forwardable_request_headers, header_value
from .live_sockets import API_UNAVAILABLE, MESSAGE_TOO_BIG, SESSION_ENDED, TOO_MANY_SOCKETS, LiveSocket
from .metrics import SOCKETS_CLOSED, SOCKETS_REFUSED
from .problems import session_cookie_headers, with_cookies
from .route_credentials import renewed_token, route_headers, route_token, without_claim_headers
from .routes import ApiRoute

log = logging.getLogger("bffgate.live")

API_QUEUE = 4  # messages read ahead from the API while the browser is slower
WS_SCHEMES = {"http": "ws", "https": "wss"}
CLOSE_REASON_BYTES = 123  # RFC 6455: what fits in a close frame

GatewayGetter = Callable[[], Awaitable[Gateway]]
ErrorHandler = Callable[[HTTPConnection, Exception], Awaitable[Response]]


class SocketRefused(BffError):
    """The API refused the handshake: its status and body go to the browser as they are."""

    code = "api_refused"  # the metric's label; the browser gets the API's own answer

    def __init__(self, status: int, body: bytes, content_type: str | None) -> None:
        super().__init__("the remote API refused the WebSocket")
        self.api_status = status
        self.answer = Response(
            body,
            status_code=status,
            headers={"Cache-Control": "no-store", **({"Content-Type": content_type} if content_type else {})},
        )


class LiveSocketCall:
    """Answers a WebSocket handshake on a route's prefix and relays the socket until it closes."""

    def __init__(
        self, gateway: GatewayGetter, on_error: ErrorHandler, path_of: Callable[[Scope, str], str]
    ) -> None:
        self.gateway = gateway
        self.on_error = on_error
        self.path_of = path_of  # the path under a route's prefix (``InvalidUrl`` when it cannot be)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, api_route: ApiRoute | None = None
    ) -> None:
        """``api_route`` None: the default route (``REMOTE_API``, token rule ``user``)."""
        if (await receive())["type"] != "websocket.connect":
            return  # the browser left before the handshake was ours to answer
        request = HTTPConnection(scope, receive)
        try:
            gateway = await self.gateway()
            route = api_route or gateway.default_route
            tracked = await open_session(gateway, route, request)
            verify_origin(scope, gateway.settings.allowed_origins)
            path = self.path_of(scope, route.prefix)
            url = api_socket_url(route.urls.join(path, scope["query_string"].decode("latin-1")))
            socket = gateway.sockets.admit(tracked.loaded if tracked else None, request.cookies)
            if socket is None:
                await _accept_and_close(scope, send, TOO_MANY_SOCKETS, "too many open WebSockets")
                SOCKETS_CLOSED.labels("too_many").inc()
                return
        except Exception as exc:
            await self._refuse(request, exc, receive, send)
            return
        try:
            await self._open(gateway, route, request, tracked, url, socket, receive, send)
        finally:
            gateway.sockets.leave(socket)

    async def _open(
        self,
        gateway: Gateway,
        route: ApiRoute,
        request: HTTPConnection,
        tracked: RequestSession | None,
        url: URL,
        socket: LiveSocket,
        receive: Receive,
        send: Send,
    ) -> None:
        upstream: ClientConnection | None = None
        try:
            upstream = await _connect(gateway, route, tracked, url, request.scope)
            cookies = []
            if tracked is not None and route.user_token:  # as for HTTP: only a session whose tokens were used
                cookies = await gateway.answer_cookies(request.cookies, tracked)
        except Exception as exc:
            if upstream is not None:  # the new tokens do not fit the cookies: no socket after all
                await _close_quietly(upstream)
            await self._refuse(request, exc, receive, send)
            return
        try:
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": upstream.subprotocol,
                    "headers": session_cookie_headers(cookies) if cookies else [],
                }
            )
            reason = await relay(upstream, receive, send, socket, gateway.settings)
        finally:
            await _close_quietly(upstream)
        SOCKETS_CLOSED.labels(reason).inc()

    async def _refuse(self, request: HTTPConnection, exc: Exception, receive: Receive, send: Send) -> None:
        """The handshake's problem answer (or the API's own refusal), as an HTTP answer; either way with
        the cookies of a session refreshed on the way (a rotated refresh token must reach the browser)."""
        if not isinstance(exc, BffError):
            log.exception("unexpected error on a WebSocket handshake to %s", request.scope["path"][:200])
        if isinstance(exc, SocketRefused):
            tracked = request.scope.get(TRACKED_SESSION_KEY)
            gateway = await self.gateway()
            cookies = await gateway.cookies_for_problem(request.cookies, tracked) if tracked else []
            answer = with_cookies(exc.answer, cookies)
        else:
            answer = await self.on_error(request, exc)
        SOCKETS_REFUSED.labels(exc.code if isinstance(exc, BffError) else "internal_error").inc()
        if "websocket.http.response" in request.scope.get("extensions", {}):
            await answer(request.scope, receive, send)
        else:  # a server without the denial extension answers 403 itself
            await send({"type": "websocket.close", "code": 1008})


async def open_session(gateway: Gateway, route: ApiRoute, request: HTTPConnection) -> RequestSession | None:
    """The handshake's session: required on ``user`` routes (401 without), else taken if live. No
    CSRF header check: a handshake cannot carry one; ``verify_origin`` is its defence."""
    if route.rule == "user":
        return await gateway.open_without_csrf(request.cookies, request.scope)
    return await gateway.optional_without_csrf(request.cookies, request.scope)


def verify_origin(scope: Scope, allowed_origins: frozenset[str]) -> None:
    """``CsrfFailed`` unless the handshake carries an allowed ``Origin`` (browsers always send one)."""
    origin = header_value(scope["headers"], b"origin")
    if origin is None or origin.lower() not in allowed_origins:
        raise CsrfFailed("a WebSocket handshake needs an allowed Origin")


def api_socket_url(url: URL) -> URL:
    """The API URL with the WebSocket scheme of its HTTP one (``http`` → ``ws``, ``https`` → ``wss``)."""
    return url.with_scheme(WS_SCHEMES[url.scheme])


def forwardable_handshake_headers(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The browser's end-to-end headers minus the handshake's own, which the client writes itself."""
    return [
        (name, value)
        for name, value in forwardable_request_headers(raw_headers)
        if not name.startswith("sec-websocket-")
    ]


def requested_subprotocols(raw_headers: list[tuple[bytes, bytes]]) -> list[Subprotocol]:
    protocols = []
    for name, value in raw_headers:
        if name == b"sec-websocket-protocol":
            protocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return [Subprotocol(p) for p in protocols]


async def _connect(
    gateway: Gateway, route: ApiRoute, tracked: RequestSession | None, url: URL, scope: Scope
) -> ClientConnection:
    """The API's WebSocket with the route's credentials; after a 401 to a call with a token, once
    more with a renewed one (``renewed_token``: a forced refresh, or the route's next client token)."""
    raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
    headers = forwardable_handshake_headers(raw_headers)
    if gateway.routes.claim_header_names:
        headers = without_claim_headers(gateway, headers)
    if route.claim_headers or route.forward_client_address:
        headers += route_headers(gateway, route, tracked, scope)
    token = await route_token(gateway, route, tracked)
    try:
        return await _connect_once(gateway, url, headers, token, raw_headers)
    except SocketRefused as refused:
        if refused.api_status != 401 or token is None:
            raise
    token = await renewed_token(gateway, route, tracked, token)
    return await _connect_once(gateway, url, headers, token, raw_headers)


async def _connect_once(
    gateway: Gateway,
    url: URL,
    headers: list[tuple[str, str]],
    token: str | None,
    raw_headers: list[tuple[bytes, bytes]],
) -> ClientConnection:
    settings = gateway.settings
    if token is not None:
        headers = [*headers, ("Authorization", f"Bearer {token}")]
    try:
        return await connect(
            str(url),
            additional_headers=headers,
            subprotocols=requested_subprotocols(raw_headers) or None,
            user_agent_header=None,  # the browser's User-Agent, if any, is among the headers
            proxy=None,  # never an HTTP proxy from the environment: the API is REMOTE_API itself
            compression=None,  # messages pass as they are; each hop may compress on its own terms
            open_timeout=settings.bff_upstream_timeout,
            max_size=settings.bff_ws_max_message_bytes,
            max_queue=API_QUEUE,
        )
    except InvalidStatus as exc:  # the one place the client's errors become problem answers
        answer = exc.response
        raise SocketRefused(
            answer.status_code, bytes(answer.body or b""), answer.headers.get("Content-Type")
        ) from None
    except TimeoutError as exc:
        raise UpstreamTimeout("the remote API did not open the WebSocket in time") from exc
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        raise UpstreamError(f"the remote API's WebSocket could not be opened ({type(exc).__name__})") from exc


async def relay(
    upstream: ClientConnection, receive: Receive, send: Send, socket: LiveSocket, settings: Settings
) -> str:
    """Relay until one side closes or the gateway ends the socket; the metric's reason for the end."""
    to_api = asyncio.ensure_future(_browser_to_api(receive, upstream, settings.bff_ws_max_message_bytes))
    to_browser = asyncio.ensure_future(_api_to_browser(upstream, send))
    try:
        waits: set[asyncio.Future[Any]] = {to_api, to_browser, socket.ended}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_api, to_browser):
            task.cancel()
        await asyncio.gather(to_api, to_browser, return_exceptions=True)
    if socket.ended.done():
        code = socket.ended.result()
        await _close_browser(send, code, "session ended" if code == SESSION_ENDED else "")
        await _close_quietly(upstream, 1001, "the browser's session ended")
        return "session_ended" if code == SESSION_ENDED else "shutdown"
    if to_api.done() and not to_api.cancelled() and to_api.exception() is None:
        code, reason = to_api.result()
        if code == MESSAGE_TOO_BIG:
            await _close_browser(send, MESSAGE_TOO_BIG, "message too big")
            await _close_quietly(upstream, 1001, "a browser message was too big")
            return "message_too_big"
        await _close_quietly(upstream, _sendable(code), reason)
        return "browser"
    if to_browser.done() and not to_browser.cancelled() and to_browser.exception() is not None:
        await _close_quietly(upstream, 1001, "the browser went away")  # its connection broke
        return "browser"
    # The API's side ended (closed, lost, or a message of its own was too big): tell the browser.
    code, reason = _api_close(upstream)
    await _close_browser(send, code, reason)
    return "api" if code != API_UNAVAILABLE else "upstream_unavailable"


async def _browser_to_api(receive: Receive, upstream: ClientConnection, max_bytes: int) -> tuple[int, str]:
    """The browser's messages to the API, one at a time; the browser's close code when it leaves."""
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            raw: bytes | None = message.get("bytes")
            text = raw is None
            data = (message.get("text") or "").encode() if raw is None else raw
            if len(data) > max_bytes:
                return MESSAGE_TOO_BIG, ""
            await upstream.send(data, text=text)  # waits while the API is slower than the browser
        elif message["type"] == "websocket.disconnect":
            return int(message.get("code", 1000)), str(message.get("reason") or "")


async def _api_to_browser(upstream: ClientConnection, send: Send) -> None:
    """The API's messages to the browser, one at a time, until the API's side closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            message = await upstream.recv()
            if isinstance(message, str):
                await send({"type": "websocket.send", "text": message})
            else:
                await send({"type": "websocket.send", "bytes": message})


def _api_close(upstream: ClientConnection) -> tuple[int, str]:
    """The close code and reason for the browser when the API's side ended."""
    received = upstream.protocol.close_rcvd
    sent = upstream.protocol.close_sent
    if received is not None:
        return _sendable(received.code), received.reason
    if sent is not None and sent.code == MESSAGE_TOO_BIG:  # the API's message was over our limit
        return MESSAGE_TOO_BIG, "message too big"
    return API_UNAVAILABLE, "the remote API's connection broke off"


def _sendable(code: int) -> int:
    """``code`` if it may travel in a close frame; 1005 (no code) as 1000; anything else as 4502."""
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code
    return 1000 if code == 1005 else API_UNAVAILABLE


async def _close_browser(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the browser is gone already: nothing to tell it
        await send({"type": "websocket.close", "code": code, "reason": _fit(reason)})


async def _close_quietly(upstream: ClientConnection, code: int = 1000, reason: str = "") -> None:
    with contextlib.suppress(Exception):
        await upstream.close(code, _fit(reason))


async def _accept_and_close(scope: Scope, send: Send, code: int, reason: str) -> None:
    """Accept (with the browser's first sub-protocol, so it does not fail the handshake) and close at
    once with ``code``: a refusal the page can read, unlike an HTTP status on a handshake."""
    protocols = requested_subprotocols(scope["headers"])
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
    await _close_browser(send, code, reason)


def _fit(reason: str) -> str:
    encoded = reason.encode()[:CLOSE_REASON_BYTES]
    return encoded.decode(errors="ignore")

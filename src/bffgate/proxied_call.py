"""The proxied call, top to bottom: ``/api/rest/proxy/…`` and ``POST /api/rest/customfetch``.

``ProxiedCall`` is a plain ASGI middleware (Starlette's idiom), installed as the innermost of the
app's middleware: the user's middleware (``app.add_middleware``) sees proxied calls like any other
request, while Starlette's exception middleware and router, which cost more per request than the
gateway's own work (bench/README.md), are skipped. One call:

1. ``route``: a proxy path or the customfetch path? (anything else goes on to the router);
2. ``Gateway.open``: the session from the cookies, then the CSRF check;
3. ``build``: the API call from the path (``api_url``, ``header_filter``, ``request_body``) or from
   the envelope (``customfetch``);
4. ``send``: a fresh session (refreshed ahead of expiry), the call through the ``ApiTransport``, and
   once, on a 401 with a replayable body, a forced refresh and the same call again;
5. the answer: the API's status and filtered headers, the session's new cookies if it changed, the
   body streamed (``answer_stream``). Any error becomes a problem answer through the app's one
   error handler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .answer_stream import StreamedAnswer
from .customfetch import ApiCall, parse_envelope
from .errors import BffError, InvalidUrl, MethodNotAllowed
from .gateway import Gateway, RequestSession
from .header_filter import browser_response_headers, forwardable_request_headers
from .live_socket import LiveSocketCall
from .metrics import PROXIED
from .request_body import parse_json, read_body, read_whole_body
from .session import Session
from .transport import ApiAnswer, TransportError, transport_problem

log = logging.getLogger("bffgate")

PROXY_PREFIX = "/api/rest/proxy/"
CUSTOMFETCH_PATH = "/api/rest/customfetch"
PROXY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ENVELOPE_OVERHEAD = 64 * 1024  # customfetch: the JSON around the body

# Counter children resolved once: .labels() takes a lock and a dict lookup on every call.
PROXIED_BY_CLASS = {n: PROXIED.labels(f"{n}xx") for n in range(1, 6)}
PROXIED_OTHER = PROXIED.labels("other")

GatewayGetter = Callable[[], Awaitable[Gateway]]
ErrorHandler = Callable[[HTTPConnection, Exception], Awaitable[Response]]
CallBuilder = Callable[["ProxiedCall", Request, Gateway], Awaitable[ApiCall]]


class ProxiedCall:
    """ASGI middleware answering the proxy routes; every other request goes on to ``app``."""

    def __init__(self, app: ASGIApp, *, gateway: GatewayGetter, on_error: ErrorHandler) -> None:
        self.app = app
        self.gateway = gateway
        self.on_error = on_error
        self.live_socket = LiveSocketCall(gateway, on_error, relative_proxy_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        build = route(scope) if scope["type"] == "http" else None
        if build is None:
            if scope["type"] == "websocket" and routed_path(scope).startswith(PROXY_PREFIX):
                await self.live_socket(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        answer: ASGIApp
        try:
            answer = await self.answer(request, build)
        except Exception as exc:
            if not isinstance(exc, BffError):
                log.exception("unexpected error on %s", scope["path"][:200])
            answer = await self.on_error(request, exc)
        await answer(scope, receive, send)

    async def answer(self, request: Request, build: CallBuilder) -> StreamedAnswer:
        if build is refuse_method:  # before the session: as the router would answer
            raise MethodNotAllowed()
        gateway = await self.gateway()
        tracked = await gateway.open(request.cookies, request.scope)
        call = await build(self, request, gateway)
        return await self.send(gateway, request, tracked, call)

    # -- 3. the call, from a path or from an envelope ----------------------------------------------

    async def from_path(self, request: Request, gateway: Gateway) -> ApiCall:
        scope = request.scope
        url = gateway.api_urls.join(relative_proxy_path(scope), scope["query_string"].decode("latin-1"))
        settings = gateway.settings
        body = await read_body(
            scope["method"],
            scope["headers"],
            request.receive,
            max_bytes=settings.bff_max_body_bytes,
            replay_bytes=settings.bff_replay_bytes,
        )
        return ApiCall(scope["method"], url, forwardable_request_headers(scope["headers"]), body)

    async def from_envelope(self, request: Request, gateway: Gateway) -> ApiCall:
        limit = gateway.settings.bff_max_body_bytes
        scope = request.scope
        envelope = await read_whole_body(
            scope["method"], scope["headers"], request.receive, limit + ENVELOPE_OVERHEAD
        )
        return parse_envelope(parse_json(envelope), gateway.api_urls, max_body_bytes=limit)

    # -- 4. and 5. sending, the one retry, the answer ----------------------------------------------

    async def send(
        self, gateway: Gateway, request: Request, tracked: RequestSession, call: ApiCall
    ) -> StreamedAnswer:
        """Call the API with the session's token; on 401, refresh once and retry once if we can.

        The cookies are built (sealed) before each call: a session that no longer fits them fails
        while no answer of the API is held open. After the answer they are only checked again for a
        logout that came meanwhile (``Gateway.still_live``), not sealed a second time.
        """
        cookies = request.cookies
        session = await gateway.fresh(tracked)
        set_cookies = gateway.cookies_for(cookies, tracked)
        answer = await _send(gateway, call, session)
        if answer.status == 401 and call.body.replayable:
            answer.release()
            session = await gateway.force_refresh(tracked, rejected_access_token=session.access_token)
            set_cookies = gateway.cookies_for(cookies, tracked)
            answer = await _send(gateway, call, session)
        try:
            PROXIED_BY_CLASS.get(answer.status // 100, PROXIED_OTHER).inc()
            # The session changed: its cookies, unless it was logged out meanwhile (Redis).
            set_cookies = await gateway.still_live(tracked, set_cookies)
            headers = browser_response_headers(
                answer,
                pass_cookies=gateway.settings.bff_pass_upstream_cookies,
                set_cookies=set_cookies,
                bodiless=call.method == "HEAD" and request.method != "HEAD",
            )
        except BaseException:
            answer.close()
            raise
        # A browser that stops reading gets as long as the API would to answer, then it is dropped.
        return StreamedAnswer(
            answer, headers, request.method, write_timeout=gateway.settings.bff_upstream_timeout
        )


async def _send(gateway: Gateway, call: ApiCall, session: Session) -> ApiAnswer:
    headers = [*call.headers, ("Authorization", f"Bearer {session.access_token}")]
    body = call.body
    try:
        return await gateway.transport.request(
            call.method,
            call.url.raw_path_qs,
            headers,
            body.payload(),
            content_length=None if body.replayable else body.length,
            partition=session.sid,  # one session's exchanges never share a connection with another's
        )
    except TransportError as exc:  # the one place transport failures become problem answers
        raise transport_problem(exc) from exc


# -- 1. routing ------------------------------------------------------------------------------------


def route(scope: Scope) -> CallBuilder | None:
    """How to build the call for this request, or None when it is not a proxied call."""
    path = routed_path(scope)
    if path.startswith(PROXY_PREFIX):
        return ProxiedCall.from_path if scope["method"] in PROXY_METHODS else refuse_method
    if path == CUSTOMFETCH_PATH:
        return ProxiedCall.from_envelope if scope["method"] == "POST" else refuse_method
    return None


def routed_path(scope: Scope) -> str:
    """The path the gateway routes on: the decoded path after the mount's ``root_path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):  # mounted under a prefix
        path = path[len(root) :]
    return path


async def refuse_method(_: ProxiedCall, request: Request, gateway: Gateway) -> ApiCall:
    """A proxy path with a method it does not take (405, checked before the session)."""
    raise MethodNotAllowed()


def relative_proxy_path(scope: Scope) -> str:
    """The path after ``/api/rest/proxy/`` exactly as the browser encoded it.

    Routing chose this call on the decoded path (after the mount's ``root_path``); the raw path must
    say the same: the prefix written as is, right after what decodes to the root path. Else the raw
    path holds the prefix somewhere else (``/api/rest/prox%79/x/api/rest/proxy/admin``), and taking
    that occurrence would forward another path than the one routed: 400.
    """
    raw = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    root: str = scope.get("root_path", "")
    if not scope["path"].startswith(root):  # a server whose paths leave out the root path
        root = ""
    index = path.find(PROXY_PREFIX)
    while index >= 0 and unquote(path[:index]) != root:
        index = path.find(PROXY_PREFIX, index + 1)
    if index < 0:  # the prefix itself was percent-encoded (/api/rest/%70roxy/...): not a path we route
        raise InvalidUrl("the proxy prefix must not be percent-encoded")
    return path[index + len(PROXY_PREFIX) :]

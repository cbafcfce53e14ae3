"""The proxied call, top to bottom: ``/api/rest/proxy/…``, the routes' prefixes, ``POST /api/rest/customfetch``;
and the forward-auth decision (``/api/auth/forward``), served by the same layer.

``ProxiedCall`` is a plain ASGI middleware (Starlette's idiom), installed as the innermost of the
app's middleware: the user's middleware (``app.add_middleware``) sees these requests like any other,
while Starlette's exception middleware and router, which cost more per request than the gateway's own
work (bench/README.md), are skipped. One call:

1. ``handler``: the default proxy path, the customfetch path, the forward-auth path or a configured
   route's prefix (``routes.RouteTable``)? (anything else goes on to the router);
2. ``Gateway.open``: the session from the cookies, then the CSRF check (routes whose token rule is
   not ``user``: the CSRF check, then the session if there is one);
3. ``build``: the API call from the path (``api_url``, ``header_filter``, ``request_body``) or from
   the envelope (``customfetch``, always the default route), plus the route's claim and forwarded
   headers;
4. ``send``: the route's credentials (the user's fresh token, the route's client token or none), the call through the origin's ``ApiTransport``, and once, on a 401 with a
   replayable body, a forced refresh (or a new client token) and the same call again;
5. the answer: the API's status and filtered headers, the session's new cookies if it changed, the
   body streamed (``answer_stream``).

A forward-auth decision is ``ForwardAuth.decide`` instead of 2. to 5. Whatever the handler, any
error becomes a problem answer through the app's one error handler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from urllib.parse import unquote

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import tracing
from .answer_stream import StreamedAnswer
from .customfetch import ApiCall, parse_envelope
from .errors import BffError, InvalidUrl, MethodNotAllowed
from .forward_auth import FORWARD_AUTH_PATH
from .gateway import Gateway, RequestSession
from .header_filter import browser_response_headers, forwardable_request_headers
from .live_socket import LiveSocketCall
from .logs import request_fields
from .metrics import PROXIED, UPSTREAM_DURATION
from .request_body import parse_json, read_body, read_whole_body
from .requestlog import REQUEST_ID_KEY, ROUTE_NAME_KEY
from .route_credentials import renewed_token, route_headers, route_token, without_claim_headers
from .routes import DEFAULT_PREFIX, ApiRoute, RouteTable
from .transport import SINGLE_USE, ApiAnswer, ApiTransport, TransportError, transport_problem

log = logging.getLogger("bffgate")

PROXY_PREFIX = DEFAULT_PREFIX
CUSTOMFETCH_PATH = "/api/rest/customfetch"
PROXY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ENVELOPE_OVERHEAD = 64 * 1024  # customfetch: the JSON around the body

# Counter children resolved once: .labels() takes a lock and a dict lookup on every call.
PROXIED_BY_CLASS = {n: PROXIED.labels(f"{n}xx") for n in range(1, 6)}
PROXIED_OTHER = PROXIED.labels("other")

GatewayGetter = Callable[[], Awaitable[Gateway]]
ErrorHandler = Callable[[HTTPConnection, Exception], Awaitable[Response]]
CallBuilder = Callable[["ProxiedCall", Request, Gateway, ApiRoute], Awaitable[ApiCall]]
NO_ROUTES = RouteTable(())
# What answers a request this layer serves: the ASGI answer, or an exception for ``on_error``.
Handler = Callable[[Request], Awaitable[ASGIApp]]


class ProxiedCall:
    """ASGI middleware answering the proxy routes and, given ``decide``, the forward-auth decisions;
    every other request goes on to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gateway: GatewayGetter,
        on_error: ErrorHandler,
        routes: RouteTable = NO_ROUTES,
        decide: Handler | None = None,
    ) -> None:
        self.app = app
        self.gateway = gateway
        self.on_error = on_error
        self.routes = routes
        self.decide = decide
        self.live_socket = LiveSocketCall(gateway, on_error, relative_proxy_path)
        # Bound once: no coroutine frame of our own between the routing and the call.
        self.proxy_path: Handler = partial(self.answer, build=ProxiedCall.from_path, api_route=None)
        self.customfetch: Handler = partial(self.answer, build=ProxiedCall.from_envelope, api_route=None)
        self._send = _traced_send if tracing.enabled() else _send  # decided once: no span code when off

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handler(scope) if scope["type"] == "http" else None
        if handler is None:
            if scope["type"] == "websocket" and await self.socket(scope, receive, send):
                return
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        answer: ASGIApp
        try:
            answer = await handler(request)
        except Exception as exc:
            if not isinstance(exc, BffError):
                log.exception("unexpected error on %s", scope["path"][:200])
            answer = await self.on_error(request, exc)
        await answer(scope, receive, send)

    # -- 1. routing --------------------------------------------------------------------------------

    def handler(self, scope: Scope) -> Handler | None:
        """What answers this request, or None when the router does (a method a path does not take
        is refused before the session, as the router would). The default route is tested first: its
        cost never depends on the route table."""
        path = app_path(scope)
        method: str = scope["method"]
        if path.startswith(PROXY_PREFIX):
            return self.proxy_path if method in PROXY_METHODS else refuse_method
        if path == CUSTOMFETCH_PATH:
            return self.customfetch if method == "POST" else refuse_method
        if path == FORWARD_AUTH_PATH and self.decide is not None:
            # Every proxy method: Envoy's ext_authz asks with the browser's own (and no body).
            return self.decide if method in PROXY_METHODS else refuse_method
        if self.routes:
            api_route = self.routes.match(path)
            if api_route is not None:
                if method not in PROXY_METHODS:
                    return refuse_method
                scope[ROUTE_NAME_KEY] = api_route.prefix  # the request's route in logs and metrics
                return partial(self.answer, build=ProxiedCall.from_path, api_route=api_route)
        return None

    async def socket(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """A WebSocket handshake on the default route or a configured route's prefix: relayed to that
        route's API (``live_socket``; True). Any other WebSocket goes on to the router (False)."""
        path = app_path(scope)
        if path.startswith(PROXY_PREFIX):
            await self.live_socket(scope, receive, send, None)
            return True
        api_route = self.routes.match(path) if self.routes else None
        if api_route is None:
            return False
        scope[ROUTE_NAME_KEY] = api_route.prefix  # the socket's route in logs and metrics
        await self.live_socket(scope, receive, send, api_route)
        return True

    # -- 2. the session, then the call -------------------------------------------------------------

    async def answer(
        self, request: Request, build: CallBuilder, api_route: ApiRoute | None
    ) -> StreamedAnswer:
        """``api_route`` None: the default route (``REMOTE_API``, token rule ``user``)."""
        gateway = await self.gateway()
        tracked: RequestSession | None
        if api_route is None:
            api_route = gateway.default_route
            tracked = await gateway.open(request.cookies, request.scope)
        elif api_route.rule == "user":
            tracked = await gateway.open(request.cookies, request.scope)
        else:
            tracked = await gateway.open_optional(request.cookies, request.scope)
        call = await build(self, request, gateway, api_route)
        request_id = request.scope.get(REQUEST_ID_KEY)
        if request_id is not None:  # the API logs the request under the gateway's id (requestlog)
            call.headers.append(("X-Request-ID", request_id.decode()))
        return await self.send(gateway, request, tracked, call, api_route)

    # -- 3. the call, from a path or from an envelope ----------------------------------------------

    async def from_path(self, request: Request, gateway: Gateway, api_route: ApiRoute) -> ApiCall:
        scope = request.scope
        relative = relative_proxy_path(scope, api_route.prefix)
        url = api_route.urls.join(relative, scope["query_string"].decode("latin-1"))
        settings = gateway.settings
        body = await read_body(
            scope["method"],
            scope["headers"],
            request.receive,
            max_bytes=settings.bff_max_body_bytes,
            replay_bytes=settings.bff_replay_bytes,
        )
        headers = forwardable_request_headers(scope["headers"])
        if gateway.routes.claim_header_names:
            headers = without_claim_headers(gateway, headers)
        return ApiCall(scope["method"], url, headers, body)

    async def from_envelope(self, request: Request, gateway: Gateway, api_route: ApiRoute) -> ApiCall:
        limit = gateway.settings.bff_max_body_bytes
        scope = request.scope
        envelope = await read_whole_body(
            scope["method"], scope["headers"], request.receive, limit + ENVELOPE_OVERHEAD
        )
        call = parse_envelope(parse_json(envelope), gateway.api_urls, max_body_bytes=limit)
        call.headers[:] = without_claim_headers(gateway, call.headers)
        return call

    # -- 4. and 5. sending, the one retry, the answer ----------------------------------------------

    async def send(
        self,
        gateway: Gateway,
        request: Request,
        tracked: RequestSession | None,
        call: ApiCall,
        api_route: ApiRoute,
    ) -> StreamedAnswer:
        """Call the API with the route's credentials; on 401, renew them once and retry once if we can.

        The cookies are built (sealed) before each call: a session that no longer fits them fails
        while no answer of the API is held open. After the answer they are only checked again for a
        logout that came meanwhile (``Gateway.still_live``), not sealed a second time.
        """
        cookies = request.cookies
        if api_route.claim_headers or api_route.forward_client_address:
            call.headers.extend(route_headers(gateway, api_route, tracked, request.scope))
        transport = gateway.transports[api_route.pool]
        # No byte of one session's exchanges reaches another's, whatever the route; callers without a
        # session cannot be told apart, so each such call gets a connection of its own.
        partition = tracked.loaded.sid if tracked is not None else SINGLE_USE
        token = await route_token(gateway, api_route, tracked)
        set_cookies = gateway.cookies_for(cookies, tracked) if tracked is not None else []
        answer = await self._send(transport, call, token, partition)
        if answer.status == 401 and call.body.replayable and token is not None:
            answer.release()
            token = await renewed_token(gateway, api_route, tracked, token)
            set_cookies = gateway.cookies_for(cookies, tracked) if tracked is not None else []
            answer = await self._send(transport, call, token, partition)
        try:
            PROXIED_BY_CLASS.get(answer.status // 100, PROXIED_OTHER).inc()
            if set_cookies and tracked is not None:  # changed: unless logged out meanwhile (Redis)
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


async def _send(transport: ApiTransport, call: ApiCall, token: str | None, partition: object) -> ApiAnswer:
    headers = call.headers if token is None else [*call.headers, ("Authorization", f"Bearer {token}")]
    body = call.body
    started = time.perf_counter_ns()
    try:
        answer = await transport.request(
            call.method,
            call.url.raw_path_qs,
            headers,
            body.payload(),
            content_length=None if body.replayable else body.length,
            partition=partition,  # one session's exchanges never share a connection with another's
        )
    except TransportError as exc:  # the one place transport failures become problem answers
        raise transport_problem(exc) from exc
    # Until the answer's head: the body streams to the browser at the browser's pace.
    elapsed = time.perf_counter_ns() - started
    UPSTREAM_DURATION.child("", answer.status).observe(elapsed / 1e9)
    fields = request_fields()
    if fields is not None:  # the request's log line
        fields["upstream_status"] = answer.status
        fields["upstream_ns"] = elapsed
    return answer


async def _traced_send(
    transport: ApiTransport, call: ApiCall, token: str | None, partition: object
) -> ApiAnswer:
    """``_send`` in a client span (used instead of it when tracing is on at start-up)."""
    with tracing.span(f"upstream {call.method}", kind="client", http__request__method=call.method) as span:
        headers = [*call.headers]  # not into call.headers: a retry would send them twice
        tracing.inject(headers)  # W3C traceparent of this span: the API joins the trace
        answer = await _send(transport, replace(call, headers=headers), token, partition)
        tracing.set_attributes(span, http__response__status_code=answer.status)
    return answer


# -- paths -----------------------------------------------------------------------------------------


def app_path(scope: Scope) -> str:
    """The request's path inside the app: without the mount's prefix (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):  # mounted under a prefix
        path = path[len(root) :]
    return path


async def refuse_method(request: Request) -> ASGIApp:
    """A path of this layer with a method it does not take (405, checked before the session)."""
    raise MethodNotAllowed()


def relative_proxy_path(scope: Scope, prefix: str = PROXY_PREFIX) -> str:
    """The path after ``prefix`` (``/api/rest/proxy/`` or a route's) exactly as the browser encoded it.

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
    index = path.find(prefix)
    while index >= 0 and unquote(path[:index]) != root:
        index = path.find(prefix, index + 1)
    if index < 0:  # the prefix itself was percent-encoded (/api/rest/%70roxy/...): not a path we route
        raise InvalidUrl("the proxy prefix must not be percent-encoded")
    return path[index + len(prefix) :]

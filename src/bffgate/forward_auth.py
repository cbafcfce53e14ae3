"""Forward-auth: a front proxy (nginx, Caddy, Traefik, Envoy) asks whether a request may go on.

``GET /api/auth/forward`` is the front proxy's subrequest. It carries the browser's ``Cookie``,
``Origin``, ``X-CSRF``, ``Sec-Fetch-Mode`` and ``Accept``, and the original method and URI in
``X-Original-Method``/``X-Original-URI`` (nginx) or ``X-Forwarded-Method``/``X-Forwarded-Uri``
(Caddy, Traefik). The rules are the built-in proxy's: a session, a fresh token (single-flight
refresh), and X-CSRF plus an allowed Origin for state-changing methods. With routes (``ROUTES``),
the original URI's route decides as on the proxy: ``user`` (and no route) as above; ``user-or-none``
the user's token with a session, no ``Authorization`` without; ``client`` the route's
client-credentials token (``Gateway.client_token``); ``none`` no ``Authorization``. The answer:

- 200 with ``Authorization: Bearer …`` for the proxy to put on the upstream request, the rotated
  session cookies (``Set-Cookie``, and numbered copies ``X-Bffgate-Set-Cookie-N`` for nginx, whose
  ``auth_request_set`` only sees a header's first line), and how long the decision may be cached;
- the proxy's problems otherwise (401, 403 ``csrf_failed``, 503 ``refresh_unavailable``), or for a
  page navigation without a session, the 302 to the login page with the original URI as ``returnTo``.

The decision may be cached by the front proxy for at most ``BFF_FORWARD_AUTH_CACHE_SECONDS`` and
never past the point where the token (the user's or the route's client token) would be refreshed; a
decision that rotated cookies is not cacheable. The cache key must hold everything the decision reads
(``DECISION_CACHE_KEY_PARTS``; with routes ``ROUTED_CACHE_KEY_PARTS``, the URI's path too).

Without a cache every request through the front proxy costs one decision, so it is served by the
innermost layer (``proxied_call.ProxiedCall``, past Starlette's router) and a "yes" is written
straight to ASGI (``Decision``): the cookies are parsed once, no framework response is built.
"""

from __future__ import annotations

import math
import re
import time
from typing import NamedTuple
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .api_target import ApiTarget
from .csrf import verify_csrf
from .errors import BffError, InvalidRequest, SessionExpired, Unauthenticated
from .gateway import Gateway, RequestSession
from .header_filter import header_value
from .navigation import is_navigation, login_redirect_location
from .problems import NO_STORE, error_answer
from .routes import ApiRoute
from .runtime import Runtime
from .session import Session

FORWARD_AUTH_PATH = "/api/auth/forward"
# nginx's auth_request_set reads one line of a header: each rotated cookie gets a header of its own.
COOKIE_SLOT_HEADER = "X-Bffgate-Set-Cookie-"
# The request parts a decision depends on; a cached decision is keyed on all of them (and, when
# routes are configured, on the original URI's path too: the route decides which token goes).
DECISION_CACHE_KEY_PARTS = ("method", "Cookie", "X-CSRF", "Origin")
ROUTED_CACHE_KEY_PARTS = (*DECISION_CACHE_KEY_PARTS, "path")
# Methods that change nothing (RFC 9110 9.2.1): no CSRF proof needed, as for a page navigation.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_METHOD = re.compile(r"[A-Z]{1,20}")


class OriginalRequest(NamedTuple):
    """The browser's request the front proxy asks about."""

    method: str
    uri: str


def original_request(request: Request) -> OriginalRequest:
    """Method and URI from nginx's (``X-Original-*``) or Caddy's/Traefik's (``X-Forwarded-*``) headers.

    A proxy sets one family and may pass the other on from the browser: a request that names its
    method (or URI) in both, differently, is refused, so a browser cannot have a POST judged as a GET.
    Without a method header the subrequest's own method is the original one: Envoy's HTTP
    ``ext_authz`` asks with the browser's method (and no body) instead of naming it in a header.
    """
    raw = request.scope["headers"]
    method = _named_once(raw, b"x-original-method", b"x-forwarded-method", "method")
    uri = _named_once(raw, b"x-original-uri", b"x-forwarded-uri", "URI") or "/"
    method = (method or request.method).strip().upper()
    if not _METHOD.fullmatch(method):
        raise InvalidRequest("the original method is not an HTTP method")
    return OriginalRequest(method, uri)


def _named_once(
    raw: list[tuple[bytes, bytes]], nginx_name: bytes, other_name: bytes, what: str
) -> str | None:
    ours, theirs = header_value(raw, nginx_name), header_value(raw, other_name)
    if ours is not None and theirs is not None and ours.strip() != theirs.strip():
        raise InvalidRequest(f"the original {what} is named twice, differently")
    return ours if ours is not None else theirs


def route_path(uri: str) -> str:
    """The original URI's path as the front proxy routes it (percent-decoded, without the query).

    Only a path the proxy cannot read differently is judged by route: with a dot segment or an empty
    one, nginx would route the normalized path (``/api/open/../billing/x`` to ``/api/billing/``)
    while the rule came from another route, so such a URI is refused (400).
    """
    path = unquote(uri.split("?", 1)[0].split("#", 1)[0])
    segments = path.split("/")[1:-1]  # the last one may be empty: a trailing slash
    if (
        not path.startswith("/")
        or any(s in ("", ".", "..") for s in segments)
        or path.endswith(("/.", "/.."))
    ):
        raise InvalidRequest("the original URI's path must be normalized (no //, /./ or /../)")
    return path


def cacheable_seconds(
    session: Session, *, skew: float, cap: int, now: float, target: ApiTarget | None = None
) -> int:
    """How long a "yes" for ``session`` may be reused: never past the point the token it hands over
    (the session's own, or its token for ``target``'s API) is refreshed."""
    expires_at, issued_at = session.access_expires_at, session.access_issued_at
    if target is not None:
        api_token = session.api_tokens[target.key]
        expires_at, issued_at = api_token.expires_at, api_token.issued_at
    refresh_at = expires_at - min(skew, (expires_at - issued_at) / 4)  # as Session.needs_refresh
    return seconds_until(refresh_at, cap=cap, now=now)


def seconds_until(refresh_at: float, *, cap: int, now: float) -> int:
    """A decision's lifetime: at most ``cap``, never past ``refresh_at``."""
    return max(0, min(cap, math.floor(refresh_at - now)))


def decision_headers(
    token: str | None, set_cookies: list[str], cache_seconds: int
) -> list[tuple[bytes, bytes]]:
    """The 200 answer's head: the Bearer token (none: the API gets no Authorization), the rotated
    cookies, the cache lifetime."""
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode("latin-1"))]
    if set_cookies or cache_seconds <= 0:
        # A decision that set cookies is this browser's alone, once: nobody may replay it.
        headers.append((b"cache-control", b"no-store"))
    else:
        # nginx's own lifetime header first: it reads it before Cache-Control and then ignores the
        # latter's "private" (which keeps any other shared cache from storing a Bearer token).
        seconds = str(cache_seconds).encode()
        headers += [(b"x-accel-expires", seconds), (b"cache-control", b"private, max-age=" + seconds)]
    for index, cookie in enumerate(set_cookies):
        value = cookie.encode("latin-1")
        headers += [(b"set-cookie", value), (f"{COOKIE_SLOT_HEADER}{index}".lower().encode(), value)]
    return headers


class Decision:
    """The 200 "yes" as a bare ASGI answer: a head and an empty body, nothing else to build."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": b""})


def allowed(token: str | None, set_cookies: list[str], cache_seconds: int) -> Decision:
    """The "yes": with ``token`` as the Bearer for the API, or with no Authorization."""
    return Decision([(b"content-length", b"0"), *decision_headers(token, set_cookies, cache_seconds)])


class ForwardAuth:
    """The ``GET /api/auth/forward`` endpoint (every method: Envoy asks with the browser's)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings

    async def decide(self, request: Request) -> Decision | Response:
        """The decision; a refusal other than "signed out" is raised for the app's error handler."""
        gateway = await self.runtime.gateway()
        original = original_request(request)
        api_route = None
        if gateway.routes:  # a route whose rule needs no session decides differently
            api_route = gateway.routes.match(route_path(original.uri))
            if api_route is not None and api_route.rule != "user":
                return await self._decide_for_route(request, gateway, original, api_route)
        cookies = request.cookies  # parsed once, here
        try:
            tracked = await gateway.open_without_csrf(cookies, request.scope)
        except (Unauthenticated, SessionExpired) as error:
            return self._signed_out(request, gateway, error, original)
        if original.method not in SAFE_METHODS:
            verify_csrf(request.scope["headers"], self.settings.allowed_origins)
        return await self._user_token(request, gateway, original, tracked, api_route)

    async def _decide_for_route(
        self, request: Request, gateway: Gateway, original: OriginalRequest, api_route: ApiRoute
    ) -> Decision | Response:
        """A route that serves callers without a session too (``user-or-none``, ``client``, ``none``),
        as the proxied call does: the CSRF check, then the route's credentials."""
        if original.method not in SAFE_METHODS:
            verify_csrf(request.scope["headers"], self.settings.allowed_origins)
        cap = self.settings.bff_forward_auth_cache_seconds
        if api_route.rule == "client":
            token = await gateway.client_token(api_route)
            refresh_at = gateway.client_token_refresh_at(api_route, token)
            return allowed(token, [], seconds_until(refresh_at, cap=cap, now=time.time()))
        cookies = request.cookies
        tracked = None
        if api_route.rule == "user-or-none":
            tracked = await gateway.optional_without_csrf(cookies, request.scope)
        if tracked is None:  # anonymous: no Authorization at all
            return allowed(None, [], cap)
        return await self._user_token(request, gateway, original, tracked, api_route)

    async def _user_token(
        self,
        request: Request,
        gateway: Gateway,
        original: OriginalRequest,
        tracked: RequestSession,
        api_route: ApiRoute | None,
    ) -> Decision | Response:
        """The "yes" with the user's token for the route's API: the session's own, or for a route that
        names an API (``resource``) the session's token for that API alone, as the proxied call sends."""
        target = api_route.api_target if api_route is not None else None
        token: str | None
        try:
            if target is None:
                token = (await gateway.fresh(tracked)).access_token
            else:
                token = await gateway.token_for(tracked, target)
            set_cookies = await gateway.answer_cookies(request.cookies, tracked)
        except (Unauthenticated, SessionExpired) as error:  # the refresh was refused: signed out
            tracked.ended = True
            return self._signed_out(request, gateway, error, original)
        cache_seconds = cacheable_seconds(
            tracked.current,
            skew=self.settings.bff_refresh_skew,
            cap=self.settings.bff_forward_auth_cache_seconds,
            now=time.time(),
            target=target,
        )
        return allowed(token, set_cookies, cache_seconds)

    def _signed_out(
        self, request: Request, gateway: Gateway, error: BffError, original: OriginalRequest
    ) -> Response:
        """The 401 problem, or for a page load the login redirect back to the original URI.

        Rendered here, not by the app's error handler: that one would judge this subrequest's own
        method and path (always ``GET /api/auth/forward``) instead of the browser's.
        """
        location = None
        if original.method in ("GET", "HEAD") and is_navigation(request.headers):
            location = login_redirect_location(self.settings.bff_login_page, original.uri)
        clear = isinstance(error, SessionExpired) or gateway.store.has_cookies(request.cookies)
        return error_answer(
            error,
            redirect_to=location,
            headers=NO_STORE,
            set_cookies=gateway.store.clear_cookies(request.cookies) if clear else (),
        )

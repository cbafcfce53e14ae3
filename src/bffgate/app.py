"""Routes, error answers and ``create_app``: the ASGI application users run or mount."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .config import Settings, load_settings
from .cookies import CookieJar
from .csrf import verify_csrf
from .customfetch import parse_envelope
from .errors import (
    BffError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    SessionExpired,
    StoreUnavailable,
    Unauthenticated,
    UpstreamError,
)
from .gateway import Gateway, RequestSession
from .metrics import LOGINS, LOGOUTS, PROBLEMS, metrics_endpoint
from .navigation import is_navigation, login_redirect_location
from .problems import problem_response
from .providers import PasswordLogin, create_provider
from .proxy import forwardable_request_headers, read_body
from .session import Session
from .stores import create_store
from .upstream import create_http_client

log = logging.getLogger("bffgate")

PROXY_PREFIX = "/api/rest/proxy/"
PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SMALL_JSON_LIMIT = 64 * 1024  # login credentials and similar small bodies
ENVELOPE_OVERHEAD = 64 * 1024  # customfetch: the JSON around the body


class Runtime:
    """The parts that need a running event loop, built at start-up (or on first use when mounted)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jar = CookieJar(secure=settings.bff_cookie_secure)
        self._gateway: Gateway | None = None
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def gateway(self) -> Gateway:
        if self._gateway is None:
            async with self._lock:  # mounted apps get no lifespan: the first request builds it
                if self._gateway is None:
                    self._http = create_http_client(connect_timeout=self.settings.bff_upstream_timeout)
                    store = create_store(self.settings, self.jar)
                    provider = create_provider(self.settings, self._http)
                    self._gateway = Gateway(self.settings, store, provider, self._http)
        return self._gateway

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._gateway = None
        self._http = None


def create_app(settings: Settings | None = None, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The bffgate ASGI app. ``settings`` default to the environment; ``extra_routes`` come last."""
    settings = settings or load_settings()
    runtime = Runtime(settings)
    endpoints = Endpoints(runtime)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.gateway()
        yield
        await runtime.close()

    routes = [
        Route("/api/auth/login", endpoints.login, methods=["GET", "POST"]),
        Route("/api/auth/callback", endpoints.callback, methods=["GET"]),
        Route("/api/auth/logout", endpoints.logout, methods=["POST"]),
        Route("/api/auth/user", endpoints.user, methods=["GET"]),
        Route("/api/rest/refreshresttokens", endpoints.refresh_tokens, methods=["POST"]),
        Route("/api/rest/customfetch", endpoints.customfetch, methods=["POST"]),
        Route(PROXY_PREFIX + "{path:path}", endpoints.proxy, methods=PROXY_METHODS),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            BffError: endpoints.on_error,
            HTTPException: endpoints.on_http_exception,
            Exception: endpoints.on_error,  # a bug: still a problem answer, never a traceback
        },
    )
    app.state.runtime = runtime
    return app


class Endpoints:
    """The gateway's HTTP endpoints; thin: the logic lives in ``Gateway`` and the modules it uses."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings

    # -- authentication ----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        provider = gateway.provider
        if request.method == "GET" or not hasattr(provider, "login"):
            raise MethodNotAllowed("with BFF_PROVIDER=rest, log in with POST and JSON credentials")
        verify_csrf(request.headers, self.settings.allowed_origins)
        credentials = await read_json(request, SMALL_JSON_LIMIT)
        if not isinstance(credentials, dict):
            raise InvalidRequest("the credentials must be a JSON object")
        password_login: PasswordLogin = provider  # type: ignore[assignment]  # checked just above
        tokens, user = await password_login.login(credentials)
        await self._end_previous_session(request, gateway)
        session = Session.start(tokens, user)
        await gateway.store.save(session)
        LOGINS.inc()
        response = JSONResponse({"user": user})
        return with_cookies(response, gateway.store.set_cookies(session, request.cookies))

    async def callback(self, request: Request) -> Response:
        raise NotFound("the OpenID Connect callback needs BFF_PROVIDER=oidc")

    async def logout(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        session = await gateway.store.load(request.cookies)
        verify_csrf(request.headers, self.settings.allowed_origins)
        if session is not None:
            session = gateway.refresher.newest(session)
            await gateway.provider.revoke(session)
            await gateway.store.delete(session)
            LOGOUTS.inc()
        response = JSONResponse({"message": "Logged out"})
        return with_cookies(response, gateway.store.clear_cookies(request.cookies))

    async def user(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        tracked = await gateway.open(request)
        session = await gateway.fresh(tracked)
        s = self.settings
        body = {
            "user": session.user,
            "expiresAt": int(session.access_expires_at),
            "sessionExpiresAt": int(
                session.session_expires_at(s.bff_session_idle, s.bff_session_absolute, time.time())
            ),
        }
        return with_cookies(JSONResponse(body), gateway.cookies_for(request, tracked))

    async def refresh_tokens(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        tracked = await gateway.open(request)
        session = await gateway.force_refresh(tracked)
        body = {"message": "Tokens refreshed", "expiresAt": int(session.access_expires_at)}
        return with_cookies(JSONResponse(body), gateway.cookies_for(request, tracked))

    # -- the API -----------------------------------------------------------------------------------

    async def proxy(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        tracked = await gateway.open(request)
        url = gateway.api.join(_relative_proxy_path(request), request.scope["query_string"].decode("latin-1"))
        body = await read_body(
            request, max_bytes=self.settings.bff_max_body_bytes, replay_bytes=self.settings.bff_replay_bytes
        )
        headers = forwardable_request_headers(request.scope["headers"])
        return await gateway.forward(request, tracked, request.method, url, headers, body)  # type: ignore[return-value]

    async def customfetch(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        tracked = await gateway.open(request)
        envelope = await read_json(request, self.settings.bff_max_body_bytes + ENVELOPE_OVERHEAD)
        call = parse_envelope(envelope, gateway.api)
        return await gateway.forward(request, tracked, call.method, call.url, call.headers, call.body)  # type: ignore[return-value]

    # -- operations --------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        checks = {
            "store": await _check(gateway.store.ping()),
            "provider": await _check(gateway.provider.ready()),
        }
        ready = all(result == "ok" for result in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
        )

    # -- errors ------------------------------------------------------------------------------------

    async def on_error(self, request: Request, exc: Exception) -> Response:
        error = exc if isinstance(exc, BffError) else BffError()
        PROBLEMS.labels(error.code).inc()
        gateway = await self.runtime.gateway()
        ended = isinstance(error, Unauthenticated | SessionExpired)
        if ended and request.method in ("GET", "HEAD") and is_navigation(request.headers):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response: Response = RedirectResponse(
                login_redirect_location(self.settings.bff_login_page, target), 302
            )
        else:
            response = problem_response(error)
        if ended:
            tracked = _tracked(request)
            if tracked is not None:
                tracked.ended = True
            if isinstance(error, SessionExpired) or gateway.store.has_cookies(request.cookies):
                return with_cookies(response, gateway.store.clear_cookies(request.cookies))
            return response
        tracked = _tracked(request)
        return with_cookies(response, gateway.cookies_for(request, tracked) if tracked else [])

    async def on_http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        error: BffError = MethodNotAllowed() if status == 405 else NotFound() if status == 404 else BffError()
        PROBLEMS.labels(error.code).inc()
        return problem_response(error)

    async def _end_previous_session(self, request: Request, gateway: Gateway) -> None:
        """A login replaces any session the browser had (server-side state included)."""
        previous = await gateway.store.load(request.cookies)
        if previous is not None:
            await gateway.store.delete(previous)


def with_cookies(response: Response, set_cookies: list[str]) -> Response:
    """Add one Set-Cookie header per cookie, and ``no-store`` so no cache keeps them."""
    if set_cookies:
        response.headers["Cache-Control"] = "no-store"
        for cookie in set_cookies:
            response.raw_headers.append((b"set-cookie", cookie.encode("latin-1")))
    return response


def _tracked(request: Request) -> RequestSession | None:
    tracked = getattr(request.state, "bff_session", None)
    return tracked if isinstance(tracked, RequestSession) else None


def _relative_proxy_path(request: Request) -> str:
    """The path after ``/api/rest/proxy/`` exactly as the browser encoded it."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.scope["path"]
    index = path.find(PROXY_PREFIX)
    return path[index + len(PROXY_PREFIX) :] if index >= 0 else ""


async def read_json(request: Request, limit: int) -> Any:
    body = await read_body(request, max_bytes=limit, replay_bytes=limit)
    try:
        return json.loads(body.data or b"")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body must be valid JSON") from None


async def _check(probe: Any) -> str:
    try:
        await probe
    except (BffError, UpstreamError, StoreUnavailable) as exc:
        return exc.detail
    return "ok"


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and ``bffgate serve``: settings from the environment."""
    return create_app(load_settings())

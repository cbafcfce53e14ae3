"""``create_app``: the ASGI application users run or mount."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from . import tracing
from .admin import AdminEndpoints
from .config import Settings, load_settings
from .endpoints import BACKCHANNEL_LOGOUT_PATH, Endpoints
from .errors import BffError
from .forward_auth import ForwardAuth
from .logout_redirect import REDIRECT_PATH
from .metrics import worker_stopped
from .operations import Operations, operations_listener
from .proxied_call import ProxiedCall
from .requestlog import REQUEST_ID_KEY, RequestLog, route_of
from .routes import RouteTable
from .runtime import Runtime

log = logging.getLogger("bffgate")


def create_app(settings: Settings | None = None, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The bffgate ASGI app. ``settings`` default to the environment; ``extra_routes`` come last."""
    settings = settings or load_settings()
    tracing.configure()  # OTEL_TRACES_EXPORTER set and the otel extra installed: spans and traceparent
    runtime = Runtime(settings)
    endpoints = Endpoints(runtime)
    token = settings.bff_metrics_token
    admin_token = settings.bff_admin_token
    operations = Operations(runtime.readiness, token.get_secret_value() if token else None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.gateway()
        operators = AdminEndpoints(runtime.gateway, None, trusted=True).routes()  # their own listener
        async with operations_listener(settings.bff_metrics_address, operations.trusted(), operators):
            yield
        await runtime.close()
        worker_stopped()  # its live gauges leave the other workers' /metrics

    routes = [
        Route("/api/auth/login", endpoints.login, methods=["GET", "POST"]),
        Route("/api/auth/callback", endpoints.callback, methods=["GET"]),
        Route("/api/auth/logout", endpoints.logout, methods=["POST"]),
        Route(REDIRECT_PATH, endpoints.logout_redirect, methods=["GET"]),
        Route("/api/auth/user", endpoints.user, methods=["GET"]),
        *(  # OpenID Connect only: with BFF_PROVIDER=rest nobody sends logout tokens (404)
            [Route(BACKCHANNEL_LOGOUT_PATH, endpoints.backchannel_logout, methods=["POST"])]
            if settings.bff_provider == "oidc"
            else []
        ),
        Route("/api/rest/refreshresttokens", endpoints.refresh_tokens, methods=["POST"]),
        # /api/rest/proxy/…, /api/rest/customfetch, the ROUTES prefixes and the forward-auth
        # decisions (/api/auth/forward): answered by ProxiedCall before the router.
        Route("/healthz", operations.healthz, methods=["GET"]),
        Route("/readyz", operations.readyz, methods=["GET"]),
        # With BFF_METRICS_ADDRESS the metrics are served on that address only.
        *([] if settings.bff_metrics_address else [Route("/metrics", operations.metrics, methods=["GET"])]),
        Route("/bffgate.js", browser_helper("bffgate.js", "text/javascript; charset=utf-8"), methods=["GET"]),
        Route("/bffgate.d.ts", browser_helper("bffgate.d.ts", "text/plain; charset=utf-8"), methods=["GET"]),
        # Session administration on the main listener: only with BFF_ADMIN_TOKEN, and only to it.
        *(AdminEndpoints(runtime.gateway, admin_token.get_secret_value()).routes() if admin_token else []),
        *extra_routes,
    ]
    return LoggedStarlette(
        trust_request_id=settings.bff_trust_request_id,
        routes=routes,
        # The innermost middleware: what users add with app.add_middleware wraps its answers too.
        middleware=[
            Middleware(
                ProxiedCall,
                gateway=runtime.gateway,
                on_error=endpoints.on_error,
                routes=RouteTable.from_settings(settings),
                decide=ForwardAuth(runtime).decide,
            )
        ],
        lifespan=lifespan,
        exception_handlers={
            BffError: endpoints.on_error,
            HTTPException: endpoints.on_http_exception,
            Exception: endpoints.on_error,  # a bug: still a problem answer, never a traceback
        },
    )


class LoggedStarlette(Starlette):
    """Starlette whose outermost layer is the request log (``requestlog.RequestLog``): every answer,
    a 500 of Starlette's own error middleware included, carries the request id and gets its line.
    With tracing on at start-up, the request's span (``tracing.ServerSpans``) comes right inside it;
    off, no tracing layer is installed at all."""

    def __init__(self, *, trust_request_id: bool, **starlette: Any) -> None:
        self._trust_request_id = trust_request_id
        self._traced = tracing.enabled()
        super().__init__(**starlette)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if self._traced:
            app = tracing.ServerSpans(app, route_of=route_of, request_id_key=REQUEST_ID_KEY)
        return RequestLog(app, trust_request_id=self._trust_request_id)


def browser_helper(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving a file of the package's ``static/`` folder (read once, kept in memory)."""
    body = (files("bffgate") / "static" / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return serve


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and ``bffgate serve``: settings from the environment."""
    return create_app(load_settings())

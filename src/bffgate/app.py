"""``create_app``: the ASGI application users run or mount."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .config import Settings, load_settings
from .endpoints import BACKCHANNEL_LOGOUT_PATH, Endpoints
from .errors import BffError
from .forward_auth import ForwardAuth
from .logout_redirect import REDIRECT_PATH
from .operations import Operations, operations_listener
from .proxied_call import ProxiedCall
from .routes import RouteTable
from .runtime import Runtime

log = logging.getLogger("bffgate")


def create_app(settings: Settings | None = None, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The bffgate ASGI app. ``settings`` default to the environment; ``extra_routes`` come last."""
    settings = settings or load_settings()
    runtime = Runtime(settings)
    endpoints = Endpoints(runtime)
    token = settings.bff_metrics_token
    operations = Operations(runtime.gateway, token.get_secret_value() if token else None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.gateway()
        async with operations_listener(settings.bff_metrics_address, operations.trusted()):
            yield
        await runtime.close()

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
        *extra_routes,
    ]
    return Starlette(
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


def browser_helper(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving a file of the package's ``static/`` folder (read once, kept in memory)."""
    body = (files("bffgate") / "static" / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return serve


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and ``bffgate serve``: settings from the environment."""
    return create_app(load_settings())

"""The proxy route, served without the framework's routing and middleware.

``/api/rest/proxy/…`` carries nearly all of a deployment's traffic. Starlette's router and
exception middleware cost more per request than bffgate's own work (see bench/README.md), so
``GatewayApp`` answers that prefix itself — with the very same endpoint and error handler the router
would call — and hands every other path to Starlette.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import BffError

log = logging.getLogger("bffgate")

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class GatewayApp(Starlette):
    """A Starlette app whose hottest route skips routing and middleware."""

    def __init__(
        self,
        *,
        fast_prefix: str,
        fast_methods: frozenset[str],
        fast_endpoint: Endpoint,
        on_error: ErrorHandler,
        outer_layer: Callable[[ASGIApp], ASGIApp] | None = None,
        **starlette: Any,
    ) -> None:
        super().__init__(**starlette)
        self._prefix = fast_prefix
        self._methods = fast_methods
        self._endpoint = fast_endpoint
        self._on_error = on_error
        # Around both paths, fast and routed (e.g. the request log): middleware would miss the fast one.
        self._entry: ASGIApp = outer_layer(self._dispatch) if outer_layer else self._dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self._methods and self._is_fast(scope):
            scope["app"] = self
            request = Request(scope, receive)
            try:
                response = await self._endpoint(request)
            except Exception as exc:
                if not isinstance(exc, BffError):
                    log.exception("unexpected error on %s", scope["path"][:200])
                response = await self._on_error(request, exc)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _is_fast(self, scope: Scope) -> bool:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix
            path = path[len(root) :]
        return path.startswith(self._prefix)

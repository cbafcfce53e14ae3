"""The proxy route, served without the framework's routing and middleware.

``/api/rest/proxy/…`` carries nearly all of a deployment's traffic. Starlette's router and
exception middleware cost more per request than bffgate's own work (see bench/README.md), so
``GatewayApp`` answers that prefix itself — with the very same endpoint and error handler the router
would call — and hands every other path to Starlette. ``fast_exact`` paths (forward-auth's decision
endpoint, asked once per request a front proxy passes on) are answered the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

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
        fast_exact: Mapping[str, Endpoint] | None = None,
        **starlette: Any,
    ) -> None:
        super().__init__(**starlette)
        self._prefix = fast_prefix
        self._methods = fast_methods
        self._endpoint = fast_endpoint
        self._exact = dict(fast_exact or {})
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._fast_endpoint(scope) if scope["type"] == "http" else None
        if endpoint is not None:
            scope["app"] = self
            request = Request(scope, receive)
            try:
                response = await endpoint(request)
            except Exception as exc:
                if not isinstance(exc, BffError):
                    log.exception("unexpected error on %s", scope["path"][:200])
                response = await self._on_error(request, exc)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _fast_endpoint(self, scope: Scope) -> Endpoint | None:
        if scope["method"] not in self._methods:
            return None
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix
            path = path[len(root) :]
        if path.startswith(self._prefix):
            return self._endpoint
        return self._exact.get(path)

"""The request id and the request log line: an ASGI layer around the whole gateway app.

Each HTTP request gets an ``X-Request-ID``: the front proxy's when ``BFF_TRUST_REQUEST_ID`` says it is
trusted (and the value is a plain token), else a fresh one. The id is put in the request's headers —
so the proxy sends it to the API like any other header — and on the answer to the browser; a
browser-sent one is replaced when not trusted (it would let a page write into the operators' logs).

When the answer is done, one ``request`` line is logged at INFO with the route, method, path (never
the query: the OIDC callback's holds the ``code``), status, duration, and what the code on the way
noted with ``logs.annotate`` (upstream status and duration, session fingerprint, user hash, refresh
outcome).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs, tracing
from .metrics import REQUEST_DURATION, status_class

log = logging.getLogger("bffgate.request")

HEADER = b"x-request-id"
# What a trusted id may look like: a token of the usual id alphabets, bounded (a log is not a dump).
ACCEPTABLE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
MAX_LOGGED_PATH = 512

# Path prefixes and the route names they are logged under (first match wins).
ROUTES: tuple[tuple[str, str], ...] = (
    ("/api/rest/proxy/", "proxy"),
    ("/api/rest/customfetch", "customfetch"),
    ("/api/rest/refreshresttokens", "refresh"),
    ("/api/auth/logout/redirect", "logout_redirect"),
    ("/api/auth/backchannel-logout", "backchannel_logout"),
    ("/api/auth/login", "login"),
    ("/api/auth/callback", "callback"),
    ("/api/auth/logout", "logout"),
    ("/api/auth/user", "user"),
    ("/api/auth/forward", "forward"),
    ("/admin/", "admin"),
    ("/healthz", "healthz"),
    ("/readyz", "readyz"),
    ("/metrics", "metrics"),
    ("/bffgate.", "browser_helper"),
)


def route_of(path: str) -> str:
    """The route a path belongs to (a fixed name: paths vary, dashboards need a few values)."""
    for prefix, name in ROUTES:
        if path.startswith(prefix):
            return name
    return "other"


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestLog:
    """Request id in, request id out, one log line per request."""

    def __init__(self, app: ASGIApp, *, trust_request_id: bool = False) -> None:
        self.app = app
        self.trust_request_id = trust_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope["headers"])
        scope["headers"] = [
            *(pair for pair in scope["headers"] if pair[0] != HEADER),
            (HEADER, request_id.encode()),
        ]
        values = logs.begin_request(request_id)
        header = (HEADER, request_id.encode())
        status = 0
        started = time.perf_counter()
        path: str = scope["path"]
        route = route_of(path)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *(pair for pair in message.get("headers", ()) if pair[0].lower() != HEADER),
                    header,
                ]
            await send(message)

        try:
            with tracing.server_span(
                f"{scope['method']} {route}",
                scope["headers"],
                http__request__method=scope["method"],
                http__route=route,
                url__path=path[:MAX_LOGGED_PATH],
                bffgate__request_id=request_id,
            ) as span:
                await self.app(scope, receive, send_with_id)
                tracing.set_attributes(span, http__response__status_code=status or None)
        finally:
            self._log(scope, route, values, status, time.perf_counter() - started)

    def _request_id(self, headers: list[tuple[bytes, bytes]]) -> str:
        if self.trust_request_id:
            for name, value in headers:
                if name == HEADER and ACCEPTABLE_ID.fullmatch(value):
                    return value.decode()
        return new_request_id()

    def _log(self, scope: Scope, route: str, values: dict[str, Any], status: int, duration: float) -> None:
        path: str = scope["path"]
        REQUEST_DURATION.labels(route, status_class(status)).observe(duration)
        if not log.isEnabledFor(logging.INFO):
            return
        line = {
            "route": route,
            "method": scope["method"],
            "path": path[:MAX_LOGGED_PATH],
            "status": status or None,  # None: the browser went away before an answer started
            "duration_ms": round(duration * 1000, 3),
            **{k: v for k, v in values.items() if k != "request_id"},
        }
        log.info("request", extra={"fields": line, "request_id": values["request_id"]})

"""The request id, the request metric and the request log line: the outermost ASGI layer of the app.

Each HTTP request gets an ``X-Request-ID``: the front proxy's when ``BFF_TRUST_REQUEST_ID`` says it is
trusted (and the value is a plain token), else a fresh one. The id is kept in the scope, from where the
proxied call sends it to the API (``header_filter`` drops the browser's own), and put on the answer
to the browser; a browser-sent one is never used when not trusted (it would let a page write into the
operators' logs).

Every request is counted in ``bffgate_request_duration_seconds``. When the ``bffgate.request`` logger
is enabled for INFO (``BFF_LOG_FORMAT=json``, or text at ``BFF_LOG_LEVEL=DEBUG``: see
``logs.logging_config``), one ``request`` line follows each answer with the route, method, path (never
the query: the OIDC callback's holds the ``code``), status, duration, the session's fingerprint and
user hash, and what the code on the way noted with ``logs.annotate`` (upstream status and duration,
refresh outcome).

This layer runs on every request, so it does only what it must: the log line's fields are collected
only when the line will be written, the answer's head gets one header appended (no rebuild), and the
metric's children are resolved once. Tracing is a layer of its own (``tracing.ServerSpans``),
installed only when tracing is on.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs
from .gateway import TRACKED_SESSION_KEY, RequestSession
from .metrics import REQUEST_DURATION

log = logging.getLogger("bffgate.request")

HEADER = b"x-request-id"
REQUEST_ID_KEY = "bffgate.request_id"  # the id, in the scope (an extension key), for inner layers
# What a trusted id may look like: a token of the usual id alphabets, bounded (a log is not a dump).
ACCEPTABLE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
MAX_LOGGED_PATH = 512
# A table route's name (its prefix, e.g. ``/api/billing/``), set in the scope by the layer that routed
# it: as few values as the configured table has.
ROUTE_NAME_KEY = "bffgate.route"

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


def route_of(scope: Scope) -> str:
    """The route a request belongs to (a fixed name: paths vary, dashboards need a few values)."""
    table_route: str | None = scope.get(ROUTE_NAME_KEY)
    if table_route is not None:
        return table_route
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):  # mounted under a prefix
        path = path[len(root) :]
    for prefix, name in ROUTES:
        if path.startswith(prefix):
            return name
    return "other"


# Request ids: a random prefix per process and a counter, unique across processes and restarts
# (64 random bits) at a fraction of the cost of 128 random bits per request (a system call each).
# An id names a request in the logs; it is no secret and authorizes nothing.
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count(1)


def new_request_id() -> bytes:
    return f"{_ID_PREFIX}{next(_ids):012x}".encode()


def _new_prefix() -> None:
    """A forked worker (e.g. gunicorn --preload) must not repeat its parent's ids."""
    global _ID_PREFIX, _ids
    _ID_PREFIX, _ids = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)


class RequestLog:
    """Request id in, request id out, the request's metric and (when enabled) its log line."""

    def __init__(self, app: ASGIApp, *, trust_request_id: bool = False) -> None:
        self.app = app
        self.trust_request_id = trust_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        request_id = self._take_request_id(scope)
        header = (HEADER, request_id)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # The app's answers never carry the header (the API's is dropped by header_filter).
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        # The request's context for the log lines of its events and its own line (see ``logs``).
        values: dict[str, Any] = {"request_id": request_id}
        token = logs.collect(values)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.stop_collecting(token)
            elapsed = time.perf_counter_ns() - started
            route = route_of(scope)
            REQUEST_DURATION.child(route, status).observe(elapsed / 1e9)
            if log.isEnabledFor(logging.INFO):
                _log(scope, route, status, elapsed, values)

    def _take_request_id(self, scope: Scope) -> bytes:
        """The request's id, also kept in the scope (``REQUEST_ID_KEY``) for the call to the API."""
        request_id = b""
        if self.trust_request_id:  # the front proxy's, when it is a plain token
            for name, value in scope["headers"]:
                if name == HEADER:
                    if ACCEPTABLE_ID.fullmatch(value):
                        request_id = value
                    break
        request_id = request_id or new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        return request_id


def _log(scope: Scope, route: str, status: int, elapsed_ns: int, values: dict[str, Any]) -> None:
    line: dict[str, Any] = {
        "route": route,
        "method": scope["method"],
        "path": scope["path"][:MAX_LOGGED_PATH],
        "status": status or None,  # None: the browser went away before an answer started
        "duration_ms": round(elapsed_ns / 1e6, 3),
    }
    tracked = scope.get(TRACKED_SESSION_KEY)
    if isinstance(tracked, RequestSession):  # an authenticated request: whose (one-way names)
        session = tracked.current
        line["session"] = logs.fingerprint(session.sid)
        line["user"] = logs.user_hash(session.user)
    line.update(values)  # what the code on the way noted (a login's new session included)
    upstream_ns = line.pop("upstream_ns", None)
    if upstream_ns is not None:
        line["upstream_ms"] = round(upstream_ns / 1e6, 3)
    log.info("request", extra={"fields": line, "request_id": line.pop("request_id").decode()})

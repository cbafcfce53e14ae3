"""The operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``, and who may read their details.

Anyone who reaches the gateway may ask whether it is alive and ready: ``/healthz`` and the public
``/readyz`` answer say only ``ok`` / ``unavailable`` per check. What went wrong (a Redis error, a
provider's discovery failure) and the Prometheus metrics are operator information, kept from the
public in either of two ways:

* ``BFF_METRICS_ADDRESS`` (``host:port``): a second listener, started with the app, serves the three
  endpoints with every detail; the main listener then has no ``/metrics`` and a public ``/readyz``.
* ``BFF_METRICS_TOKEN``: ``/metrics`` needs ``Authorization: Bearer <token>`` and ``/readyz`` shows the
  details only to that token.

With neither, ``/metrics`` stays open, as before: block it at the front proxy. Failing checks are
logged (once per change) whatever the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .config import listen_address
from .errors import MetricsUnauthorized
from .metrics import registry
from .problems import error_answer
from .readiness import DEGRADED, OK, UNAVAILABLE, verdict

log = logging.getLogger("bffgate")


class Operations:
    """``/healthz``, ``/readyz`` and ``/metrics`` for one app."""

    def __init__(
        self,
        checks: Callable[[], Awaitable[tuple[dict[str, str], bool]]],
        metrics_token: str | None,
        *,
        trusted: bool = False,
    ) -> None:
        self._checks = checks  # the details, and whether coordination is required (see readiness)
        self._token = metrics_token.encode() if metrics_token else None
        self._trusted = trusted  # the operators' own listener (BFF_METRICS_ADDRESS): every detail
        self._last_failures: dict[str, str] = {}

    def trusted(self) -> Operations:
        """The same endpoints for the operators' listener, sharing this one's log state."""
        twin = Operations(self._checks, None, trusted=True)
        twin._last_failures = self._last_failures
        return twin

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: Request) -> Response:
        """200 ``ready`` or ``degraded`` (see ``readiness``), else 503 ``unavailable``."""
        details, coordination_required = await self._checks()
        self._log_changes(details)
        status = verdict(details, coordination_required=coordination_required)
        checks = details if self._holds_token(request) else _public(details, status)
        body = {"status": status, "checks": checks}
        code = 503 if status == UNAVAILABLE else 200
        return JSONResponse(body, code, headers={"Cache-Control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        if self._token is not None and not self._holds_token(request):
            return error_answer(
                MetricsUnauthorized(), headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}
            )
        return Response(
            generate_latest(registry()), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
        )

    def _holds_token(self, request: Request) -> bool:
        if self._trusted:
            return True
        if self._token is None:
            return False
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode("latin-1", errors="replace"), self._token)

    def _log_changes(self, details: dict[str, str]) -> None:
        """The operator's copy of the details: a line when a check starts or stops failing."""
        failures = {name: result for name, result in details.items() if result != OK}
        if failures != self._last_failures:
            if failures:
                log.warning("readiness: %s", "; ".join(f"{n}: {r}" for n, r in failures.items()))
            else:
                log.info("readiness: every check is ok again")
            self._last_failures.clear()  # in place: the operators' twin shares this dict
            self._last_failures.update(failures)


class _SideConfig(uvicorn.Config):
    """uvicorn settings that leave logging as the main server set it up (uvicorn's are process-wide)."""

    def configure_logging(self) -> None:
        pass


class _SideServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the main one (it stops when the app's lifespan ends)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def operations_listener(
    address: str | None, operations: Operations, extra_routes: Sequence[BaseRoute] = ()
) -> AsyncIterator[None]:
    """While the block runs, ``/healthz``, ``/readyz`` and ``/metrics`` with every detail on ``address``.

    The socket is opened with SO_REUSEPORT where the system has it, so each of ``--workers N``
    listens on it (a scrape then reads one worker's counters, as on the main port).
    """
    if address is None:
        yield
        return
    host, port = listen_address(address)
    app = Starlette(
        routes=[
            Route("/healthz", operations.healthz, methods=["GET"]),
            Route("/readyz", operations.readyz, methods=["GET"]),
            Route("/metrics", operations.metrics, methods=["GET"]),
            *extra_routes,
        ]
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = _SideConfig(app, lifespan="off", access_log=False, server_header=False, proxy_headers=False)
    server = _SideServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("operations endpoints (/metrics, /readyz, /healthz) on http://%s", address)
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


def _public(details: dict[str, str], status: str) -> dict[str, str]:
    failed = DEGRADED if status == DEGRADED else UNAVAILABLE  # degraded: only coordination failed
    return {name: OK if result == OK else failed for name, result in details.items()}

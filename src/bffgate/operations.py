"""The operations endpoints: ``/healthz``, ``/readyz`` and ``/metrics``, and who may read their details.

Anyone who reaches the gateway may ask whether it is alive and ready: ``/healthz`` and the public
``/readyz`` answer say only ``ok`` / ``unavailable`` per check. What went wrong (a Redis error, a
provider's discovery failure) and the Prometheus metrics are operator information: with
``BFF_METRICS_TOKEN`` set, ``/metrics`` needs ``Authorization: Bearer <token>`` and ``/readyz`` shows
the details only to that token. Without a token ``/metrics`` stays open, as before: block it at the
front proxy or set the token. Failing checks are logged (once per change) whatever the caller.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import cluster
from .errors import BffError, MetricsUnauthorized
from .gateway import Gateway
from .metrics import PROBLEMS
from .problems import problem_response

log = logging.getLogger("bffgate")

OK = "ok"
UNAVAILABLE = "unavailable"


class Operations:
    """``/healthz``, ``/readyz`` and ``/metrics`` for one app."""

    def __init__(self, gateway: Callable[[], Awaitable[Gateway]], metrics_token: str | None) -> None:
        self._gateway = gateway
        self._token = metrics_token.encode() if metrics_token else None
        self._last_failures: dict[str, str] = {}

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: Request) -> Response:
        gateway = await self._gateway()
        details = {
            "store": await _check(gateway.store.ping()),
            "provider": await _check(gateway.provider.ready()),
        }
        self._log_changes(details)
        ready = all(result == OK for result in details.values())
        checks = details if self._holds_token(request) else _public(details)
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        return JSONResponse(body, 200 if ready else 503, headers={"Cache-Control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        if self._token is not None and not self._holds_token(request):
            error = MetricsUnauthorized()
            PROBLEMS.labels(error.code).inc()
            return problem_response(
                error, headers={"WWW-Authenticate": "Bearer", "Cache-Control": "no-store"}
            )
        return Response(
            generate_latest(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
        )

    def _holds_token(self, request: Request) -> bool:
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
            self._last_failures = failures


def _public(details: dict[str, str]) -> dict[str, str]:
    return {name: OK if result == OK else UNAVAILABLE for name, result in details.items()}


async def _check(probe: Awaitable[Any]) -> str:
    try:
        await probe
    except BffError as exc:
        return exc.detail
    except cluster.ClusterUnavailable:
        return "Redis does not answer (refreshes are coordinated in-process only)"
    return OK

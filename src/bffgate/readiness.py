"""Readiness that tells the truth: every dependency the gateway uses, probed the way it is used.

* ``store``: the session store (Redis with ``BFF_SESSION_STORE=redis``; the cookie store has no server);
* ``provider``: rest — the login *and* the refresh endpoints answer HTTP; oidc — discovery, the JWKS
  and the token endpoint;
* ``api``: ``REMOTE_API`` answers HTTP (any status: only reachability is judged); ``api PREFIX``:
  each route's upstream, the same way;
* ``coordination`` (with ``REDIS_URL``): Redis as the cluster-wide single-flight refresh lock and
  grace window.

Without coordination the gateway still works — each process refreshes on its own — so, with the
cookie store, a coordination failure makes the gateway ``degraded`` (200), not unavailable: a load
balancer keeps it in rotation, operators see it in ``/readyz``, in ``bffgate_coordination_degraded``
and in the log. Any other failing check makes it unavailable (503).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import aiohttp

from . import cluster
from .errors import BffError
from .metrics import COORDINATION_DEGRADED
from .providers.http import call_json

OK = "ok"
UNAVAILABLE = "unavailable"
DEGRADED = "degraded"
PROBE_TIMEOUT = 5.0
COORDINATION_DOWN = "Redis does not answer (refreshes are coordinated in-process only)"


async def reachable(http: aiohttp.ClientSession, url: str, timeout: float = PROBE_TIMEOUT) -> None:
    """``UpstreamError`` unless ``url`` answers HTTP (with any status)."""
    await call_json(http, "GET", url, timeout=timeout)


async def check(probe: Awaitable[Any]) -> str:
    """``ok``, or what went wrong (operator detail: never shown to the public)."""
    try:
        await probe
    except BffError as exc:
        return exc.detail
    except cluster.ClusterUnavailable:
        return COORDINATION_DOWN
    return OK


async def coordination_check(coordination: cluster.ClusterCoordination) -> str:
    """Redis as refresh coordination (the refresher also sets the gauge when it finds Redis gone)."""
    result = await check(coordination.ping())
    COORDINATION_DEGRADED.set(0 if result == OK else 1)
    return result


def verdict(checks: Mapping[str, str], *, coordination_required: bool) -> str:
    """``ready``, ``degraded`` (only coordination fails, and it is optional) or ``unavailable``."""
    failing = {name for name, result in checks.items() if result != OK}
    if not failing:
        return "ready"
    if failing == {"coordination"} and not coordination_required:
        return DEGRADED
    return UNAVAILABLE

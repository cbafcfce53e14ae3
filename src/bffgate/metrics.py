"""Prometheus metrics.

One process: the default registry. ``bffgate serve --workers N``: prometheus-client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, which ``serve`` sets to a fresh directory when unset), so any
worker's ``/metrics`` answers for all of them (see ``registry``).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.registry import REGISTRY

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from a fast proxied call (about a millisecond) to a provider's slow login.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def worker_stopped() -> None:
    """In multiprocess mode, drop this process's live gauges (it no longer serves)."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def registry() -> CollectorRegistry:
    """What ``/metrics`` reports: every worker's metrics in multiprocess mode, else this process's."""
    if not os.environ.get(MULTIPROCESS_DIR):
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
    return collected


REFRESHES = Counter(
    "bffgate_refreshes",
    "Token refresh outcomes: ok (provider called and succeeded), joined (waited for a flight), "
    "grace (served from the grace window), rejected (terminal), failed (transient)",
    ["outcome"],
)
PROXIED = Counter(
    "bffgate_proxied_requests", "Requests sent to the remote API, by upstream status class", ["status"]
)
PROBLEMS = Counter("bffgate_problems", "Problem answers sent to browsers, by code", ["code"])
LOGINS = Counter("bffgate_logins", "Sessions started")
LOGOUTS = Counter("bffgate_logouts", "Sessions ended by logout")
REVOCATION_FAILURES = Counter(
    "bffgate_logout_revocation_failures",
    "Logouts whose call to the API's logout endpoint failed (the session still ended at the gateway): "
    "refused (non-2xx answer), unreachable (no answer), refresh (the expired access token could not "
    "be renewed first)",
    ["reason"],
)
COORDINATION_DEGRADED = Gauge(
    "bffgate_coordination_degraded",
    "1 while Redis does not answer as refresh coordination and refreshes are coordinated in-process "
    "only (REDIS_URL with the cookie store), else 0 (with several workers: the highest)",
    multiprocess_mode="livemax",
)
REQUEST_DURATION = Histogram(
    "bffgate_request_duration_seconds",
    "Requests answered by the gateway, by route (see the request log) and status class",
    ["route", "status"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "bffgate_upstream_duration_seconds",
    "Calls to the remote API (proxied calls, customfetch) until the answer's head, by status class",
    ["status"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_DURATION = Histogram(
    "bffgate_provider_duration_seconds",
    "Calls to the provider (login, refresh), whatever their outcome",
    ["call"],
    buckets=LATENCY_BUCKETS,
)
REDIS_ROUND_TRIPS = Counter(
    "bffgate_redis_round_trips",
    "Requests to Redis (a command or a pipeline: one round trip each), by role: store (the Redis "
    "session store), coordination (refresh lock, grace window, logout tombstones), login_limit",
    ["role"],
)
REDIS_FAILURES = Counter(
    "bffgate_redis_failures",
    "Requests to Redis that failed (no answer or an error), by role (as bffgate_redis_round_trips)",
    ["role"],
)
API_CONNECTIONS = Gauge(
    "bffgate_api_connections",
    "Connections to the remote API open now (in use or idle)",
    multiprocess_mode="livesum",
)


def status_class(status: int | None) -> str:
    """``2xx``…``5xx``, or ``none`` when no answer was sent (the client went away)."""
    return f"{status // 100}xx" if status and 100 <= status < 600 else "none"


class ChildrenByStatus:
    """A metric's children by leading labels and status class, each resolved once: ``labels()``
    takes a lock and builds a key on every call, which the request path should not pay for."""

    def __init__(self, metric: Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, int], Histogram] = {}

    def child(self, label: str, status: int) -> Histogram:
        """The child for ``label`` (empty: the metric has only the status label) and ``status``."""
        key = (label, status // 100 if 100 <= status < 600 else 0)
        child = self._children.get(key)
        if child is None:
            labels = (label, status_class(status)) if label else (status_class(status),)
            child = self._children[key] = self._metric.labels(*labels)
        return child

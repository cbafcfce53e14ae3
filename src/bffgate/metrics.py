"""Prometheus metrics.

One process: the default registry. ``bffgate serve --workers N``: prometheus-client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, which ``serve`` sets to a fresh directory when unset), so any
worker's ``/metrics`` answers for all of them (see ``registry``).
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import HistogramMetricFamily, Metric
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
PROVIDER_DURATION = Histogram(
    "bffgate_provider_duration_seconds",
    "Calls to the provider (login, refresh), whatever their outcome",
    ["call"],
    buckets=LATENCY_BUCKETS,
)
REDIS_ROUND_TRIPS = Counter(
    "bffgate_redis_round_trips",
    "Requests to Redis (a command or a pipeline: one round trip each), by role: store (the Redis "
    "session store), coordination (refresh lock, grace window, logout tombstones, shared client tokens, "
    "probes), login_limit",
    ["role"],
)
REDIS_FAILURES = Counter(
    "bffgate_redis_failures",
    "Requests to Redis that failed (no answer or an error), by role (as bffgate_redis_round_trips)",
    ["role"],
)
API_CONNECTIONS = Gauge(
    "bffgate_api_connections",
    "Connections to the APIs (REMOTE_API and the routes' upstreams) open now (in use or idle)",
    multiprocess_mode="livesum",
)


def status_class(status: int | None) -> str:
    """``2xx``…``5xx``, or ``none`` when no answer was sent (the client went away)."""
    return f"{status // 100}xx" if status and 100 <= status < 600 else "none"


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class RequestLatency:
    """A latency histogram observed on every request, by a leading label (or none) and status class.

    With one process (the default registry) it is a collector of its own whose children are a list
    of counts and a sum: observing costs a ``bisect`` and two additions, where prometheus-client's
    ``Histogram`` takes two locks and walks the buckets in Python — a visible share of a proxied
    call. In multiprocess mode (``--workers N``) it is prometheus-client's ``Histogram``, whose values
    live in the shared files. Either way a child is resolved once per label and status class, and
    the exposition is the same (``_bucket``, ``_count``, ``_sum``).
    """

    def __init__(self, name: str, documentation: str, label: str | None) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = [label, "status"] if label else ["status"]
        self._children: dict[tuple[str, int], Observer] = {}  # (label, status) -> child
        self._tallies: dict[tuple[str, ...], _Tally] = {}
        self._shared: Histogram | None = None
        if os.environ.get(MULTIPROCESS_DIR):
            self._shared = Histogram(name, documentation, self._labels, buckets=LATENCY_BUCKETS)
        else:
            REGISTRY.register(self)

    def child(self, label: str, status: int) -> Observer:
        """The child for ``label`` (ignored without a leading label) and ``status`` (its class)."""
        key = (label, status)  # statuses are few (100..599, 0): no class arithmetic per call
        child = self._children.get(key)
        if child is None:
            values = (label, status_class(status)) if len(self._labels) == 2 else (status_class(status),)
            if self._shared is not None:
                child = self._shared.labels(*values)
            else:
                child = self._tallies.setdefault(values, _Tally())
            self._children[key] = child
        return child

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labels)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, tally in list(self._tallies.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), tally.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            family.add_metric(list(values), buckets, tally.sum)
        yield family


class _Tally:
    """One child of a single-process ``RequestLatency``: a count per bucket (not cumulative), a sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, amount)] += 1  # le: bound >= amount
        self.sum += amount


REQUEST_DURATION = RequestLatency(
    "bffgate_request_duration_seconds",
    "Requests answered by the gateway, by route (see the request log) and status class",
    "route",
)
UPSTREAM_DURATION = RequestLatency(
    "bffgate_upstream_duration_seconds",
    "Calls to the remote API (proxied calls, customfetch) until the answer's head, by status class",
    None,
)
OPEN_SOCKETS = Gauge(
    "bffgate_websockets_open", "WebSockets relayed to the remote API right now", multiprocess_mode="livesum"
)
SOCKETS_CLOSED = Counter(
    "bffgate_websockets_closed",
    "Relayed WebSockets that ended, by why: browser, api (either side closed), session_ended, "
    "message_too_big, too_many (a limit refused it after the handshake), upstream_unavailable, shutdown",
    ["reason"],
)
SOCKETS_REFUSED = Counter(
    "bffgate_websocket_handshakes_refused",
    "WebSocket handshakes answered with an HTTP problem before any API contact, by problem code",
    ["code"],
)

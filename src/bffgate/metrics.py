"""Prometheus metrics (process-local; with several workers each one reports its own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
OPEN_SOCKETS = Gauge("bffgate_websockets_open", "WebSockets relayed to the remote API right now")
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

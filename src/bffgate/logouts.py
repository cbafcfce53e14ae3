"""Tombstones of logged-out sessions: once a logout has answered, nothing brings its session back.

With the cookie store a session is its cookies, and a logout only asks the browser to drop them: a
refresh already in flight for another tab, or the grace window upgrading a copy of older cookies,
could otherwise set fresh cookies afterwards. So a logout records the session id here (and, with
``REDIS_URL``, in Redis for every process: ``cluster.ClusterCoordination.mark_ended``) until the
session could have lived no longer (its absolute lifetime), and the gateway checks it wherever a
session would change or be answered with cookies.

This process's record is bounded (``MAX_TOMBSTONES``, oldest first out) and lost on restart; Redis is
what makes a logout stick across processes and restarts.
"""

from __future__ import annotations

from .bounded import ExpiringKeys

MAX_TOMBSTONES = 100_000  # ~10 MB at most; beyond it the oldest logouts are forgotten first


class Tombstones(ExpiringKeys):
    """Ids of the sessions logged out through this process, each until its session's absolute end
    (a wall-clock time, ``time.time()``)."""

    def __init__(self, max_entries: int = MAX_TOMBSTONES) -> None:
        super().__init__(max_entries)

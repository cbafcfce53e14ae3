"""The way to the provider's end-session endpoint without handing the page an ID token.

RP-initiated logout wants ``id_token_hint``, and the browser has to carry the request. Instead of an
end-session URL with the ID token in it, the logout answer's ``logoutUrl`` is a gateway URL,
``/api/auth/logout/redirect?ref=…``: ``ref`` is the ID token sealed (encrypted, ETLS_REFRESH) for
``REFERENCE_SECONDS``, so the page holds an opaque value it cannot read. The redirect endpoint opens
it once — single use in this process and, with ``REDIS_URL``, across processes — and answers a 302 to
the provider with the hint.
"""

from __future__ import annotations

import logging
import secrets
import time

from .bounded import ExpiringKeys
from .cluster import ClusterCoordination
from .errors import ClusterUnavailable
from .sealing import Sealer

log = logging.getLogger("bffgate")

REDIRECT_PATH = "/api/auth/logout/redirect"
REFERENCE_SECONDS = 120.0  # from the logout answer to the browser following logoutUrl
MAX_REMEMBERED = 10_000  # used references kept in memory (each only until it would expire anyway)


class LogoutReferences:
    """Single-use, short-lived, sealed references to an ID token, for the logout redirect."""

    def __init__(self, secrets_: list[str], cluster: ClusterCoordination | None) -> None:
        self._sealer = Sealer(secrets_, "logout-reference", cache_size=0)
        self._cluster = cluster
        self._used = ExpiringKeys(MAX_REMEMBERED)

    def issue(self, id_token: str) -> str:
        return self._sealer.seal(
            {"it": id_token, "j": secrets.token_urlsafe(16)}, time.time() + REFERENCE_SECONDS
        )

    async def redeem(self, reference: str) -> str | None:
        """The ID token, the first time a valid, unexpired ``reference`` is presented; else None."""
        data = self._sealer.unseal(reference)
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("it"), str)
            or not isinstance(data.get("j"), str)
        ):
            return None
        if not self._used.first_use(data["j"], REFERENCE_SECONDS):
            return None
        if self._cluster is not None:
            try:
                if not await self._cluster.first_use(f"logout-ref {data['j']}", REFERENCE_SECONDS):
                    return None
            except ClusterUnavailable as exc:  # single use in this process still holds
                log.warning("Redis unavailable, logout references are single-use per process: %s", exc)
        return str(data["it"])

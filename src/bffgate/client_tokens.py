"""Client-credentials tokens for ``token = "client"`` routes: the gateway's own identity at an API.

One ``ClientTokens`` per route. Its token is kept in memory (never in a cookie: it is not the user's)
until ``BFF_REFRESH_SKEW`` seconds (at most a quarter of its life) before it expires, then replaced
by a new grant:

* **One grant per process.** Concurrent callers share one flight, run in its own task so that a
  browser leaving never cancels it for the others (as ``refresh.RefreshCoordinator`` does for users).
* **One grant per cluster** when Redis is configured (``REDIS_URL``): the flight takes a Redis lock
  named after the route's client, re-reads the token another process may have stored meanwhile, and
  only then asks the token endpoint; the token is stored in Redis sealed with ``ETLS_ACCESS`` and
  expires there with the token. If Redis is down, the process carries on alone (logged once).
* **A rejected token is not reused**: on a 401 the proxied call asks for a token other than the one
  the API refused, which starts one new grant (shared by every caller that saw the same 401).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from .cluster import ClusterCoordination, ClusterUnavailable
from .errors import UpstreamError
from .providers.http import call_json
from .providers.oidc import parse_token_answer
from .sealing import Sealer
from .session import token_fingerprint

log = logging.getLogger("bffgate.client_tokens")

SEAL_PURPOSE = "client-token"


@dataclass(frozen=True, slots=True)
class ClientToken:
    access_token: str
    issued_at: float
    expires_at: float

    def __repr__(self) -> str:
        return f"ClientToken(expires_at={self.expires_at!r}, token='**********')"

    def refresh_at(self, skew: float) -> float:
        """When it is replaced: min(skew, a quarter of its life) before it expires (as
        ``Session.needs_refresh``: a short-lived token is not replaced on every call)."""
        return self.expires_at - min(skew, (self.expires_at - self.issued_at) / 4)

    def usable(self, skew: float, rejected: str | None, now: float) -> bool:
        """Not the rejected one, and not yet at its refresh point."""
        return self.access_token != rejected and self.refresh_at(skew) > now


@dataclass(frozen=True)
class ClientGrant:
    """How to ask for a token: the endpoint (or how to find it), the client and its scopes."""

    label: str  # the route's prefix, for messages
    token_url: Callable[[], Awaitable[str]]
    client_id: str
    client_secret: str
    scopes: str | None
    auth_method: str  # client_secret_basic or client_secret_post

    def __repr__(self) -> str:
        return f"ClientGrant({self.label!r}, client_id={self.client_id!r}, secret='**********')"

    @property
    def cache_name(self) -> str:
        """Where processes share this client's token: the same client and scopes share one token."""
        return token_fingerprint(f"{self.client_id}\n{self.client_secret}\n{self.scopes or ''}")

    async def fetch(self, http: aiohttp.ClientSession, timeout: float) -> ClientToken:
        """RFC 6749 4.4: one client-credentials grant; ``UpstreamError`` (502) when it fails."""
        form = {"grant_type": "client_credentials", **({"scope": self.scopes} if self.scopes else {})}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.auth_method == "client_secret_post":
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        else:  # both parts form-urlencoded before base64 (RFC 6749 2.3.1)
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        url = await self.token_url()
        answer = await call_json(http, "POST", url, timeout=timeout, form=form, headers=headers)
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        if not answer.ok:
            code = (
                error if isinstance(error, str) and error.isascii() and len(error) < 64 else "no error code"
            )
            raise UpstreamError(
                f"the client-credentials grant for {self.label} was refused ({answer.status}, {code})"
            )
        try:
            tokens = parse_token_answer(answer.body)
        except ValueError as exc:
            raise UpstreamError(
                f"the client-credentials answer for {self.label} is unusable: {exc}"
            ) from None
        now = time.time()
        return ClientToken(tokens.access_token, now, now + tokens.expires_in)


class ClientTokens:
    """The token of one ``client`` route: cached, replaced single-flight (per process, per cluster)."""

    def __init__(
        self,
        grant: ClientGrant,
        http: aiohttp.ClientSession,
        *,
        skew: float,
        timeout: float,
        sealer: Sealer,
        cluster: ClusterCoordination | None = None,
    ) -> None:
        self._grant = grant
        self._http = http
        self._skew = skew
        self._timeout = timeout
        self._sealer = sealer
        self._cluster = cluster
        self._cluster_down = False
        self._token: ClientToken | None = None
        self._flight: asyncio.Task[ClientToken] | None = None
        self.grants = 0  # grants this process asked for (tests, logs)

    async def token(self, rejected: str | None = None) -> str:
        """A token that is not about to expire and is not ``rejected`` (the one an API just refused)."""
        cached = self._token
        if cached is not None and cached.usable(self._skew, rejected, time.time()):
            return cached.access_token
        flight = self._flight
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._fly(rejected))
            flight.add_done_callback(_retrieve_exception)
            self._flight = flight
        return (await asyncio.shield(flight)).access_token

    def refresh_at(self, access_token: str) -> float:
        """When ``access_token`` (one ``token`` returned) is replaced; 0 if it is no longer the held
        one (a forward-auth decision carrying it must not be reused)."""
        held = self._token
        return held.refresh_at(self._skew) if held is not None and held.access_token == access_token else 0.0

    async def _fly(self, rejected: str | None) -> ClientToken:
        try:
            token = None
            if self._cluster is not None:
                try:
                    token = await self._in_cluster(self._cluster, rejected)
                except ClusterUnavailable as exc:
                    if not self._cluster_down:
                        log.warning("Redis unavailable, client tokens are granted per process: %s", exc)
                        self._cluster_down = True
            if token is None:
                token = await self._fetch()
            self._token = token
            return token
        finally:
            self._flight = None

    async def _in_cluster(self, cluster: ClusterCoordination, rejected: str | None) -> ClientToken:
        name = f"client:{self._grant.cache_name}"
        async with cluster.lock(name):
            shared = await self._shared(cluster, name)
            if shared is not None and shared.usable(self._skew, rejected, time.time()):
                return shared  # another process (or an earlier flight) got it: no grant
            token = await self._fetch()
            lifetime = token.expires_at - time.time()
            sealed = self._sealer.seal(
                [token.access_token, token.issued_at, token.expires_at], token.expires_at
            )
            await cluster.share_value(name, sealed, lifetime)
        self._cluster_down = False
        return token

    async def _shared(self, cluster: ClusterCoordination, name: str) -> ClientToken | None:
        sealed = await cluster.shared_value(name)
        opened = self._sealer.unseal(sealed) if sealed is not None else None
        if not isinstance(opened, list) or len(opened) != 3:
            return None
        access, issued_at, expires_at = opened
        return ClientToken(str(access), float(issued_at), float(expires_at))

    async def _fetch(self) -> ClientToken:
        self.grants += 1
        return await self._grant.fetch(self._http, self._timeout)


def _retrieve_exception(task: asyncio.Task[ClientToken]) -> None:
    # A flight whose waiters all left: read its error so that asyncio does not report it.
    if not task.cancelled():
        task.exception()

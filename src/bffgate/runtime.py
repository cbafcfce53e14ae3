"""The gateway's long-lived parts (HTTP clients, Redis, store, provider), built once per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Awaitable, Callable

import aiohttp

from . import cluster, redis_client
from .client_tokens import ClientGrant, ClientTokens
from .config import Settings
from .cookies import CookieJar
from .gateway import Gateway
from .http1 import Http1Pool
from .login_limit import LoginLimiter, create_login_limiter
from .providers import TokenProvider, create_provider
from .providers.http import create_http_client
from .providers.oidc import OidcProvider
from .readiness import check, coordination_check, reachable
from .routes import origin_of, pool_key
from .sealing import Sealer
from .stores import create_store

log = logging.getLogger("bffgate")

DESCRIPTOR_TARGET = 65536  # what `bffgate serve` raises its soft open-files limit to, hard limit allowing


def raise_descriptor_limit() -> None:
    """Raise the soft open-files limit towards the hard one (as Go's runtime does at start-up): each
    session keeps its own API connection, and a default soft limit of 1024 is soon reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = DESCRIPTOR_TARGET if hard == resource.RLIM_INFINITY else min(hard, DESCRIPTOR_TARGET)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: the idle budget copes
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def idle_connection_budget(wanted: int) -> int:
    """``wanted`` idle API connections, or fewer: at most half the open-files limit, so that idle
    connections never starve the browsers' connections of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft // 2:
        return wanted
    log.warning(
        "BFF_UPSTREAM_MAX_IDLE=%d lowered to %d: the open-files limit is %d (raise it with ulimit -n)",
        wanted,
        soft // 2,
        soft,
    )
    return soft // 2


class Runtime:
    """The parts that need a running event loop, built at start-up (or on first use when mounted)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jar = CookieJar(secure=settings.bff_cookie_secure)
        self._gateway: Gateway | None = None
        self._http: aiohttp.ClientSession | None = None
        self._api: Http1Pool | None = None
        self._route_pools: dict[str, Http1Pool] = {}
        self._redis: redis_client.RedisClient | None = None
        self._login_limiter: LoginLimiter | None = None
        self._lock = asyncio.Lock()

    async def gateway(self) -> Gateway:
        if self._gateway is None:
            async with self._lock:  # mounted apps get no lifespan: the first request builds it
                if self._gateway is None:
                    gateway = self._build()
                    if self._redis is not None:
                        await redis_client.warm_up(self._redis)
                    self._gateway = gateway
        return self._gateway

    async def readiness(self) -> tuple[dict[str, str], bool]:
        """Every dependency's check (``readiness``), and whether coordination is required."""
        gateway = await self.gateway()
        if self._http is None:  # only while the app shuts down
            raise RuntimeError("the gateway is closed")
        checks = {
            "store": await check(gateway.store.ping()),
            "provider": await check(gateway.provider.ready()),
            "api": await check(reachable(self._http, self.settings.remote_api)),
        }
        # The routes' APIs too (README "Routes"), probed together: one slow API delays the answer once.
        http = self._http
        routes = self.settings.routes
        results = await asyncio.gather(*(check(reachable(http, route.upstream)) for route in routes))
        checks.update({f"api {route.prefix}": result for route, result in zip(routes, results, strict=True)})
        if gateway.cluster is not None:
            checks["coordination"] = await coordination_check(gateway.cluster)
        return checks, self.settings.bff_session_store == "redis"

    async def login_limiter(self) -> LoginLimiter:
        """The login attempt limits, built with the gateway (they share its Redis client)."""
        await self.gateway()
        if self._login_limiter is None:  # only while the app shuts down
            raise RuntimeError("the gateway is closed")
        return self._login_limiter

    def _build(self) -> Gateway:
        settings = self.settings
        timeout = settings.bff_upstream_timeout
        self._http = create_http_client(connect_timeout=timeout, read_timeout=timeout)
        # One pool per origin (and per origin and idle limit, for routes with their own:
        # ``pool_key``); the idle-connection budget is shared out between them.
        default_idle = settings.bff_stream_idle_timeout
        origins = {origin_of(settings.remote_api): (settings.remote_api, default_idle)}
        for r in settings.routes:
            origins.setdefault(
                pool_key(r.upstream, r.stream_idle_timeout),
                (r.upstream, r.stream_idle_timeout or default_idle),
            )
        max_idle = max(1, idle_connection_budget(settings.bff_upstream_max_idle) // len(origins))
        pools = {
            key: Http1Pool(
                base,
                connect_timeout=timeout,
                read_timeout=timeout,
                stream_idle_timeout=idle,
                max_idle=max_idle,
            )
            for key, (base, idle) in origins.items()
        }
        self._api = pools.pop(origin_of(settings.remote_api))
        self._route_pools = pools
        self._redis = redis_client.connect(settings.redis_url) if settings.redis_url else None
        coordination = None
        if self._redis is not None:
            lease = settings.bff_upstream_timeout + 5.0  # outlives the provider call it protects
            coordination = cluster.ClusterCoordination(
                self._redis, grace_seconds=settings.bff_grace_seconds, lease_seconds=lease
            )
        self._login_limiter = create_login_limiter(
            self._redis,
            window=settings.bff_login_window,
            per_client=settings.bff_login_limit_per_client,
            per_username=settings.bff_login_limit_per_username,
        )
        store = create_store(settings, self.jar, self._redis)
        api_targets = [target for r in settings.routes if (target := r.api_target()) is not None]
        provider = create_provider(settings, self._http, api_targets)
        return Gateway(
            settings,
            store,
            provider,
            self._api,
            coordination,
            transports=dict(self._route_pools),
            client_tokens=client_tokens(settings, provider, self._http, coordination),
        )

    async def close(self) -> None:
        if self._gateway is not None:
            await self._gateway.sockets.close()  # sockets still open: 1001, and no more session checks
            # Before the clients close: the refreshes need them.
            await self._gateway.refresher.finish_flights(self.settings.bff_upstream_timeout)
        if self._http is not None:
            await self._http.close()
        if self._api is not None:
            await self._api.close()
        for pool in self._route_pools.values():
            await pool.close()
        self._route_pools = {}
        if self._redis is not None:
            await redis_client.close(self._redis)
        self._gateway = None
        self._login_limiter = None
        self._http = None
        self._api = None
        self._redis = None


def client_tokens(
    settings: Settings,
    provider: TokenProvider,
    http: aiohttp.ClientSession,
    coordination: cluster.ClusterCoordination | None,
) -> dict[str, ClientTokens]:
    """The token source of each ``client`` route, by prefix (``client_tokens.py``).

    The token endpoint is the route's ``client_token_url``, else the OIDC provider's (discovery);
    the client is the route's, else the OIDC client (config.py checks that one of them is set).
    """
    sealer = Sealer(settings.access_secrets, "client-token")
    sources: dict[str, ClientTokens] = {}
    for route in settings.routes:
        if route.token != "client":
            continue
        secret = route.client_secret or settings.oidc_client_secret
        auth_method = settings.oidc_client_auth_method
        grant = ClientGrant(
            label=route.prefix,
            token_url=_token_url(route.client_token_url, provider),
            client_id=route.client_id or settings.oidc_client_id or "",
            client_secret=secret.get_secret_value() if secret is not None else "",
            scopes=route.scopes,
            auth_method=auth_method if auth_method == "client_secret_post" else "client_secret_basic",
        )
        sources[route.prefix] = ClientTokens(
            grant,
            http,
            skew=settings.bff_refresh_skew,
            timeout=settings.bff_upstream_timeout,
            sealer=sealer,
            cluster=coordination,
        )
    return sources


def _token_url(configured: str | None, provider: TokenProvider) -> Callable[[], Awaitable[str]]:
    async def token_url() -> str:
        if configured is not None:
            return configured
        if not isinstance(provider, OidcProvider):  # config.py requires the URL with the rest provider
            raise RuntimeError("a client route without client_token_url needs BFF_PROVIDER=oidc")
        return (await provider.discovery.metadata()).token_endpoint

    return token_url

"""The session logic every authenticated call shares: which session, which token, when to refresh.

Every authenticated endpoint goes through ``Gateway.open`` (session first, then CSRF); the proxied call
(``proxied_call.py``) then asks for a ``fresh`` session, and for a ``force_refresh`` on a 401. The
session a request ends with is kept in the ASGI scope so that *every* answer — success or problem —
carries the cookies of a session that changed on the way: a rotated refresh token must reach the
browser even when the API call after it fails. Nothing here takes a framework request: the cookies
(a mapping), the raw ASGI headers and the scope are enough.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Scope

from . import tracing
from .api_target import ApiTarget
from .api_tokens import ApiTokens
from .api_url import ApiUrls
from .client_tokens import ClientTokens
from .cluster import ClusterCoordination
from .config import Settings
from .csrf import verify_csrf
from .errors import SessionExpired, SessionTooLarge, Unauthenticated
from .header_filter import header_value
from .live_sockets import LiveSockets
from .logout_redirect import LogoutReferences
from .providers import TokenProvider
from .refresh import RefreshCoordinator
from .routes import DEFAULT_PREFIX, ApiRoute, RouteTable, origin_of
from .session import Session, SessionStore
from .transport import ApiTransport

TRACKED_SESSION_KEY = "bffgate.session"
Cookies = Mapping[str, str]


class RequestSession:
    """The session a request arrived with and the one it leaves with."""

    __slots__ = ("current", "ended", "loaded")

    def __init__(self, loaded: Session) -> None:
        self.loaded = loaded
        self.current = loaded
        self.ended = False

    @property
    def changed(self) -> bool:
        return self.current is not self.loaded


class Gateway:
    """Sessions, CSRF and freshness, shared by every authenticated endpoint."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        provider: TokenProvider,
        transport: ApiTransport,
        cluster: ClusterCoordination | None = None,
        *,
        transports: Mapping[str, ApiTransport] | None = None,
        client_tokens: Mapping[str, ClientTokens] | None = None,
    ) -> None:
        """``transport`` goes to ``REMOTE_API``; ``transports`` to the routes' other origins, and
        ``client_tokens`` are the ``client`` routes' tokens by prefix (``runtime.py`` builds both)."""
        self.settings = settings
        self.store = store
        self.provider = provider
        self.transport = transport
        self.sockets = LiveSockets(
            self.session_stands,
            per_session=settings.bff_ws_max_per_session,
            per_process=settings.bff_ws_max_per_process,
            check_seconds=settings.bff_ws_session_check,
            absolute_seconds=settings.bff_session_absolute,
        )
        self.routes = RouteTable.from_settings(settings)
        self.default_route = ApiRoute(DEFAULT_PREFIX, ApiUrls(settings.remote_api), "user")
        # The connection pool of each route (one per origin, shared by its routes; routes.pool_key).
        self.transports = {origin_of(settings.remote_api): transport, **(transports or {})}
        self._client_tokens = dict(client_tokens or {})
        self.refresher = RefreshCoordinator(
            provider,
            store,
            grace_seconds=settings.bff_grace_seconds,
            absolute_seconds=settings.bff_session_absolute,
            cluster=cluster,
            cluster_required=settings.bff_session_store == "redis",
            on_end=self.sockets.session_ended,
        )
        self.api_tokens = ApiTokens(self.refresher, skew=settings.bff_refresh_skew)
        self.logout_references = LogoutReferences(settings.refresh_secrets, cluster)
        self.cluster = cluster  # refresh coordination (Redis), for readiness checks
        self.api_urls = self.default_route.urls
        self._skew = settings.bff_refresh_skew
        self._traced = tracing.enabled()  # decided once, at start-up

    async def open(self, cookies: Cookies, scope: Scope) -> RequestSession:
        """The request's session (else ``Unauthenticated``), then the CSRF check of its headers."""
        session = await self._live_session(cookies)
        verify_csrf(scope["headers"], self.settings.allowed_origins)
        if self.store.server_side:
            await self.note_seen(session, scope)
        return self._track(session, scope)

    async def open_optional(self, cookies: Cookies, scope: Scope) -> RequestSession | None:
        """For routes that also serve callers without a session: the CSRF check, then the session
        if the browser has a live one (none, a logged-out or unreadable one: ``None``)."""
        verify_csrf(scope["headers"], self.settings.allowed_origins)
        return await self.optional_without_csrf(cookies, scope)

    async def optional_without_csrf(self, cookies: Cookies, scope: Scope) -> RequestSession | None:
        """``open_optional`` for a caller that judges CSRF itself (forward-auth)."""
        if not self.store.has_cookies(cookies):
            return None
        session = await self.store.load(cookies)
        if session is None or self.refresher.ended_here(session.sid):
            return None
        if self.store.server_side:
            await self.note_seen(session, scope)
        return self._track(session, scope)

    async def client_token(self, route: ApiRoute, rejected: str | None = None) -> str:
        """The ``client`` route's access token (``client_tokens``), never ``rejected``."""
        return await self._client_tokens[route.prefix].token(rejected)

    def client_token_refresh_at(self, route: ApiRoute, access_token: str) -> float:
        """When the ``client`` route's ``access_token`` will be replaced (0: not the held one)."""
        return self._client_tokens[route.prefix].refresh_at(access_token)

    async def open_without_csrf(self, cookies: Cookies, scope: Scope) -> RequestSession:
        """``open`` for a caller that judges CSRF itself (forward-auth judges the original request)."""
        session = await self._live_session(cookies)
        if self.store.server_side:
            await self.note_seen(session, scope)
        return self._track(session, scope)

    async def note_seen(self, session: Session, scope: Scope) -> None:
        """The session is in use, from this user agent (session administration lists both)."""
        await self.store.note_seen(session, header_value(scope["headers"], b"user-agent"))

    async def _live_session(self, cookies: Cookies) -> Session:
        if self._traced:
            with tracing.span("session load"):
                session = await self.store.load(cookies)
        else:  # every request comes here: not even a no-op span when tracing is off
            session = await self.store.load(cookies)
        if session is None:
            raise Unauthenticated()
        if self.refresher.ended_here(session.sid):  # a copy of a logged-out session's cookies
            raise SessionExpired("the session was logged out")
        return session

    def _track(self, session: Session, scope: Scope) -> RequestSession:
        tracked = RequestSession(session)
        # In the scope itself (an extension key): ``request.state`` builds an object per request. The
        # request log names the session from here too (``requestlog``).
        scope[TRACKED_SESSION_KEY] = tracked
        return tracked

    async def session_stands(self, session: Session, cookies: Cookies) -> bool:
        """Whether ``session`` (loaded from ``cookies`` a while ago) has not ended since: no logout
        known here or (Redis) anywhere, and, with a server-side store, still stored."""
        if not await self.refresher.is_live(session):
            return False
        if not self.store.server_side:
            return True
        stored = await self.store.load(cookies)
        return stored is not None and stored.sid == session.sid

    async def fresh(self, tracked: RequestSession) -> Session:
        """The newest tokens for this session, refreshed ahead of expiry (single-flight)."""
        session = await self.refresher.current(tracked.current)
        if session.needs_refresh(self._skew):
            session = await self.refresher.refresh(session)
        tracked.current = session
        return session

    async def force_refresh(
        self, tracked: RequestSession, rejected_access_token: str | None = None
    ) -> Session:
        tracked.current = await self.refresher.refresh(
            tracked.current, rejected_access_token=rejected_access_token
        )
        return tracked.current

    async def token_for(self, tracked: RequestSession, target: ApiTarget) -> str:
        """The session's own token for ``target``'s API (``api_tokens.py``), refreshed ahead of expiry."""
        tracked.current, token = await self.api_tokens.fresh(tracked.current, target)
        return token

    async def renew_token_for(self, tracked: RequestSession, target: ApiTarget, rejected: str) -> str:
        """After that API's 401: a newer token for it than ``rejected``."""
        tracked.current, token = await self.api_tokens.renewed(tracked.current, target, rejected)
        return token

    async def answer_cookies(self, cookies: Cookies, tracked: RequestSession) -> list[str]:
        """``cookies_for``, after asking every process (Redis) whether the session was logged out
        meanwhile: only done when there are cookies to set, i.e. after a refresh or grace upgrade."""
        await self._check_live(tracked)
        return self.cookies_for(cookies, tracked)

    async def still_live(self, tracked: RequestSession, sealed: list[str]) -> list[str]:
        """``sealed`` (``cookies_for``'s, built before the API call), unless the session was logged
        out meanwhile: ``answer_cookies`` without sealing the same session again."""
        if not sealed:
            return sealed
        await self._check_live(tracked)
        return [] if tracked.ended or self.refresher.ended_here(tracked.current.sid) else sealed

    async def _check_live(self, tracked: RequestSession) -> None:
        if tracked.changed and not tracked.ended and not await self.refresher.is_live(tracked.current):
            tracked.ended = True

    def cookies_for(self, cookies: Cookies, tracked: RequestSession) -> list[str]:
        """Set-Cookie headers when the session changed during this request, else none.

        ``SessionTooLarge`` when the new tokens do not fit the cookie store's cookies.
        """
        if not tracked.changed or tracked.ended or self.refresher.ended_here(tracked.current.sid):
            return []  # unchanged, or logged out while this request was on its way
        return self.store.set_cookies(tracked.current, cookies)

    async def cookies_for_problem(self, cookies: Cookies, tracked: RequestSession) -> list[str]:
        """Like ``answer_cookies``, for a problem answer: when the tokens do not fit, the cookies that
        keep what does (the rotated refresh token) instead of failing the problem answer too."""
        try:
            return await self.answer_cookies(cookies, tracked)
        except SessionTooLarge as exc:
            return exc.set_cookies

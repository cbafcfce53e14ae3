"""The gateway's request logic: which session, which token, when to refresh, when to retry.

Every authenticated endpoint goes through ``Gateway.open`` (session first, then CSRF) and, when it
talks to the API, ``Gateway.forward``. The session a request ends with is kept in the ASGI scope
so that *every* answer — success or problem — carries the cookies of a session that changed on the
way: a rotated refresh token must reach the browser even when the API call after it fails.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from yarl import URL

from . import tracing
from .cluster import ClusterCoordination
from .config import Settings
from .csrf import verify_csrf
from .errors import SessionExpired, SessionTooLarge, Unauthenticated
from .http1 import Http1Pool, Response
from .logout_redirect import LogoutReferences
from .logs import annotate, fingerprint, user_hash
from .metrics import PROXIED, UPSTREAM_DURATION, status_class
from .providers import TokenProvider
from .proxy import RequestBody, UpstreamBase, UpstreamResponse, browser_response_headers
from .refresh import RefreshCoordinator
from .session import Session, SessionStore

# Counter children resolved once: .labels() takes a lock and a dict lookup on every call.
PROXIED_BY_CLASS = {n: PROXIED.labels(f"{n}xx") for n in range(1, 6)}
PROXIED_OTHER = PROXIED.labels("other")


TRACKED_SESSION_KEY = "bffgate.session"


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
    """Sessions, CSRF, freshness and forwarding, shared by every authenticated endpoint."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        provider: TokenProvider,
        api_client: Http1Pool,
        cluster: ClusterCoordination | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.api_client = api_client
        self.cluster = cluster
        self.refresher = RefreshCoordinator(
            provider,
            store,
            grace_seconds=settings.bff_grace_seconds,
            absolute_seconds=settings.bff_session_absolute,
            cluster=cluster,
            cluster_required=settings.bff_session_store == "redis",
        )
        self.logout_references = LogoutReferences(settings.refresh_secrets, cluster)
        self.api = UpstreamBase(settings.remote_api)
        self._skew = settings.bff_refresh_skew
        self._pass_cookies = settings.bff_pass_upstream_cookies

    async def open(self, request: Request, *, csrf: bool = True) -> RequestSession:
        """The request's session (else ``Unauthenticated``), then the CSRF check."""
        with tracing.span("session load"):
            session = await self.store.load(request.cookies)
        if session is None:
            raise Unauthenticated()
        if self.refresher.ended_here(session.sid):  # a copy of a logged-out session's cookies
            raise SessionExpired("the session was logged out")
        if csrf:
            verify_csrf(request.scope["headers"], self.settings.allowed_origins)
        return self.track(request, session)

    def track(self, request: Request, session: Session) -> RequestSession:
        tracked = RequestSession(session)
        annotate(session=fingerprint(session.sid), user=user_hash(session.user))
        # In the scope itself (an extension key): ``request.state`` builds an object per request.
        request.scope[TRACKED_SESSION_KEY] = tracked
        return tracked

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

    async def answer_cookies(self, request: Request, tracked: RequestSession) -> list[str]:
        """``cookies_for``, after asking every process (Redis) whether the session was logged out
        meanwhile: only done when there are cookies to set, i.e. after a refresh or grace upgrade."""
        if tracked.changed and not tracked.ended and not await self.refresher.is_live(tracked.current):
            tracked.ended = True
        return self.cookies_for(request, tracked)

    def cookies_for(self, request: Request, tracked: RequestSession) -> list[str]:
        """Set-Cookie headers when the session changed during this request, else none.

        ``SessionTooLarge`` when the new tokens do not fit the cookie store's cookies.
        """
        if not tracked.changed or tracked.ended or self.refresher.ended_here(tracked.current.sid):
            return []  # unchanged, or logged out while this request was on its way
        return self.store.set_cookies(tracked.current, request.cookies)

    async def cookies_for_problem(self, request: Request, tracked: RequestSession) -> list[str]:
        """Like ``answer_cookies``, for a problem answer: when the tokens do not fit, the cookies that
        keep what does (the rotated refresh token) instead of failing the problem answer too."""
        try:
            return await self.answer_cookies(request, tracked)
        except SessionTooLarge as exc:
            return exc.set_cookies

    async def forward(
        self,
        request: Request,
        tracked: RequestSession,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        body: RequestBody,
    ) -> UpstreamResponse:
        """Call the API with the session's token; on 401, refresh once and retry once if we can.

        The cookies are built before each call: a session that no longer fits them fails while no
        answer of the API is held open.
        """
        session = await self.fresh(tracked)
        set_cookies = self.cookies_for(request, tracked)
        upstream = await self._send(method, url, headers, body, session)
        if upstream.status == 401 and body.replayable:
            upstream.release()
            session = await self.force_refresh(tracked, rejected_access_token=session.access_token)
            set_cookies = self.cookies_for(request, tracked)
            upstream = await self._send(method, url, headers, body, session)
        try:
            PROXIED_BY_CLASS.get(upstream.status // 100, PROXIED_OTHER).inc()
            if set_cookies:  # the session changed: unless it was logged out meanwhile (Redis)
                set_cookies = await self.answer_cookies(request, tracked)
            browser_headers = browser_response_headers(
                upstream,
                pass_cookies=self._pass_cookies,
                set_cookies=set_cookies,
                bodiless=method == "HEAD" and request.method != "HEAD",
            )
        except BaseException:
            upstream.close()
            raise
        # A browser that stops reading gets as long as the API would to answer, then it is dropped.
        return UpstreamResponse(
            upstream, browser_headers, request.method, write_timeout=self.settings.bff_upstream_timeout
        )

    async def _send(
        self, method: str, url: URL, headers: list[tuple[str, str]], body: RequestBody, session: Session
    ) -> Response:
        authorized = [*headers, ("Authorization", f"Bearer {session.access_token}")]
        started = time.perf_counter()
        with tracing.span(f"upstream {method}", kind="client", http__request__method=method) as span:
            tracing.inject(authorized)  # W3C traceparent: the API's spans join the request's trace
            answer = await self.api_client.request(
                method,
                url.raw_path_qs,
                authorized,
                body.payload(),
                content_length=None if body.replayable else body.length,
                partition=session.sid,  # one session's exchanges never share a connection with another's
            )
            tracing.set_attributes(span, http__response__status_code=answer.status)
        # Until the answer's head: the body streams to the browser at the browser's pace.
        elapsed = time.perf_counter() - started
        UPSTREAM_DURATION.labels(status_class(answer.status)).observe(elapsed)
        annotate(upstream_status=answer.status, upstream_ms=round(elapsed * 1000, 3))
        return answer

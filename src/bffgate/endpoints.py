"""The gateway's HTTP endpoints and the request helpers they share."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .csrf import verify_csrf
from .errors import (
    BackchannelUnsupported,
    BffError,
    InvalidLogoutToken,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    SessionExpired,
    Unauthenticated,
)
from .gateway import TRACKED_SESSION_KEY, Gateway, RequestSession
from .logout_redirect import REDIRECT_PATH
from .logs import annotate, fields, fingerprint, user_hash
from .metrics import LOGINS, LOGOUTS, PROVIDER_DURATION, REVOCATION_FAILURES
from .navigation import is_navigation, login_redirect_location, safe_return_to
from .problems import NO_STORE, error_answer, refusal_answer, with_cookies
from .providers import BackchannelLogout, LoginRefusal, PasswordLogin, RedirectLogin
from .providers.logout_token import REPLAY_WINDOW
from .request_body import parse_json, read_whole_body
from .runtime import Runtime
from .session import Session
from .tokens import visible_claims
from .transaction import MAX_RETURN_TO, LoginTransactions

log = logging.getLogger("bffgate")

BACKCHANNEL_LOGOUT_PATH = "/api/auth/backchannel-logout"
SMALL_JSON_LIMIT = 64 * 1024  # login credentials and similar small bodies


class Endpoints:
    """The gateway's HTTP endpoints; thin: the logic lives in ``Gateway`` and the modules it uses."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.transactions = LoginTransactions(runtime.settings, runtime.jar)  # OIDC login state

    # -- authentication ----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        provider = gateway.provider
        if isinstance(provider, RedirectLogin):
            if request.method != "GET":
                raise MethodNotAllowed("with BFF_PROVIDER=oidc, start the login with GET /api/auth/login")
            return await self._start_redirect_login(request, provider)
        if request.method == "GET" or not isinstance(provider, PasswordLogin):
            raise MethodNotAllowed("with BFF_PROVIDER=rest, log in with POST and JSON credentials")
        verify_csrf(request.scope["headers"], self.settings.allowed_origins)
        credentials = await read_json(request, SMALL_JSON_LIMIT)
        if not isinstance(credentials, dict):
            raise InvalidRequest("the credentials must be a JSON object")
        await self._count_login_attempt(request, credentials)
        with PROVIDER_DURATION.labels("login").time():
            outcome = await provider.login(credentials)
        if isinstance(outcome, LoginRefusal):
            return refusal_answer(outcome.code, outcome.status, outcome.body)
        tokens, user = outcome
        await self._end_previous_session(request, gateway)
        session = Session.start(tokens, user)
        await gateway.store.save(session)
        await gateway.note_seen(session, request.scope)
        _logged_in(session)
        response = JSONResponse({"user": visible_claims(user, self.settings.user_claims)})
        return with_cookies(response, gateway.store.set_cookies(session, request.cookies))

    async def _count_login_attempt(self, request: Request, credentials: dict[str, Any]) -> None:
        """The per-client and per-username limits, before the provider hears of the attempt."""
        client = request.scope.get("client")
        username = credentials.get(self.settings.bff_login_username_field)
        limiter = await self.runtime.login_limiter()
        await limiter.attempt(
            client[0] if client else "unknown", username if isinstance(username, str) else None
        )

    async def callback(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        provider = gateway.provider
        if not isinstance(provider, RedirectLogin):
            raise NotFound("the OpenID Connect callback needs BFF_PROVIDER=oidc")
        cleared = [self.transactions.clear()]  # single-use: gone whatever happens next
        try:
            transaction = self.transactions.take(request.cookies, request.query_params.get("state"))
            with PROVIDER_DURATION.labels("login").time():
                tokens, user = await provider.finish_login(request.query_params, transaction)
        except BffError as error:
            return with_cookies(self._login_problem(request, error), cleared)
        await self._end_previous_session(request, gateway)
        session = Session.start(tokens, user)
        await gateway.store.save(session)
        await gateway.note_seen(session, request.scope)
        _logged_in(session)
        response = RedirectResponse(safe_return_to(str(transaction.get("returnTo") or "/")), 302)
        return with_cookies(response, gateway.store.set_cookies(session, request.cookies) + cleared)

    async def logout(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        session = await gateway.store.load(request.cookies)
        verify_csrf(request.scope["headers"], self.settings.allowed_origins)
        everywhere = await _wants_everywhere(request)
        ended = 0
        if session is not None:
            # A refresh the API's logout needs happens before the tombstone, which stops refreshes.
            revocable = await _ready_for_revocation(gateway, session)
            session = await gateway.refresher.end(revocable or session)  # see RefreshCoordinator.end
            if revocable is not None:
                await gateway.provider.revoke(session)
            await gateway.store.delete(session)
            ended = 1
            if everywhere:
                ended += await gateway.store.delete_all_of_user(session.user)
            LOGOUTS.inc()
            annotate(session=fingerprint(session.sid), user=user_hash(session.user))
            log.info("logout", extra=fields(event="logout", ended_sessions=ended))
        body: dict[str, Any] = {"message": "Logged out", "endedSessions": ended}
        if isinstance(gateway.provider, RedirectLogin):  # the browser goes on to end the provider's session
            body["logoutUrl"] = await self._logout_url(gateway, gateway.provider, session)
        response = JSONResponse(body)
        return with_cookies(response, gateway.store.clear_cookies(request.cookies))

    async def _logout_url(
        self, gateway: Gateway, provider: RedirectLogin, session: Session | None
    ) -> str | None:
        """The end-session URL; when it needs the ID token as a hint, the gateway's redirect to it."""
        url = await provider.end_session_url(None)
        if url is None or session is None or not session.id_token:
            return url
        reference = gateway.logout_references.issue(session.id_token)
        return f"{self.settings.bff_public_url}{REDIRECT_PATH}?{urlencode({'ref': reference})}"

    async def logout_redirect(self, request: Request) -> Response:
        """``GET /api/auth/logout/redirect?ref=…``: 302 to the provider's end-session URL with the hint."""
        gateway = await self.runtime.gateway()
        provider = gateway.provider
        if not isinstance(provider, RedirectLogin):
            raise NotFound("the logout redirect needs BFF_PROVIDER=oidc")
        id_token = await gateway.logout_references.redeem(request.query_params.get("ref", ""))
        url = await provider.end_session_url(id_token) if id_token else None
        if url is None:
            error = InvalidRequest("this logout link is unknown, expired or already used; sign out again")
            return error_answer(error, page=is_navigation(request.headers), headers=NO_STORE)
        return RedirectResponse(url, 302, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})

    async def backchannel_logout(self, request: Request) -> Response:
        """OpenID Connect Back-Channel Logout 1.0: the provider says a user's session there has ended.

        Server to server: no session cookie and no X-CSRF; the signed ``logout_token`` is the
        authentication. 200 once the sessions are gone, 400 ``invalid_logout_token`` (nothing ended),
        501 ``backchannel_unsupported`` with the cookie store (no server-side session to end). Every
        answer is ``no-store``.
        """
        try:
            ended = await self._end_provider_sessions(request)
        except BffError as error:
            log.info(
                "back-channel logout refused: %s",
                error.detail,
                extra=fields(event="backchannel_logout_refused"),
            )
            return error_answer(error, headers=NO_STORE)
        LOGOUTS.inc(ended)
        log.info("back-channel logout", extra=fields(event="backchannel_logout", ended_sessions=ended))
        return JSONResponse({"endedSessions": ended}, headers=NO_STORE)

    async def _end_provider_sessions(self, request: Request) -> int:
        gateway = await self.runtime.gateway()
        provider, store = gateway.provider, gateway.store
        if not isinstance(provider, BackchannelLogout):
            raise NotFound("back-channel logout needs BFF_PROVIDER=oidc")
        if not store.server_side:
            raise BackchannelUnsupported()
        token = await provider.logout_token(await _logout_token_field(request))
        if not await store.first_use_of_logout_token(token.issuer, token.jti, REPLAY_WINDOW):
            raise InvalidLogoutToken("the logout token was used before (its jti is not new)")
        return await store.delete_provider_sessions(token.issuer, sid=token.sid, sub=token.sub)

    async def user(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        tracked = await gateway.open(request.cookies, request.scope)
        session = await gateway.fresh(tracked)
        s = self.settings
        body = {
            "user": visible_claims(session.user, s.user_claims),
            "expiresAt": int(session.access_expires_at),
            "sessionExpiresAt": int(
                session.session_expires_at(s.bff_session_idle, s.bff_session_absolute, time.time())
            ),
        }
        # no-store even without new cookies: a shared cache must never hand one user's data to another
        response = JSONResponse(body, headers={"Cache-Control": "no-store"})
        return with_cookies(response, await gateway.answer_cookies(request.cookies, tracked))

    async def refresh_tokens(self, request: Request) -> Response:
        gateway = await self.runtime.gateway()
        tracked = await gateway.open(request.cookies, request.scope)
        session = await gateway.force_refresh(tracked)
        body = {"message": "Tokens refreshed", "expiresAt": int(session.access_expires_at)}
        response = JSONResponse(body, headers={"Cache-Control": "no-store"})
        return with_cookies(response, await gateway.answer_cookies(request.cookies, tracked))

    # -- errors ------------------------------------------------------------------------------------

    async def on_error(self, request: HTTPConnection, exc: Exception) -> Response:
        """Every error of every endpoint and of the proxied call: the answer, and the session's cookies.

        A session that ended clears its cookies (and a page navigation goes to the login page); any
        other problem still carries the cookies of a session that changed on the way."""
        error = exc if isinstance(exc, BffError) else BffError()
        gateway = await self.runtime.gateway()
        tracked = _tracked(request)
        if not isinstance(error, Unauthenticated | SessionExpired):
            cookies = await gateway.cookies_for_problem(request.cookies, tracked) if tracked else []
            return error_answer(error, set_cookies=cookies)
        if tracked is not None:
            tracked.ended = True
        redirect_to = None
        # (A WebSocket handshake's scope has no method: never a navigation.)
        if request.scope.get("method") in ("GET", "HEAD") and is_navigation(request.headers):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            redirect_to = login_redirect_location(self.settings.bff_login_page, target)
        clear = isinstance(error, SessionExpired) or gateway.store.has_cookies(request.cookies)
        cleared = gateway.store.clear_cookies(request.cookies) if clear else []
        return error_answer(error, redirect_to=redirect_to, set_cookies=cleared)

    async def on_http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        error: BffError = MethodNotAllowed() if status == 405 else NotFound() if status == 404 else BffError()
        return error_answer(error)

    async def _start_redirect_login(self, request: Request, provider: RedirectLogin) -> Response:
        """OIDC: 302 to the provider, the transaction (state, PKCE verifier, nonce) in a Lax cookie."""
        return_to = safe_return_to(request.query_params.get("returnTo"))
        if len(return_to) > MAX_RETURN_TO:  # it would not fit in the transaction cookie
            return_to = "/"
        try:
            url, transaction = await provider.start_login(return_to)
        except BffError as error:
            return self._login_problem(request, error)
        return with_cookies(RedirectResponse(url, 302), [self.transactions.begin(transaction)])

    def _login_problem(self, request: Request, error: BffError) -> Response:
        """A failed OIDC login: an HTML page for a page navigation, else a problem; never a session."""
        log.info("OpenID Connect login failed: %s", error.detail)
        return error_answer(error, page=is_navigation(request.headers))

    async def _end_previous_session(self, request: Request, gateway: Gateway) -> None:
        """A login replaces any session the browser had: ended like a logout, its refresh token revoked."""
        previous = await gateway.store.load(request.cookies)
        if previous is not None and not gateway.refresher.ended_here(previous.sid):
            await gateway.provider.revoke(await gateway.refresher.end(previous))
            await gateway.store.delete(previous)


def _logged_in(session: Session) -> None:
    """A login's metric and log line (the session's fingerprint and user hash, nothing secret)."""
    LOGINS.inc()
    annotate(session=fingerprint(session.sid), user=user_hash(session.user))
    log.info("login", extra=fields(event="login"))


def _tracked(request: HTTPConnection) -> RequestSession | None:
    tracked = request.scope.get(TRACKED_SESSION_KEY)
    return tracked if isinstance(tracked, RequestSession) else None


async def read_json(request: Request, limit: int) -> Any:
    scope = request.scope
    return parse_json(await read_whole_body(scope["method"], scope["headers"], request.receive, limit))


async def _ready_for_revocation(gateway: Gateway, session: Session) -> Session | None:
    """The session with an access token the API's logout endpoint will accept; None when the API has
    already refused the refresh token (nothing is left to revoke).

    An API that wants a valid Bearer at logout refuses an expired one, and its refresh-token family
    would outlive a logout the user saw succeed: so an expired access token is refreshed first. When
    that fails for another reason the revocation goes ahead with what there is (and is counted if
    refused); the session ends here in any case.
    """
    provider = gateway.provider
    if not provider.revokes_with_access_token:
        return session
    if not session.needs_refresh(gateway.settings.bff_refresh_skew):
        return session
    try:
        return await gateway.refresher.refresh(session)
    except SessionExpired:
        return None
    except BffError as error:
        REVOCATION_FAILURES.labels("refresh").inc()
        log.warning("logout: the access token could not be renewed for the API's logout (%s)", error.code)
        return session


async def _logout_token_field(request: Request) -> str:
    """The one ``logout_token`` of a form-encoded back-channel logout request."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("a back-channel logout request is form-encoded")
    body = await read_whole_body(request.method, request.scope["headers"], request.receive, SMALL_JSON_LIMIT)
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the back-channel logout request's form cannot be read") from None
    values = fields.get("logout_token", [])
    if len(values) != 1 or not values[0]:
        raise InvalidRequest("a back-channel logout request has exactly one logout_token")
    return values[0]


async def _wants_everywhere(request: Request) -> bool:
    """``{"everywhere": true}`` in the logout body ends all of the user's sessions (Redis store)."""
    if (
        not request.headers.get("content-length", "0").strip("0")
        and "transfer-encoding" not in request.headers
    ):
        return False
    body = await read_json(request, SMALL_JSON_LIMIT)
    return isinstance(body, dict) and body.get("everywhere") is True

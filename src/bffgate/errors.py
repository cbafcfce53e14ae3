"""The one exception tree of bffgate.

Everything bffgate raises on purpose is a ``BffgateError``. Its three branches say who handles it:
a ``BffError`` is a problem a client sees (HTTP status and a stable problem ``code``), turned into an
RFC 9457 answer by ``problems.error_answer`` in one place; a ``ConfigError`` stops start-up; an
``InternalSignal`` is never an answer by itself: the code that asked decides (refresh again, carry on
in-process, map it to a problem). Library exceptions (aiohttp, redis, joserfc) are mapped to these in
the module that calls the library, and nowhere else (Redis: ``redis_errors.py``).

    BffgateError
    ├── BffError                   a problem answer: status, code, a safe human message
    │   ├── Unauthenticated        401 unauthenticated      no session, or a cookie we cannot open
    │   ├── SessionExpired         401 session_expired      the provider rejected the refresh token
    │   ├── CsrfFailed             403 csrf_failed          no X-CSRF header, or a foreign Origin
    │   ├── InvalidRequest         400 invalid_request      a malformed envelope or JSON body
    │   ├── InvalidUrl             400 invalid_url          a path that would leave REMOTE_API
    │   ├── LoginRejected          400 login_failed         an OpenID Connect callback that must not sign in
    │   ├── PayloadTooLarge        413 payload_too_large
    │   ├── HeadersTooLarge        431 headers_too_large    also the server's own refusal (server.py)
    │   ├── NotFound               404 not_found
    │   ├── MethodNotAllowed       405 method_not_allowed
    │   ├── SessionTooLarge        502 session_too_large    tokens too large for cookies (use Redis)
    │   ├── UpstreamError          502 upstream_unavailable network failure or unusable answer upstream
    │   │   └── UpstreamTimeout    504 upstream_timeout
    │   ├── ApiTokenRefused        403 api_token_refused    the provider grants this session no token for that API
    │   ├── RefreshUnavailable     503 refresh_unavailable  refresh failed transiently; session kept
    │   ├── StoreUnavailable       503 store_unavailable    the session store cannot be reached
    │   ├── InvalidLogoutToken     400 invalid_logout_token a back-channel logout token that must not be trusted
    │   ├── MetricsUnauthorized    401 metrics_unauthorized /metrics without BFF_METRICS_TOKEN as Bearer
    │   ├── TooManyAttempts        429 too_many_attempts    login attempts over the per-client/-username limit
    │   └── BackchannelUnsupported 501 backchannel_unsupported  back-channel logout without the Redis store
    ├── ConfigError                start-up: a bad or missing setting (one line per problem)
    └── InternalSignal             never an answer by itself
        ├── RefreshRejected        the provider said the refresh token is dead (terminal)
        ├── RefreshFailed          the provider could not be asked or answered badly (transient)
        ├── ClusterUnavailable     Redis (refresh coordination, shared counters) does not answer
        ├── TransportError         transport.py: the API could not be reached or read
        │   └── TransportTimeout   (also UnsendableRequest, and http1's ServerClosedIdle)
        ├── CookieTooLarge         cookies.py: a value over the bounded number of chunks
        └── InvalidIdToken         providers/id_token.py: an ID token that must not be trusted

Not an error: the API's own refusal of a password login is a value (``providers.LoginRefusal``),
passed to the browser as the API wrote it and counted as ``login_refused``. Transport failures on the
proxy path are mapped to ``UpstreamError``/``UpstreamTimeout``/``InvalidRequest`` in one function
(``transport.transport_problem``).
"""

from __future__ import annotations

from typing import ClassVar


class BffgateError(Exception):
    """The root of every exception bffgate raises on purpose (``except BffgateError`` catches them all)."""


class InternalSignal(BffgateError):
    """Raised by one part of bffgate for another to decide on; never rendered as an answer by itself."""


class BffError(BffgateError):
    """An error with a problem answer: HTTP status, stable ``code`` and a safe human message."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title

    def answer_headers(self) -> dict[str, str]:
        """Headers the problem answer carries besides its body (``Retry-After``, say)."""
        return {}


class Unauthenticated(BffError):
    status = 401
    code = "unauthenticated"
    title = "Not signed in"


class SessionExpired(BffError):
    status = 401
    code = "session_expired"
    title = "The session has ended; sign in again"


class CsrfFailed(BffError):
    status = 403
    code = "csrf_failed"
    title = "Missing X-CSRF header or foreign Origin"


class InvalidRequest(BffError):
    status = 400
    code = "invalid_request"
    title = "Malformed request"


class InvalidUrl(BffError):
    status = 400
    code = "invalid_url"
    title = "The URL would leave the remote API"


class PayloadTooLarge(BffError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class HeadersTooLarge(BffError):
    status = 431
    code = "headers_too_large"
    title = "Request headers too large"


class NotFound(BffError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(BffError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class SessionTooLarge(BffError):
    status = 502
    code = "session_too_large"
    title = "The session's tokens are too large for cookies; use BFF_SESSION_STORE=redis"

    def __init__(self, detail: str | None = None, *, set_cookies: list[str] | None = None) -> None:
        super().__init__(detail)
        # What still fits (the refresh cookie with a rotated refresh token): sent with the problem
        # answer so that the next refresh does not present a spent token.
        self.set_cookies = set_cookies or []


class UpstreamError(BffError):
    status = 502
    code = "upstream_unavailable"
    title = "The remote API could not be reached"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    title = "The remote API did not answer in time"


class ApiTokenRefused(BffError):
    """The provider refuses this session a token for one API (RFC 8707 ``invalid_target``, or
    ``invalid_scope``): not granted at sign-in. The session lives on; signing in again asks for it."""

    status = 403
    code = "api_token_refused"
    title = "The provider grants no token for this API to this session; sign in again"


class RefreshUnavailable(BffError):
    status = 503
    code = "refresh_unavailable"
    title = "Tokens could not be refreshed right now; try again"


class StoreUnavailable(BffError):
    status = 503
    code = "store_unavailable"
    title = "The session store is unavailable; try again"


class InvalidLogoutToken(BffError):
    """An OpenID Connect back-channel logout request whose ``logout_token`` is refused (no session ended).

    Back-Channel Logout 1.0 section 2.8: 400 for a request that is invalid. The detail says why,
    never with the token in it.
    """

    status = 400
    code = "invalid_logout_token"
    title = "The logout token is invalid"


class MetricsUnauthorized(BffError):
    """``/metrics`` asked for without the ``BFF_METRICS_TOKEN`` it is protected with."""

    status = 401
    code = "metrics_unauthorized"
    title = "The metrics need Authorization: Bearer <BFF_METRICS_TOKEN>"


class TooManyAttempts(BffError):
    """Too many login attempts from one client or for one username; ``Retry-After`` says when to retry."""

    status = 429
    code = "too_many_attempts"
    title = "Too many login attempts; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"{self.title} (in {retry_after} s)")
        self.retry_after = retry_after

    def answer_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class BackchannelUnsupported(BffError):
    status = 501
    code = "backchannel_unsupported"
    title = "Back-channel logout needs server-side sessions (BFF_SESSION_STORE=redis)"


class ConfigError(BffgateError):
    """One or more settings are missing or wrong; the message has one line per problem."""


class RefreshRejected(InternalSignal):
    """The provider answered that the refresh token is no longer valid (invalid_grant, 401, 403)."""


class RefreshFailed(InternalSignal):
    """The refresh could not be done now (network, timeout, 5xx, broken answer); retrying may work."""


class ClusterUnavailable(InternalSignal):
    """Redis, as refresh coordination (or a shared counter), could not be reached or answered with an
    error: the caller carries on in-process (cookie store) or answers ``StoreUnavailable`` (Redis store)."""


class LoginRejected(BffError):
    """400 login_failed: an OpenID Connect callback that must not create a session.

    A missing, expired, replayed or mismatched login transaction, a provider error, a failed code
    exchange or an ID token that does not validate. The detail says which, never with a token in it.
    """

    status = 400
    code = "login_failed"
    title = "Sign-in failed; start again"

"""The Session model and the ``SessionStore`` protocol that the cookie and Redis stores implement."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .tokens import TokenSet, identity_of

ACCESS_COOKIE_MAX_AGE = 15 * 60  # the access cookie never outlives 15 minutes (DESIGN.md)
DEFAULT_SESSION_ABSOLUTE = 30 * 24 * 3600  # BFF_SESSION_ABSOLUTE's default


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token: grace keys, lock keys and log lines use this."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


# The session's codec is ``to_dict``/``from_dict`` (short keys, sealed before they leave the process);
# the cookie store splits it over three cookies by these keys and joins them back with ``from_dict``.
DURABLE_KEYS = ("sid", "c", "rt", "u", "it", "id", "rs")  # the refresh cookie: lives as long as the session
ACCESS_KEYS = ("sid", "c", "at", "exp", "iat")  # the access cookie: lives as long as the access token
USER_KEYS = ("sid", "u")  # the user cookie: the user data, readable without the refresh secret
API_KEYS = ("sid", "c", "apis")  # the API-tokens cookie: one access token per API (api_tokens.py)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """The session's access token for one API (an RFC 8707 resource): used for that API only."""

    access_token: str
    expires_at: float
    issued_at: float

    def __repr__(self) -> str:
        return f"ApiToken(expires_at={self.expires_at}, token='**********')"

    def needs_refresh(self, skew: float, now: float | None = None) -> bool:
        """The same rule as the session's own token: expiring within min(skew, a quarter of its life)."""
        now = time.time() if now is None else now
        return self.expires_at - min(skew, (self.expires_at - self.issued_at) / 4) <= now


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser. Immutable: a refresh produces a new Session."""

    sid: str
    created_at: float
    access_token: str | None = None
    access_expires_at: float = 0.0
    access_issued_at: float = 0.0
    refresh_token: str | None = None
    id_token: str | None = None
    user: dict[str, Any] = field(default_factory=dict)
    # OpenID Connect: the login ID token's iss, sub, aud and sid; a refresh never changes it.
    identity: dict[str, Any] | None = None
    # One access token per API (by ``ApiTarget.key``), each obtained with the refresh token.
    api_tokens: Mapping[str, ApiToken] = field(default_factory=dict)
    # The RFC 8707 resources the sign-in asked for: the only ones per-API tokens may be asked for.
    resources: tuple[str, ...] = ()

    def __repr__(self) -> str:  # tokens must never reach a log line
        return (
            f"Session(sid={self.sid[:6]}…, access_expires_at={self.access_expires_at}, tokens='**********')"
        )

    @classmethod
    def start(cls, tokens: TokenSet, user: dict[str, Any], now: float | None = None) -> Session:
        """A brand-new session (fresh id: no fixation) from a login's tokens."""
        now = time.time() if now is None else now
        identity = identity_of(tokens.id_token) if tokens.id_token else None
        return cls(
            sid=new_session_id(),
            created_at=now,
            user=user,
            identity=identity,
            resources=tokens.resources,
        ).with_tokens(tokens, now)

    @property
    def login_identity(self) -> dict[str, Any] | None:
        """Who signed in (sessions sealed before ``identity`` existed: their ID token's)."""
        if self.identity is not None:
            return self.identity
        return identity_of(self.id_token) if self.id_token else None

    def with_tokens(self, tokens: TokenSet, now: float | None = None) -> Session:
        """This session after a refresh; keeps the old refresh/ID token when the provider sent none."""
        now = time.time() if now is None else now
        return replace(
            self,
            access_token=tokens.access_token,
            access_issued_at=now,
            access_expires_at=now + max(tokens.expires_in, 0.0),
            refresh_token=tokens.refresh_token or self.refresh_token,
            id_token=tokens.id_token or self.id_token,
            identity=self.login_identity,  # the login's, before the new ID token replaces it
        )

    def with_api_token(self, key: str, tokens: TokenSet, now: float | None = None) -> Session:
        """This session after a grant for one API: that API's token replaced, the session's own access
        and ID tokens kept, and the refresh token the provider may have rotated on the way."""
        now = time.time() if now is None else now
        token = ApiToken(tokens.access_token, now + max(tokens.expires_in, 0.0), now)
        return replace(
            self,
            api_tokens={**self.api_tokens, key: token},
            refresh_token=tokens.refresh_token or self.refresh_token,
            identity=self.login_identity,
        )

    def api_expires_at(self) -> float:
        """When the last of the per-API tokens expires (0 without any): the API-tokens cookie's end."""
        return max((token.expires_at for token in self.api_tokens.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for server-side storage (always sealed before it leaves the process)."""
        return {
            "sid": self.sid,
            "c": self.created_at,
            "at": self.access_token,
            "exp": self.access_expires_at,
            "iat": self.access_issued_at,
            "rt": self.refresh_token,
            "it": self.id_token,
            "u": self.user,
            "id": self.identity,
            "apis": _apis_to_dict(self.api_tokens),
            "rs": list(self.resources) or None,
        }

    def part(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """The ``to_dict`` entries named by ``keys`` that have a value (one cookie's share of it)."""
        whole = self.to_dict()
        return {key: whole[key] for key in keys if whole[key] is not None}

    @classmethod
    def from_dict(cls, data: Any) -> Session | None:
        """The inverse of ``to_dict``; None for anything malformed."""
        try:
            return cls(
                sid=str(data["sid"]),
                created_at=float(data["c"]),
                access_token=data.get("at"),
                access_expires_at=float(data.get("exp") or 0.0),
                access_issued_at=float(data.get("iat") or 0.0),
                refresh_token=data.get("rt"),
                id_token=data.get("it"),
                user=dict(data.get("u") or {}),
                identity=_identity(data.get("id")),
                api_tokens=_apis_from_dict(data.get("apis")),
                resources=tuple(str(resource) for resource in data.get("rs") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def needs_refresh(self, skew: float, now: float | None = None) -> bool:
        """True when there is no access token or it expires within min(skew, a quarter of its life)."""
        if not self.access_token:
            return True
        now = time.time() if now is None else now
        lifetime = self.access_expires_at - self.access_issued_at
        return self.access_expires_at - min(skew, lifetime / 4) <= now

    def access_max_age(self, now: float) -> int:
        """Seconds the access (and userData) cookie may live: ≤ 15 min and ≤ the token's life."""
        return int(min(ACCESS_COOKIE_MAX_AGE, self.access_expires_at - now))

    def session_expires_at(self, idle: float, absolute: float, now: float) -> float:
        """When the session ends if nothing refreshes it: the idle limit, capped by the absolute one."""
        end = min(now + idle, self.created_at + absolute)
        if not self.refresh_token:  # nothing to refresh with: the session ends with the access token
            end = min(end, self.access_expires_at)
        return end


class SessionStore(Protocol):
    """Where sessions live between requests. Cookie headers are returned, never written directly.

    What a store can do beyond keeping one session is declared here too, so that request handlers
    never ask which store they hold: ``server_side`` says whether sessions can be ended by anything
    but their own cookies (a user's other sessions, a provider's back-channel logout).
    """

    @property
    def server_side(self) -> bool:
        """Whether sessions live on the server (then they can be ended by id, user or provider)."""

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        """The session the browser's cookies point to, or None (absent, tampered, expired, unknown)."""

    async def save(self, session: Session, *, existing: bool = False) -> None:
        """Persist server-side state (a no-op for the cookie store); done before waiters are released.

        ``existing=True`` (a refresh) writes only if the session still exists, else ``SessionExpired``.
        """

    async def delete(self, session: Session) -> None:
        """Forget the session server-side (logout, terminal refresh failure)."""

    def set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        """Set-Cookie headers that make the browser hold ``session``."""

    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]:
        """Set-Cookie headers that remove every session cookie the browser may hold."""

    def has_cookies(self, cookies: Mapping[str, str]) -> bool:
        """Whether the browser sent any of this store's cookies (so there is something to clear)."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot be reached (readiness)."""

    async def delete_all_of_user(self, user: Mapping[str, Any]) -> int:
        """End every session of ``user`` (log out everywhere); how many ended (0 when not server-side)."""

    async def delete_provider_sessions(self, issuer: str, *, sid: str | None, sub: str | None) -> int:
        """Back-channel logout: end the sessions of provider session ``sid`` (else of subject ``sub``);
        how many ended. Only server-side stores can: the others raise ``BackchannelUnsupported``."""

    async def first_use_of_logout_token(self, issuer: str, jti: str, window: float) -> bool:
        """Whether no logout token with this ``jti`` came within ``window`` seconds (then it is noted).
        Only server-side stores can tell: the others raise ``BackchannelUnsupported``."""


def _identity(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


def _apis_to_dict(tokens: Mapping[str, ApiToken]) -> dict[str, list[Any]] | None:
    if not tokens:
        return None  # ``part`` leaves it out: sessions without per-API tokens keep their old shape
    return {key: [token.access_token, token.expires_at, token.issued_at] for key, token in tokens.items()}


def _apis_from_dict(value: Any) -> dict[str, ApiToken]:
    if not value:
        return {}
    return {str(key): ApiToken(str(at), float(exp), float(iat)) for key, (at, exp, iat) in value.items()}

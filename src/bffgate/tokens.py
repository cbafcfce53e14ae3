"""Token sets as providers return them, and the few facts bffgate reads from a JWT without trusting it."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ACCESS_LIFETIME = 15 * 60  # when the upstream says nothing about expiry


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What a login or refresh produced. ``refresh_token`` is None when the provider did not rotate it."""

    access_token: str
    expires_in: float
    refresh_token: str | None = None
    id_token: str | None = None
    user: dict[str, Any] = field(default_factory=dict)
    # A sign-in's RFC 8707 resources (the APIs its grant covers): per-API tokens are asked for no other.
    resources: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show tokens in logs or tracebacks
        return f"TokenSet(expires_in={self.expires_in!r}, user={self.user!r}, tokens='**********')"


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWS-compact JWT, *unverified*: only for expiry and display, never for trust."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def lifetime_from_jwt(token: str) -> float | None:
    """Seconds until the JWT's ``exp``, if it is a JWT with a numeric ``exp``."""
    claims = unverified_claims(token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp) - time.time()
    return None


# The claims JavaScript may see (``GET /api/auth/user``, the login answer) unless BFF_USER_CLAIMS says
# otherwise: profile claims of OIDC Core 5.1, plus what REST APIs commonly name their user's fields
# (``id``, ``username``, ``role``) and ``roles``/``groups``.
USER_CLAIMS = (
    "sub",
    "id",
    "username",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "email",
    "email_verified",
    "picture",
    "locale",
    "zoneinfo",
    "updated_at",
    "role",
    "roles",
    "groups",
)
# Never shown, whatever BFF_USER_CLAIMS lists: OIDC aggregated/distributed claims (``_claim_sources``
# carries access tokens), the provider's ``session_state``, and anything named like a token.
_HIDDEN_PREFIX = "_"
_HIDDEN_CLAIMS = frozenset({"session_state"})


def visible_claims(user: dict[str, Any], allowed: frozenset[str] | tuple[str, ...]) -> dict[str, Any]:
    """The part of a session's user data that may be given to the page."""
    return {key: value for key, value in user.items() if key in allowed and not _hidden(key)}


def _hidden(claim: str) -> bool:
    return claim.startswith(_HIDDEN_PREFIX) or claim in _HIDDEN_CLAIMS or "token" in claim.lower()


IDENTITY_CLAIMS = ("iss", "sub", "aud", "sid")


def identity_of(id_token: str) -> dict[str, Any] | None:
    """Who an ID token is about: its ``iss``, ``sub``, ``aud`` (and the provider session ``sid``).

    Read without a signature check: only ever called on ID tokens the provider module validated.
    """
    claims = unverified_claims(id_token)
    if claims is None or not isinstance(claims.get("iss"), str) or not isinstance(claims.get("sub"), str):
        return None
    return {key: claims[key] for key in IDENTITY_CLAIMS if key in claims}


def same_user(login: dict[str, Any], refreshed: dict[str, Any]) -> bool:
    """OIDC Core 12.2: a refreshed ID token has the login's ``iss``, ``sub`` and ``aud`` (``sid`` may go)."""
    return (
        login.get("iss") == refreshed.get("iss")
        and login.get("sub") == refreshed.get("sub")
        and _audiences(login.get("aud")) == _audiences(refreshed.get("aud"))
    )


def _audiences(aud: Any) -> frozenset[str]:
    return frozenset([aud] if isinstance(aud, str) else aud if isinstance(aud, list) else [])


def user_from_jwt(token: str) -> dict[str, Any]:
    """Display claims of a JWT access token (no signature check: the API, not bffgate, trusts it)."""
    claims = unverified_claims(token) or {}
    return {key: claims[key] for key in USER_CLAIMS if key in claims}

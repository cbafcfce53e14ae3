"""Logout token validation (OpenID Connect Back-Channel Logout 1.0, section 2.6) with joserfc.

The signature is checked exactly like an ID token's (``id_token.verified_jwt``: asymmetric algorithms
the provider advertises, a key from its JWKS, an unknown ``kid`` refetched once). Then the claims:
``iss`` is the provider, ``aud`` names this client, ``iat`` is present and recent (``MAX_AGE``),
``exp`` (when present) is not past, ``jti`` is present, ``events`` holds the back-channel logout
event, there is no ``nonce`` (so an ID token can never pass as a logout token) and there is a ``sid``,
a ``sub`` or both. A ``typ`` header, when present, must be ``logout+jwt`` (or plain ``JWT``).

Replay protection is the caller's part: remember ``jti`` for ``REPLAY_WINDOW``, longer than any
token can be accepted, so a replayed token is refused for as long as it would otherwise pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import InvalidLogoutToken
from .discovery import JwksCache
from .id_token import CLOCK_LEEWAY, check_registered_claims, verified_jwt

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_AGE = 300  # seconds: a logout token issued longer ago (by its iat) is refused
REPLAY_WINDOW = MAX_AGE + 2 * CLOCK_LEEWAY  # seconds a jti is remembered: every iat still accepted
ACCEPTED_TYPES = frozenset({"logout+jwt", "application/logout+jwt", "jwt"})  # compared lower-cased


@dataclass(frozen=True, slots=True)
class LogoutToken:
    """What a valid logout token says: which provider session (``sid``) or user (``sub``) has ended."""

    issuer: str
    jti: str
    sid: str | None
    sub: str | None


async def validate_logout_token(
    token: str,
    *,
    keys: JwksCache,
    algorithms: tuple[str, ...],
    issuer: str,
    client_id: str,
    now: float | None = None,
) -> LogoutToken:
    """The claims of a valid logout token; raises ``InvalidLogoutToken`` (or ``UpstreamError`` for the JWKS)."""
    header, claims = await verified_jwt(
        token, keys=keys, algorithms=algorithms, what="logout token", invalid=InvalidLogoutToken
    )
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
        raise InvalidLogoutToken(f"the logout token's type {typ!r} is not logout+jwt")
    check_registered_claims(
        claims,
        issuer=issuer,
        client_id=client_id,
        required=("iat", "jti"),
        what="logout token",
        invalid=InvalidLogoutToken,
    )
    now = time.time() if now is None else now
    if claims["iat"] < now - MAX_AGE - CLOCK_LEEWAY:
        raise InvalidLogoutToken(f"the logout token was issued more than {MAX_AGE} seconds ago")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise InvalidLogoutToken("the logout token's 'events' claim has no back-channel logout event")
    if "nonce" in claims:
        raise InvalidLogoutToken("the logout token has a 'nonce' claim (an ID token is not a logout token)")
    sid, sub, jti = claims.get("sid"), claims.get("sub"), claims["jti"]
    if sid is not None and not isinstance(sid, str):
        raise InvalidLogoutToken("the logout token's 'sid' claim is not a string")
    if not sid and not sub:
        raise InvalidLogoutToken("the logout token names neither a session ('sid') nor a user ('sub')")
    if not jti:
        raise InvalidLogoutToken("the logout token's 'jti' claim is empty")
    return LogoutToken(issuer=issuer, jti=str(jti), sid=sid or None, sub=str(sub) if sub else None)

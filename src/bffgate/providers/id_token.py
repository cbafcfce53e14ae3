"""ID token validation (OpenID Connect Core 3.1.3.7 and 12.2) with joserfc; its errors are mapped here.

In order: the algorithm is on the allow-list (asymmetric only, as the provider advertises; ``none`` and
``HS*`` never), the signature verifies with a key from the provider's JWKS (an unknown ``kid`` makes
the cache refetch once), then ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``sub``, ``nonce`` and, when
present, ``at_hash``.
"""

from __future__ import annotations

import hmac
from typing import Any

from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, ClaimError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from ..errors import InternalSignal
from .discovery import JwksCache

CLOCK_LEEWAY = 60  # seconds of clock difference tolerated between bffgate and the provider


class InvalidIdToken(InternalSignal, ValueError):
    """The ID token must not be trusted; the message says why and never contains the token."""


async def validate_id_token(
    token: str,
    *,
    keys: JwksCache,
    algorithms: tuple[str, ...],
    issuer: str,
    client_id: str,
    nonce: str | None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """The claims of a valid ID token; raises ``InvalidIdToken`` (or ``UpstreamError`` for the JWKS).

    ``nonce`` is the login transaction's (required then); None after a refresh, where the provider
    may repeat the original nonce or leave it out.
    """
    header, claims = await verified_jwt(token, keys=keys, algorithms=algorithms)
    algorithm = str(header["alg"])
    _check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce)
    if access_token is not None and "at_hash" in claims:
        expected = create_half_hash(access_token, algorithm)
        if expected is not None and not hmac.compare_digest(str(claims["at_hash"]), expected.decode()):
            raise InvalidIdToken("the ID token's at_hash does not match the access token")
    return claims


async def verified_jwt(
    token: str,
    *,
    keys: JwksCache,
    algorithms: tuple[str, ...],
    what: str = "ID token",
    invalid: type[Exception] = InvalidIdToken,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT signed by the provider; no claim is checked yet.

    Shared by the ID token and the back-channel logout token: the algorithm allow-list, the key from
    the JWKS (an unknown ``kid`` refetches once) and the signature. Failures raise ``invalid`` with a
    message naming ``what``; ``UpstreamError`` when the JWKS cannot be fetched.
    """
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError, UnicodeError):
        raise invalid(f"the {what} is not a signed JWT") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in algorithms:
        raise invalid(f"the {what}'s algorithm {algorithm!r} is not allowed")
    kid = header.get("kid")
    candidates = await keys.candidates(kid if isinstance(kid, str) else None, algorithm)
    if not candidates:
        raise invalid(f"the {what} is signed with a key the provider does not publish")
    for key in candidates:  # usually one: several only for a token without a kid
        try:
            return dict(header), dict(jwt.decode(token, key, algorithms=[algorithm]).claims)
        except BadSignatureError:
            continue
        except JoseError as exc:
            raise invalid(f"the {what} cannot be read ({exc.error})") from None
    raise invalid(f"the {what}'s signature does not verify")


def check_registered_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    required: tuple[str, ...],
    what: str = "ID token",
    invalid: type[Exception] = InvalidIdToken,
) -> None:
    """``iss`` is the provider, ``aud`` names this client, ``required`` are present, the times hold
    (with ``CLOCK_LEEWAY``). Shared by the ID token and the back-channel logout token."""
    registry = JWTClaimsRegistry(
        leeway=CLOCK_LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
    )
    registry.options.update({name: {"essential": True} for name in required})
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise invalid(f"the {what}'s {exc.claim!r} claim is missing or wrong") from None


def _check_claims(claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str | None) -> None:
    check_registered_claims(claims, issuer=issuer, client_id=client_id, required=("sub", "exp", "iat"))
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 and azp is None) or (azp is not None and azp != client_id):
        raise InvalidIdToken("the ID token's 'azp' claim is missing or names another client")
    if nonce is not None:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise InvalidIdToken("the ID token's nonce is not this login's")

"""ID-token validation and the JWKS cache, with keys made here (no provider needed)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from bffgate.errors import UpstreamError
from bffgate.providers.discovery import JWKS_REFETCH_INTERVAL, JWKS_TTL, JwksCache
from bffgate.providers.id_token import InvalidIdToken, validate_id_token

ISSUER = "https://login.example.test"
CLIENT = "bffgate-client"
NONCE = "nonce-of-this-login"


class Jwks:
    """A provider's JWKS endpoint: its published keys, how often it was fetched, and a clock."""

    def __init__(self, *keys: RSAKey) -> None:
        self.published = list(keys)
        self.fetches = 0
        self.down = False
        self.now = 1000.0

    async def fetch(self) -> Any:
        self.fetches += 1
        if self.down:
            raise UpstreamError("the JWKS could not be reached")
        return {"keys": [key.as_dict(private=False) for key in self.published]}

    def cache(self) -> JwksCache:
        return JwksCache(self.fetch, clock=lambda: self.now)


def rsa(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": kid, "use": "sig"}, private=True)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": ISSUER, "aud": CLIENT, "sub": "alice", "iat": now, "exp": now + 300, "nonce": NONCE}
    values.update(changes)
    return {key: value for key, value in values.items() if value is not None}


def sign(key: RSAKey, payload: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.kid, **header}, payload, key)


async def validate(token: str, keys: JwksCache, **options: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "keys": keys,
        "algorithms": ("RS256", "ES256"),
        "issuer": ISSUER,
        "client_id": CLIENT,
        "nonce": NONCE,
        **options,
    }
    return await validate_id_token(token, **arguments)


async def test_a_valid_id_token_gives_its_claims() -> None:
    """A token signed by a published key with the right claims validates and yields its claims."""
    key = rsa("k1")
    result = await validate(sign(key, claims(email="a@example.test")), Jwks(key).cache())
    assert result["sub"] == "alice"
    assert result["email"] == "a@example.test"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://other.example.test"}, "'iss'"),
        ({"aud": "another-client"}, "'aud'"),
        ({"aud": None}, "'aud'"),
        ({"exp": int(time.time()) - 120}, "'exp'"),
        ({"iat": int(time.time()) + 3600}, "'iat'"),
        ({"iat": None}, "'iat'"),
        ({"sub": None}, "'sub'"),
        ({"nonce": "another-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": [CLIENT, "api"]}, "azp"),
        ({"azp": "another-client"}, "azp"),
    ],
)
async def test_wrong_claims_are_refused(changes: dict[str, Any], reason: str) -> None:
    """Wrong or missing iss, aud, exp, iat, sub, nonce or azp make the token invalid."""
    key = rsa("k1")
    with pytest.raises(InvalidIdToken, match=reason):
        await validate(sign(key, claims(**changes)), Jwks(key).cache())


async def test_several_audiences_with_our_azp_are_accepted() -> None:
    """A token for several audiences is accepted when azp names this client."""
    key = rsa("k1")
    result = await validate(sign(key, claims(aud=[CLIENT, "api"], azp=CLIENT)), Jwks(key).cache())
    assert result["azp"] == CLIENT


async def test_after_refresh_the_nonce_is_not_required() -> None:
    """A refreshed ID token (nonce=None) validates without a nonce claim."""
    key = rsa("k1")
    result = await validate(sign(key, claims(nonce=None)), Jwks(key).cache(), nonce=None)
    assert "nonce" not in result


async def test_at_hash_must_match_the_access_token() -> None:
    """An at_hash that is not the access token's half hash is refused; the right one passes."""
    key = rsa("k1")
    good = create_half_hash("the-access-token", "RS256").decode()
    token = sign(key, claims(at_hash=good))
    assert (await validate(token, Jwks(key).cache(), access_token="the-access-token"))["at_hash"] == good
    with pytest.raises(InvalidIdToken, match="at_hash"):
        await validate(token, Jwks(key).cache(), access_token="another-access-token")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_unsigned_token_is_refused() -> None:
    """alg=none is never accepted."""
    token = f"{_b64({'alg': 'none'})}.{_b64(claims())}."
    with pytest.raises(InvalidIdToken, match="'none' is not allowed"):
        await validate(token, Jwks(rsa("k1")).cache())


async def test_hmac_with_the_public_key_is_refused_even_if_hs256_were_allowed() -> None:
    """HS256 keyed with the provider's public key is refused, even with HS256 on the allow-list."""
    key = rsa("k1")
    public = json.dumps(key.as_dict(private=False), sort_keys=True).encode()
    token = jwt.encode({"alg": "HS256", "kid": "k1"}, claims(), OctKey.import_key(public))
    with pytest.raises(InvalidIdToken, match="'HS256' is not allowed"):
        await validate(token, Jwks(key).cache())
    with pytest.raises(InvalidIdToken, match="does not publish"):  # no RSA key can verify an HMAC
        await validate(token, Jwks(key).cache(), algorithms=("RS256", "HS256"))


async def test_not_a_jwt_is_refused() -> None:
    """Garbage instead of a JWT is an invalid token, not a crash."""
    with pytest.raises(InvalidIdToken, match="not a signed JWT"):
        await validate("not.a-jwt", Jwks(rsa("k1")).cache())


async def test_signature_by_another_key_with_a_known_kid_is_refused() -> None:
    """A token naming a published kid but signed by another key fails the signature check."""
    published, attacker = rsa("k1"), rsa("k1")
    with pytest.raises(InvalidIdToken, match="signature does not verify"):
        await validate(sign(attacker, claims()), Jwks(published).cache())


async def test_rotated_key_is_found_by_refetching_the_jwks() -> None:
    """A token with a kid the cache lacks makes it refetch once and validate with the new key."""
    old, new = rsa("old"), rsa("new")
    jwks = Jwks(old)
    cache = jwks.cache()
    await validate(sign(old, claims()), cache)
    jwks.published = [old, new]  # the provider rotates its keys
    jwks.now += JWKS_REFETCH_INTERVAL
    assert (await validate(sign(new, claims()), cache))["sub"] == "alice"
    assert jwks.fetches == 2


async def test_unknown_kids_refetch_at_most_once_per_interval() -> None:
    """Tokens with made-up kids cause one JWKS fetch per interval, however many arrive."""
    key = rsa("k1")
    jwks = Jwks(key)
    cache = jwks.cache()
    await validate(sign(key, claims()), cache)
    jwks.now += JWKS_REFETCH_INTERVAL
    for index in range(5):
        with pytest.raises(InvalidIdToken, match="does not publish"):
            await validate(sign(rsa(f"made-up-{index}"), claims()), cache)
    assert jwks.fetches == 2
    jwks.now += JWKS_REFETCH_INTERVAL
    with pytest.raises(InvalidIdToken, match="does not publish"):
        await validate(sign(rsa("made-up-again"), claims()), cache)
    assert jwks.fetches == 3


async def test_stale_keys_are_refetched_and_kept_when_the_provider_is_down() -> None:
    """After JWKS_TTL the keys are fetched again; if that fails, the cached keys still validate."""
    key = rsa("k1")
    jwks = Jwks(key)
    cache = jwks.cache()
    await validate(sign(key, claims()), cache)
    jwks.now += JWKS_TTL
    jwks.down = True
    assert (await validate(sign(key, claims()), cache))["sub"] == "alice"
    assert jwks.fetches == 2


async def test_unreachable_jwks_without_cached_keys_is_an_upstream_error() -> None:
    """With no keys cached and the JWKS unreachable, validation raises UpstreamError (502), not 'invalid'."""
    jwks = Jwks(rsa("k1"))
    jwks.down = True
    with pytest.raises(UpstreamError):
        await validate(sign(rsa("k1"), claims()), jwks.cache())

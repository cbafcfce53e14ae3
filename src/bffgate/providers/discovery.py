"""OpenID Connect discovery and the provider's signing keys, fetched once and cached.

``Discovery`` reads ``{OIDC_ISSUER}/.well-known/openid-configuration``, checks that it names the
configured issuer and has every endpoint bffgate needs (reporting all problems at once), and keeps it
for ``METADATA_TTL``. When a later fetch fails, the last good metadata stays in use: a provider hiccup
must not stop logins that could still work.

OpenID Connect Discovery does not define ``revocation_endpoint``; RFC 8414 (OAuth 2.0 Authorization
Server Metadata) does, and some providers (django-oauth-toolkit) publish it only there. When the
discovery document lacks it, ``Discovery`` reads the RFC 8414 document too, and takes the endpoint
from it when that document names the same issuer. Without one, logout simply does not revoke.

``JwksCache`` keeps the provider's public keys. A token signed with a key id it does not know makes it
fetch the JWKS again (key rotation), at most once per ``JWKS_REFETCH_INTERVAL``, so tokens with
made-up key ids cannot make bffgate hammer the provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from ..config import transport_problem
from ..errors import UpstreamError
from .http import call_json

log = logging.getLogger("bffgate.provider")

METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
JWKS_REFETCH_INTERVAL = 10.0
DISCOVERY_PATH = "/.well-known/openid-configuration"
OAUTH_METADATA_PATH = "/.well-known/oauth-authorization-server"

# Asymmetric algorithms only: HS* would need the client secret as the key, and accepting them next to
# RSA/EC keys is the classic "HS256 signed with the public key" confusion. ``none`` is never accepted.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of the discovery document bffgate uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    revocation_endpoint: str | None
    end_session_endpoint: str | None
    id_token_algorithms: tuple[str, ...]
    iss_parameter_supported: bool


def parse_metadata(
    document: Any, configured_issuer: str, *, allow_insecure_http: bool = False
) -> ProviderMetadata:
    """Check a discovery document; raises ``UpstreamError`` listing every problem it has.

    Every URL must be https unless it is on a loopback address or ``allow_insecure_http``: an https
    issuer that lists a plain-http token or JWKS endpoint would send codes, secrets and tokens (or
    take its signing keys) in clear.
    """
    if not isinstance(document, dict):
        raise UpstreamError("the OIDC discovery document is not a JSON object")
    problems: list[str] = []

    def url(name: str, *, required: bool) -> str | None:
        value = document.get(name)
        if value is None and not required:
            return None
        checked = _http_url(value)
        if checked is None:
            problems.append(f"{name} is {'missing' if value is None else 'not an http(s) URL'}")
            return None
        insecure = transport_problem(checked, allow_insecure_http=allow_insecure_http)
        if insecure:
            problems.append(f"{name} {value!r} {insecure}")
            return None
        return checked

    issuer = url("issuer", required=True)
    # Providers differ on a trailing slash (Auth0 has one); the document's exact value is what the
    # ID tokens' ``iss`` must equal, so it is kept as it is.
    if issuer is not None and issuer.rstrip("/") != configured_issuer.rstrip("/"):
        problems.append(f"issuer is {issuer!r}, not OIDC_ISSUER {configured_issuer!r}")
    endpoints = {
        name: url(name, required=required)
        for name, required in (
            ("authorization_endpoint", True),
            ("token_endpoint", True),
            ("jwks_uri", True),
            ("userinfo_endpoint", False),
            ("revocation_endpoint", False),
            ("end_session_endpoint", False),
        )
    }
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        problems.append("code_challenge_methods_supported does not include S256 (PKCE)")
    advertised = document.get("id_token_signing_alg_values_supported", ["RS256"])
    algorithms = tuple(a for a in SIGNING_ALGORITHMS if isinstance(advertised, list) and a in advertised)
    if not algorithms:
        problems.append(
            f"id_token_signing_alg_values_supported {advertised!r} has no asymmetric algorithm "
            f"(bffgate accepts {', '.join(SIGNING_ALGORITHMS)})"
        )
    if problems:
        raise UpstreamError("the OIDC discovery document is incomplete: " + "; ".join(problems))
    return ProviderMetadata(
        issuer=str(issuer),
        authorization_endpoint=str(endpoints["authorization_endpoint"]),
        token_endpoint=str(endpoints["token_endpoint"]),
        jwks_uri=str(endpoints["jwks_uri"]),
        userinfo_endpoint=endpoints["userinfo_endpoint"],
        revocation_endpoint=endpoints["revocation_endpoint"],
        end_session_endpoint=endpoints["end_session_endpoint"],
        id_token_algorithms=algorithms,
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
    )


def _http_url(value: Any) -> str | None:
    """``value`` when it is an absolute http(s) URL, else None."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    return str(value)


def oauth_metadata_urls(issuer: str) -> list[str]:
    """Where the RFC 8414 document of ``issuer`` may be, in the order to try.

    RFC 8414 section 3 puts the well-known segment between the host and the issuer's path
    (``https://host/.well-known/oauth-authorization-server/o``); many providers, DOT mounted under a
    prefix among them, serve it after the issuer instead, the way OIDC discovery does (section 5).
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    urls = [f"{parts.scheme}://{parts.netloc}{OAUTH_METADATA_PATH}{path}"]
    if path:
        urls.append(f"{parts.scheme}://{parts.netloc}{path}{OAUTH_METADATA_PATH}")
    return urls


def revocation_endpoint_of(document: Any, configured_issuer: str) -> str | None:
    """The revocation endpoint of an RFC 8414 document that names ``configured_issuer`` (section 3.3)."""
    if not isinstance(document, dict):
        return None
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != configured_issuer.rstrip("/"):
        return None
    return _http_url(document.get("revocation_endpoint"))


class Discovery:
    """The provider's metadata, fetched on first use and kept for ``METADATA_TTL``."""

    def __init__(
        self, http: aiohttp.ClientSession, issuer: str, *, timeout: float, allow_insecure_http: bool = False
    ) -> None:
        self._http = http
        self._issuer = issuer
        self._allow_insecure_http = allow_insecure_http
        self._url = issuer.rstrip("/") + DISCOVERY_PATH
        self._timeout = timeout
        self._metadata: ProviderMetadata | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> ProviderMetadata:
        """The metadata; raises ``UpstreamError`` only when there has never been a good copy."""
        if self._metadata is not None and time.monotonic() - self._fetched_at < METADATA_TTL:
            return self._metadata
        async with self._lock:  # one fetch for every request that found the cache stale
            if self._metadata is not None and time.monotonic() - self._fetched_at < METADATA_TTL:
                return self._metadata
            try:
                self._metadata = await self.fetch()
            except UpstreamError as exc:
                if self._metadata is None:
                    raise
                log.warning("OIDC discovery failed, the cached metadata stays in use: %s", exc.detail)
            self._fetched_at = time.monotonic()
            return self._metadata

    async def fetch(self) -> ProviderMetadata:
        """A fresh copy of the metadata, checked; ``UpstreamError`` says what is wrong."""
        try:
            answer = await call_json(self._http, "GET", self._url, timeout=self._timeout)
        except UpstreamError as exc:
            raise type(exc)(f"OIDC discovery: {exc.detail}; check OIDC_ISSUER") from None
        if not answer.ok:
            raise UpstreamError(f"OIDC discovery: {self._url} answered {answer.status}; check OIDC_ISSUER")
        metadata = parse_metadata(answer.body, self._issuer, allow_insecure_http=self._allow_insecure_http)
        if metadata.revocation_endpoint is None:
            metadata = replace(metadata, revocation_endpoint=await self._oauth_revocation_endpoint())
        return metadata

    async def _oauth_revocation_endpoint(self) -> str | None:
        """The revocation endpoint from the RFC 8414 metadata; None when there is none to be had."""
        for url in oauth_metadata_urls(self._issuer):
            try:
                answer = await call_json(self._http, "GET", url, timeout=self._timeout)
            except UpstreamError as exc:
                log.info("no RFC 8414 metadata at %s: %s", url, exc.detail)
                continue
            endpoint = revocation_endpoint_of(answer.body, self._issuer) if answer.ok else None
            if endpoint is not None and transport_problem(
                endpoint, allow_insecure_http=self._allow_insecure_http
            ):
                log.warning("the RFC 8414 revocation endpoint %s is plain http: not used", endpoint)
                endpoint = None
            if endpoint is not None:
                return endpoint
        log.info("the provider publishes no revocation endpoint: logout will not revoke its tokens")
        return None


class JwksCache:
    """The provider's public signing keys, refetched on an unknown key id (rotation)."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Any]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def candidates(self, kid: str | None, algorithm: str) -> list[Key]:
        """The keys that may have signed a token with this header; [] when none is known."""
        if self._fresh():
            keys = self._matching(kid, algorithm)
            if keys:
                return keys
        async with self._lock:  # one fetch for every token that found the cache stale or lacking
            stale = not self._fresh()
            keys = self._matching(kid, algorithm)
            if stale or (not keys and self._clock() - self._fetched_at >= JWKS_REFETCH_INTERVAL):
                try:
                    await self._refetch()
                except UpstreamError as exc:
                    if not keys:
                        raise
                    log.warning("JWKS refetch failed, the cached keys stay in use: %s", exc.detail)
                keys = self._matching(kid, algorithm)
        return keys

    async def any_key(self, algorithms: tuple[str, ...]) -> bool:
        """Whether a published key can verify one of ``algorithms``; loads the set when it is stale."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._refetch()  # raises UpstreamError
        return any(self._matching(None, algorithm) for algorithm in algorithms)

    def _fresh(self) -> bool:
        return self._keys is not None and self._clock() - self._fetched_at < JWKS_TTL

    async def _refetch(self) -> None:
        self._fetched_at = self._clock()  # also on failure: the refetch interval bounds retries
        document = await self._fetch()
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"the provider's JWKS is unusable ({type(exc).__name__})") from None
        self._keys = KeySet([key for key in keys if key.get("use") in (None, "sig")])

    def _matching(self, kid: str | None, algorithm: str) -> list[Key]:
        if self._keys is None:
            return []
        key_type = KEY_TYPES.get(algorithm[:2])
        return [
            key
            for key in self._keys
            if key.key_type == key_type
            and (kid is None or key.kid == kid)
            and key.get("alg") in (None, algorithm)
        ]

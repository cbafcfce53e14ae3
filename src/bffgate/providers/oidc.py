"""The ``oidc`` provider: any OpenID Connect provider, configured by discovery.

Login is the authorization code flow with PKCE (S256), ``state`` and ``nonce``: ``start_login`` builds
the authorization URL and the transaction the gateway seals into a cookie (``transaction.py``),
asking for every per-API ``resource`` (RFC 8707) and scope the routes name, so the grant covers them;
``finish_login`` checks the provider's answer (error, RFC 9207 ``iss``), exchanges the code, validates
the ID token (``id_token.py``) and reads the userinfo endpoint. Refresh is the ``refresh_token`` grant;
logout revokes the refresh token (RFC 7009) and builds the RP-initiated logout URL; ``logout_token``
validates a back-channel logout token (``logout_token.py``). ``refresh_for_api`` is the same grant
with ``resource`` and ``scope``: an access token for one API (``api_tokens.py``).

Authlib builds the protocol messages (authorization URL, PKCE challenge), joserfc checks the JOSE;
HTTP goes through ``upstream.call_json`` like every other provider call. Refresh answers: 400
``invalid_grant``, 401 and 403 are terminal, and so is an invalid refreshed ID token (its tokens are
revoked); the rest (network, 5xx, other 4xx) transient.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp
from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from ..api_target import ApiTarget
from ..config import Settings
from ..errors import ApiTokenRefused, LoginRejected, RefreshFailed, RefreshRejected, UpstreamError
from ..session import Session
from ..tokens import DEFAULT_ACCESS_LIFETIME, TokenSet, lifetime_from_jwt
from . import read_tokens
from .discovery import Discovery, JwksCache, ProviderMetadata
from .http import JsonAnswer, call_json
from .id_token import InvalidIdToken, validate_id_token
from .logout_token import LogoutToken, validate_logout_token

log = logging.getLogger("bffgate.provider")

CALLBACK_PATH = "/api/auth/callback"
TERMINAL_REFRESH_STATUSES = frozenset({401, 403})  # and 400 with error=invalid_grant
TARGET_REFUSALS = frozenset({"invalid_target", "invalid_scope"})  # RFC 8707 2, RFC 6749 5.2
# Parameters bffgate sets itself; OIDC_AUTH_PARAMS cannot override them.
RESERVED_AUTH_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)
# ID-token claims about the token itself rather than the user: not kept as user data.
PROTOCOL_CLAIMS = frozenset(
    {"iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "s_hash", "jti", "sid"}
    | {"auth_time", "acr", "amr", "typ"}
)
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class OidcProvider:
    """An OpenID Connect provider found by discovery at ``OIDC_ISSUER``."""

    def __init__(
        self, settings: Settings, http: aiohttp.ClientSession, api_targets: Sequence[ApiTarget] = ()
    ) -> None:
        self._http = http
        self._timeout = settings.bff_upstream_timeout
        self._client_id = settings.oidc_client_id or ""
        secret = settings.oidc_client_secret
        self._client_secret = secret.get_secret_value() if secret is not None else None
        self._auth_method = settings.oidc_client_auth_method if self._client_secret else "none"
        self._redirect_uri = settings.bff_public_url + CALLBACK_PATH
        self._scopes = login_scopes(settings.oidc_scopes, api_targets)
        self._resources = sorted({target.resource for target in api_targets if target.resource})
        self._extra_params = _auth_params(settings.oidc_auth_params)
        self._post_logout_redirect = settings.post_logout_redirect
        self._custom_userinfo = settings.userinfo_url
        insecure = settings.oidc_allow_insecure_http
        if insecure:
            log.warning(
                "OIDC_ALLOW_INSECURE_HTTP=true: plain-http OpenID Connect issuer and endpoints are accepted "
                "off loopback; codes, client secrets and tokens may cross the network in clear"
            )
        self.discovery = Discovery(
            http, settings.oidc_issuer or "", timeout=min(self._timeout, 10.0), allow_insecure_http=insecure
        )
        self.keys = JwksCache(self._fetch_jwks)

    # Revocation authenticates the client and names the refresh token: no access token needed.
    revokes_with_access_token = False

    def __repr__(self) -> str:
        return f"OidcProvider(client_id={self._client_id!r}, secret='**********')"

    # -- login ------------------------------------------------------------------------------------

    async def start_login(self, return_to: str) -> tuple[str, dict[str, Any]]:
        """The authorization URL to send the browser to, and the transaction to keep until it is back."""
        metadata = await self.discovery.metadata()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters of the RFC 7636 alphabet
        url = prepare_grant_uri(
            metadata.authorization_endpoint,
            self._client_id,
            "code",
            redirect_uri=self._redirect_uri,
            scope=self._scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
            **self._extra_params,
        )
        if self._resources:  # RFC 8707 2.1: the grant must name every API a token will be asked for
            url = add_params_to_uri(url, [("resource", resource) for resource in self._resources])
        transaction: dict[str, Any] = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "returnTo": return_to,
        }
        if self._resources:  # what this sign-in's grant will cover, whatever the settings are later
            transaction["resources"] = self._resources
        return str(url), transaction

    async def finish_login(
        self, params: Mapping[str, str], transaction: Mapping[str, Any]
    ) -> tuple[TokenSet, dict[str, Any]]:
        """Tokens and user data from the provider's answer to a login whose ``state`` was checked."""
        metadata = await self.discovery.metadata()
        if "error" in params:
            raise LoginRejected(f"the provider did not sign the user in ({_error_code(params['error'])})")
        issuer = params.get("iss")
        if issuer != metadata.issuer and (issuer is not None or metadata.iss_parameter_supported):
            raise LoginRejected("the answer's iss is not this provider's (RFC 9207 mix-up defence)")
        code = params.get("code")
        if not code:
            raise LoginRejected("the provider's answer has no authorization code")
        answer = await self._token_request(
            metadata,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self._redirect_uri,
                "code_verifier": str(transaction.get("verifier", "")),
            },
        )
        tokens = read_tokens(
            answer,
            parse_token_answer,
            endpoint="token endpoint",
            rejection=_code_exchange_refused,
            failure=UpstreamError,
        )
        if tokens.id_token is None:
            raise LoginRejected("the provider sent no ID token (is 'openid' in OIDC_SCOPES?)")
        try:
            claims = await self._validate(metadata, tokens, nonce=str(transaction.get("nonce", "")))
        except InvalidIdToken as exc:
            raise LoginRejected(str(exc)) from None
        user = await self._user(metadata, claims, tokens.access_token)
        resources = transaction.get("resources")
        granted = tuple(str(r) for r in resources) if isinstance(resources, list) else ()
        return replace(tokens, user=user, resources=granted), user

    async def end_session_url(self, id_token_hint: str | None) -> str | None:
        """The provider's end-session URL (RP-initiated logout), or None when it has none."""
        try:
            metadata = await self.discovery.metadata()
        except UpstreamError as exc:
            log.warning("no end-session URL: %s", exc.detail)
            return None
        if metadata.end_session_endpoint is None:
            return None
        params = [("client_id", self._client_id), ("post_logout_redirect_uri", self._post_logout_redirect)]
        if id_token_hint:
            params.insert(0, ("id_token_hint", id_token_hint))
        return str(add_params_to_uri(metadata.end_session_endpoint, params))

    async def logout_token(self, token: str) -> LogoutToken:
        """A back-channel logout token's claims; raises ``InvalidLogoutToken`` (``UpstreamError``: JWKS)."""
        metadata = await self.discovery.metadata()
        return await validate_logout_token(
            token,
            keys=self.keys,
            algorithms=metadata.id_token_algorithms,  # logout tokens are signed like the client's ID tokens
            issuer=metadata.issuer,
            client_id=self._client_id,
        )

    # -- TokenProvider -----------------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenSet:
        return await self._refresh({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def refresh_for_api(self, refresh_token: str, target: ApiTarget) -> TokenSet:
        """RFC 8707: the refresh-token grant with ``resource`` (and ``scope``): a token for that API only.

        Raises ``ApiTokenRefused`` when the provider will not issue one to this grant
        (``invalid_target``, ``invalid_scope``), else like ``refresh``.
        """
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if target.resource:
            form["resource"] = target.resource
        if target.scopes:
            form["scope"] = target.scopes
        return await self._refresh(form)

    async def _refresh(self, form: dict[str, str]) -> TokenSet:
        try:
            metadata = await self.discovery.metadata()
            answer = await self._token_request(metadata, form)
        except UpstreamError as exc:
            raise RefreshFailed(exc.detail) from None
        tokens = read_tokens(
            answer,
            parse_token_answer,
            endpoint="token endpoint",
            rejection=_refresh_refused,
            failure=RefreshFailed,
        )
        if tokens.id_token is not None:
            try:
                await self._validate(metadata, tokens, nonce=None)
            except UpstreamError as exc:  # the JWKS could not be read: the tokens are kept, unchecked
                log.warning("refreshed ID token ignored, the previous one is kept: %s", exc.detail)
                tokens = replace(tokens, id_token=None)
            except InvalidIdToken as exc:
                # Whose tokens these are is unknown (OIDC Core 12.2): none of them is used.
                await self._revoke_tokens(tokens)
                raise RefreshRejected(f"the refreshed ID token is invalid: {exc}") from None
        return tokens

    async def revoke(self, session: Session) -> None:
        """RFC 7009: revoke the refresh token (else the access token); best effort, never raises."""
        await self._revoke(session.refresh_token, session.access_token)

    async def _revoke_tokens(self, tokens: TokenSet) -> None:
        await self._revoke(tokens.refresh_token, tokens.access_token)

    async def _revoke(self, refresh_token: str | None, access_token: str | None) -> None:
        token, hint = (refresh_token, "refresh_token")
        if not token:
            token, hint = (access_token, "access_token")
        if not token:
            return
        try:
            metadata = await self.discovery.metadata()
            if metadata.revocation_endpoint is None:
                return
            form, headers = self._authenticate({"token": token, "token_type_hint": hint})
            answer = await call_json(
                self._http,
                "POST",
                metadata.revocation_endpoint,
                timeout=self._timeout,
                form=form,
                headers=headers,
            )
        except UpstreamError as exc:
            log.warning("token revocation failed: %s", exc.detail)
            return
        if not answer.ok:
            log.warning("the revocation endpoint answered %s (%s)", answer.status, _answer_error(answer))

    async def ready(self) -> None:
        """Discovery answered with complete metadata and the JWKS has a signing key we can use."""
        metadata = await self.discovery.metadata()
        if not await self.keys.any_key(metadata.id_token_algorithms):
            raise UpstreamError(
                "the provider's JWKS has no key for its ID-token algorithms "
                f"({', '.join(metadata.id_token_algorithms)})"
            )

    # -- helpers -----------------------------------------------------------------------------------

    async def _validate(
        self, metadata: ProviderMetadata, tokens: TokenSet, *, nonce: str | None
    ) -> dict[str, Any]:
        return await validate_id_token(
            tokens.id_token or "",
            keys=self.keys,
            algorithms=metadata.id_token_algorithms,
            issuer=metadata.issuer,
            client_id=self._client_id,
            nonce=nonce,
            access_token=tokens.access_token,
        )

    async def _user(
        self, metadata: ProviderMetadata, claims: dict[str, Any], access_token: str
    ) -> dict[str, Any]:
        """The ID token's user claims, completed by the userinfo endpoint when there is one."""
        user = {key: value for key, value in claims.items() if key not in PROTOCOL_CLAIMS}
        url = self._custom_userinfo or metadata.userinfo_endpoint
        if url is None:
            return user
        headers = {"Authorization": f"Bearer {access_token}"}
        try:
            answer = await call_json(self._http, "GET", url, timeout=self._timeout, headers=headers)
        except UpstreamError as exc:
            log.warning("userinfo failed, the ID token's claims are used alone: %s", exc.detail)
            return user
        if not answer.ok or not isinstance(answer.body, dict):
            log.warning("userinfo answered %s, the ID token's claims are used alone", answer.status)
        elif url == metadata.userinfo_endpoint and answer.body.get("sub") != claims["sub"]:
            log.warning("userinfo is about another subject (OIDC Core 5.3.4): ignored")
        else:
            user.update(answer.body)
        return user

    async def _token_request(self, metadata: ProviderMetadata, form: dict[str, str]) -> JsonAnswer:
        form, headers = self._authenticate(form)
        return await call_json(
            self._http, "POST", metadata.token_endpoint, timeout=self._timeout, form=form, headers=headers
        )

    def _authenticate(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Client authentication (RFC 6749 2.3.1): the form and headers of a token-endpoint call."""
        # The shared client skips automatic Content-Type headers, so the form's is set here.
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        form = {**form, "client_id": self._client_id}
        if self._client_secret is None or self._auth_method == "none":
            return form, headers
        if self._auth_method == "client_secret_post":
            return {**form, "client_secret": self._client_secret}, headers
        del form["client_id"]
        # Both parts are form-urlencoded before base64, as RFC 6749 2.3.1 requires.
        pair = f"{quote(self._client_id, safe='')}:{quote(self._client_secret, safe='')}"
        return form, {**headers, "Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    async def _fetch_jwks(self) -> Any:
        metadata = await self.discovery.metadata()
        answer = await call_json(self._http, "GET", metadata.jwks_uri, timeout=self._timeout)
        if not answer.ok or not isinstance(answer.body, dict):
            raise UpstreamError(f"the provider's JWKS ({metadata.jwks_uri}) answered {answer.status}")
        return answer.body


def parse_token_answer(body: Any) -> TokenSet:
    """Tokens from a token-endpoint answer; raises ValueError when there is no usable access token."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("no access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ValueError(f"token_type {token_type!r} is not Bearer")
    expires_in = _number(body.get("expires_in")) or lifetime_from_jwt(access) or DEFAULT_ACCESS_LIFETIME
    refresh, id_token = body.get("refresh_token"), body.get("id_token")
    return TokenSet(
        access_token=access,
        expires_in=float(expires_in),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
    )


def _number(value: Any) -> float | None:
    """A positive number of seconds; some providers send it as a string."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _code_exchange_refused(answer: JsonAnswer) -> LoginRejected | None:
    if 400 <= answer.status < 500:
        return LoginRejected(f"the provider refused the code exchange ({_answer_error(answer)})")
    return None


def _refresh_refused(answer: JsonAnswer) -> RefreshRejected | ApiTokenRefused | None:
    error = _answer_error(answer)
    if answer.status in TERMINAL_REFRESH_STATUSES or (answer.status == 400 and error == "invalid_grant"):
        return RefreshRejected(f"the token endpoint answered {answer.status} ({error})")
    if answer.status == 400 and error in TARGET_REFUSALS:  # only a grant that names an API gets these
        return ApiTokenRefused(f"the token endpoint refused the API's token ({error})")
    return None


def login_scopes(scopes: str, api_targets: Sequence[ApiTarget]) -> str:
    """``OIDC_SCOPES`` and every route's API scopes (each once): consent at sign-in covers them all."""
    words = scopes.split()
    for target in api_targets:
        words += [scope for scope in (target.scopes or "").split() if scope not in words]
    return " ".join(words)


def _answer_error(answer: JsonAnswer) -> str:
    """The OAuth ``error`` code of an answer, safe to log."""
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    return _error_code(error) if isinstance(error, str) else f"HTTP {answer.status}"


def _error_code(value: str) -> str:
    return value if _ERROR_CODE.fullmatch(value) else "unrecognised error"


def _auth_params(raw: str | None) -> dict[str, str]:
    """OIDC_AUTH_PARAMS (``k=v&k2=v2``), without the parameters bffgate sets itself."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw or "", keep_blank_values=True):
        if key in RESERVED_AUTH_PARAMS:
            log.warning("OIDC_AUTH_PARAMS: %r is set by bffgate and is ignored", key)
        else:
            params[key] = value
    return params

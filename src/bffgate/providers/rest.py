"""The ``rest`` provider: an API with its own login, refresh and (optional) logout endpoints.

The API's shape is configured, not assumed (README, "Recipes"): the login body is JSON or a form; the
refresh token travels in a JSON field, a form field, ``Authorization: Bearer`` or the API's own cookie;
token fields may be dotted paths into the answer (``data.tokens.accessToken``); expiry is a lifetime
(``expires_in``) or an absolute time (``expires_at``). Refresh answers 400/401/403/422 are terminal (the
token is dead); anything else that fails is transient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from ..config import Settings
from ..errors import InvalidRequest, RefreshFailed, RefreshRejected, UpstreamError
from ..metrics import REVOCATION_FAILURES
from ..readiness import PROBE_TIMEOUT, reachable
from ..session import Session
from ..tokens import DEFAULT_ACCESS_LIFETIME, TokenSet, lifetime_from_jwt, user_from_jwt
from . import LoginRefusal, read_tokens
from .http import JsonAnswer, call_json

log = logging.getLogger("bffgate.provider")

# 422: Flask-JWT-Extended's answer to a token it cannot decode (e.g. signed with a key the API no
# longer has); sending the same token again can never succeed.
TERMINAL_REFRESH_STATUSES = frozenset({400, 401, 403, 422})


class RestProvider:
    """Talks to ``BFF_LOGIN_URL``, ``BFF_REFRESH_URL``, ``BFF_LOGOUT_URL``, ``BFF_USERINFO_URL``."""

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._http = http
        self._timeout = settings.bff_upstream_timeout
        self._access_path = settings.bff_access_token_field
        self._refresh_path = settings.bff_refresh_token_field
        self._expires_in_path = None if settings.bff_expires_at_field else settings.bff_expires_in_field
        self._expires_at_path = settings.bff_expires_at_field
        self._refresh_cookie = (
            settings.bff_refresh_cookie_name if settings.bff_refresh_token_in == "cookie" else None
        )

    @property
    def revokes_with_access_token(self) -> bool:
        """Whether logout presents the access token (so it must be fresh): not when the refresh token
        itself is the Bearer (``BFF_REFRESH_TOKEN_IN=header``), nor without a logout endpoint."""
        return bool(self._settings.logout_url) and self._settings.bff_refresh_token_in != "header"

    async def login(self, credentials: dict[str, Any]) -> tuple[TokenSet, dict[str, Any]] | LoginRefusal:
        answer = await self.login_answer(credentials)
        if 400 <= answer.status < 500:  # wrong password and the like: the browser gets it as it is
            return LoginRefusal(
                answer.status, answer.body if answer.body is not None else {"error": "login_failed"}
            )
        tokens = read_tokens(
            answer,
            lambda body: self.parse_tokens(body, answer.cookies),
            endpoint="login endpoint",
            rejection=lambda _: None,
            failure=UpstreamError,
        )
        return tokens, await self.user_data(tokens)

    async def login_answer(self, credentials: dict[str, Any]) -> JsonAnswer:
        """The login endpoint's answer to ``credentials``, sent as BFF_LOGIN_BODY says."""
        if self._settings.bff_login_body == "form":
            return await self._call("POST", self._settings.login_url, form=_as_form(credentials))
        return await self._call("POST", self._settings.login_url, json_body=credentials)

    async def refresh(self, refresh_token: str) -> TokenSet:
        try:
            answer = await self._call_with_refresh_token("POST", self._settings.refresh_url, refresh_token)
        except UpstreamError as exc:
            raise RefreshFailed(exc.detail) from None
        return read_tokens(
            answer,
            lambda body: self.parse_tokens(body, answer.cookies),
            endpoint="refresh endpoint",
            rejection=_refresh_refused,
            failure=RefreshFailed,
        )

    async def revoke(self, session: Session) -> None:
        """Call BFF_LOGOUT_URL with the access token as Bearer and the refresh token where
        BFF_REFRESH_TOKEN_IN says; a refusal or failure is logged and counted, never raised."""
        try:
            answer = await self.logout_answer(session)
        except UpstreamError as exc:
            REVOCATION_FAILURES.labels("unreachable").inc()
            log.warning("logout endpoint failed, the session ends here only: %s", exc.detail)
            return
        if answer is not None and not answer.ok:
            REVOCATION_FAILURES.labels("refused").inc()
            log.warning("logout endpoint answered %s, the session ends here only", answer.status)

    async def logout_answer(self, session: Session) -> JsonAnswer | None:
        """The logout endpoint's answer for ``session``; None when there is nothing to call."""
        url = self._settings.logout_url
        if not url or not session.refresh_token:
            return None
        bearer = session.access_token if self.revokes_with_access_token else None
        return await self._call_with_refresh_token(
            self._settings.bff_logout_method, url, session.refresh_token, bearer=bearer
        )

    async def ready(self) -> None:
        """The login and the refresh endpoints answer HTTP (any status: only reachability is judged)."""
        for url in dict.fromkeys((self._settings.login_url, self._settings.refresh_url)):
            await reachable(self._http, url, timeout=min(self._timeout, PROBE_TIMEOUT))

    async def user_data(self, tokens: TokenSet) -> dict[str, Any]:
        """BFF_USERINFO_URL's answer, else the login answer's other fields, else the JWT's claims."""
        url = self._settings.userinfo_url
        if url:
            headers = {"Authorization": f"Bearer {tokens.access_token}"}
            answer = await call_json(self._http, "GET", url, timeout=self._timeout, headers=headers)
            if not answer.ok or not isinstance(answer.body, dict):
                raise UpstreamError(f"the userinfo endpoint answered {answer.status}")
            return answer.body
        return tokens.user or user_from_jwt(tokens.access_token)

    def parse_tokens(self, body: Any, cookies: Mapping[str, str] | None = None) -> TokenSet:
        """Tokens from an answer (and its cookies); raises ValueError when there is no usable access token."""
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        access = field_at(body, self._access_path)
        if not isinstance(access, str) or not access:
            raise ValueError(f"no {self._access_path!r} string")
        if self._refresh_cookie is not None:
            refresh = (cookies or {}).get(self._refresh_cookie)
        else:
            refresh = field_at(body, self._refresh_path)
        return TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=self._lifetime(body, access),
            user=_user_fields(body, self._token_paths()),
        )

    def _lifetime(self, body: dict[str, Any], access: str) -> float:
        """Seconds the access token lives: from the answer (relative or absolute), else its JWT ``exp``."""
        if self._expires_at_path is not None:
            expires_at = _positive_number(field_at(body, self._expires_at_path))
            lifetime = None if expires_at is None else expires_at - time.time()
        else:
            lifetime = _positive_number(field_at(body, self._expires_in_path or ""))
        if lifetime is None or lifetime <= 0:
            lifetime = lifetime_from_jwt(access) or DEFAULT_ACCESS_LIFETIME
        return float(lifetime)

    def _token_paths(self) -> tuple[str, ...]:
        return tuple(
            p
            for p in (self._access_path, self._refresh_path, self._expires_in_path, self._expires_at_path)
            if p
        )

    async def _call_with_refresh_token(
        self, method: str, url: str, refresh_token: str, *, bearer: str | None = None
    ) -> JsonAnswer:
        """A refresh or logout call carrying the refresh token the way BFF_REFRESH_TOKEN_IN says."""
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        field = {self._settings.refresh_request_field: refresh_token}
        where = self._settings.bff_refresh_token_in
        if where == "body":
            return await self._call(method, url, json_body=field, headers=headers)
        if where == "form":
            return await self._call(method, url, form=field, headers=headers)
        if where == "header":
            headers["Authorization"] = f"Bearer {refresh_token}"
        else:  # cookie: sent back as the API set it
            headers["Cookie"] = f"{self._refresh_cookie}={refresh_token}"
        return await self._call(method, url, headers=headers)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JsonAnswer:
        return await call_json(
            self._http, method, url, timeout=self._timeout, json_body=json_body, form=form, headers=headers
        )


def field_at(body: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``data.tokens.accessToken``) of a JSON object, or None."""
    value = body
    for segment in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(segment)
    return value


def _positive_number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _as_form(credentials: dict[str, Any]) -> dict[str, str]:
    """The browser's JSON credentials as form fields (BFF_LOGIN_BODY=form): flat strings and numbers only."""
    form = {}
    for name, value in credentials.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidRequest(f"with a form login every credential is a string; {name!r} is not")
        form[name] = str(value)
    return form


def _refresh_refused(answer: JsonAnswer) -> RefreshRejected | None:
    if answer.status in TERMINAL_REFRESH_STATUSES:
        return RefreshRejected(f"the refresh endpoint answered {answer.status}")
    return None


def _user_fields(body: dict[str, Any], token_paths: tuple[str, ...]) -> dict[str, Any]:
    """The non-token part of a login answer; a ``user`` object in it is taken as the user itself.

    A top-level key that holds a token (``data`` of ``data.tokens.accessToken``) is left out whole.
    """
    if isinstance(body.get("user"), dict):
        return dict(body["user"])
    token_keys = {path.split(".", 1)[0] for path in token_paths}
    return {k: v for k, v in body.items() if k not in token_keys and "token" not in k.lower()}

"""The ``rest`` provider: an API with its own JSON login, refresh and (optional) logout endpoints.

Field names are configurable, so ``{"access": ..., "refresh": ...}`` APIs work with two settings.
Refresh answers 400/401/403 are terminal (the token is dead); anything else that fails is transient.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from ..config import Settings
from ..errors import LoginFailed, RefreshFailed, RefreshRejected, UpstreamError
from ..session import Session
from ..tokens import DEFAULT_ACCESS_LIFETIME, TokenSet, lifetime_from_jwt, user_from_jwt
from ..upstream import JsonAnswer, call_json
from . import read_tokens

log = logging.getLogger("bffgate.provider")

TERMINAL_REFRESH_STATUSES = frozenset({400, 401, 403})


class RestProvider:
    """Talks JSON to ``BFF_LOGIN_URL``, ``BFF_REFRESH_URL``, ``BFF_LOGOUT_URL``, ``BFF_USERINFO_URL``."""

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._http = http
        self._timeout = settings.bff_upstream_timeout
        self._fields = (
            settings.bff_access_token_field,
            settings.bff_refresh_token_field,
            settings.bff_expires_in_field,
        )

    async def login(self, credentials: dict[str, Any]) -> tuple[TokenSet, dict[str, Any]]:
        answer = await self._post(self._settings.login_url, credentials)
        tokens = read_tokens(
            answer,
            self.parse_tokens,
            endpoint="login endpoint",
            rejection=_login_refused,
            failure=UpstreamError,
        )
        return tokens, await self.user_data(tokens)

    async def refresh(self, refresh_token: str) -> TokenSet:
        try:
            answer = await self._post(self._settings.refresh_url, {self._fields[1]: refresh_token})
        except UpstreamError as exc:
            raise RefreshFailed(exc.detail) from None
        return read_tokens(
            answer,
            self.parse_tokens,
            endpoint="refresh endpoint",
            rejection=_refresh_refused,
            failure=RefreshFailed,
        )

    async def revoke(self, session: Session) -> None:
        url = self._settings.logout_url
        if not url or not session.refresh_token:
            return
        headers = {"Authorization": f"Bearer {session.access_token}"} if session.access_token else None
        try:
            answer = await self._post(url, {self._fields[1]: session.refresh_token}, headers)
        except UpstreamError as exc:
            log.warning("logout endpoint failed: %s", exc.detail)
            return
        if not answer.ok:
            log.warning("logout endpoint answered %s", answer.status)

    async def ready(self) -> None:
        """The refresh endpoint answers HTTP at all (any status: we only check it is reachable)."""
        await call_json(self._http, "GET", self._settings.refresh_url, timeout=min(self._timeout, 5.0))

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

    def parse_tokens(self, body: Any) -> TokenSet:
        """Tokens from an answer; raises ValueError when there is no usable access token."""
        access_field, refresh_field, expires_field = self._fields
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        access = body.get(access_field)
        if not isinstance(access, str) or not access:
            raise ValueError(f"no {access_field!r} string")
        refresh = body.get(refresh_field)
        expires_in = body.get(expires_field)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = lifetime_from_jwt(access) or DEFAULT_ACCESS_LIFETIME
        return TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=float(expires_in),
            user=_user_fields(body, self._fields),
        )

    async def _post(self, url: str, body: Any, headers: dict[str, str] | None = None) -> JsonAnswer:
        return await call_json(
            self._http, "POST", url, timeout=self._timeout, json_body=body, headers=headers
        )


def _login_refused(answer: JsonAnswer) -> LoginFailed | None:
    """A 4xx from the login endpoint goes back to the browser as it is (wrong password and the like)."""
    if 400 <= answer.status < 500:
        return LoginFailed(
            answer.status, answer.body if answer.body is not None else {"error": "login_failed"}
        )
    return None


def _refresh_refused(answer: JsonAnswer) -> RefreshRejected | None:
    if answer.status in TERMINAL_REFRESH_STATUSES:
        return RefreshRejected(f"the refresh endpoint answered {answer.status}")
    return None


def _user_fields(body: dict[str, Any], token_fields: tuple[str, ...]) -> dict[str, Any]:
    """The non-token part of a login answer; a ``user`` object in it is taken as the user itself."""
    if isinstance(body.get("user"), dict):
        return dict(body["user"])
    return {k: v for k, v in body.items() if k not in token_fields and "token" not in k.lower()}

"""The stateless store: the whole session lives in three sealed, HttpOnly cookies.

``__Host-refreshTokenEtls`` (sealed with ETLS_REFRESH) is the durable record: session id, creation
time, refresh and ID token, user data. ``__Host-accessTokenEtls`` and ``__Host-userDataEtls`` (sealed
with ETLS_ACCESS) live no longer than the access token. ``__Host-apiTokensEtls`` (ETLS_ACCESS too) holds
the per-API access tokens (``api_tokens.py``) when there are any, and lives as long as the last of
them. A cookie whose session id differs from the refresh cookie's is ignored, so cookies of two
sessions are never mixed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..bounded import ExpiringCache
from ..config import Settings
from ..cookies import CookieJar, CookieTooLarge
from ..errors import BackchannelUnsupported, SessionTooLarge
from ..sealing import Sealer
from ..session import ACCESS_COOKIE_MAX_AGE, ACCESS_KEYS, API_KEYS, DURABLE_KEYS, USER_KEYS, Session
from ..tokens import USER_CLAIMS

log = logging.getLogger("bffgate.store")

SESSION_CACHE_SIZE = 4096
ACCESS_COOKIE = "accessTokenEtls"
REFRESH_COOKIE = "refreshTokenEtls"
USER_COOKIE = "userDataEtls"
API_TOKENS_COOKIE = "apiTokensEtls"


class CookieSessionStore:
    """Sessions sealed into the browser's cookies; nothing is kept server-side."""

    def __init__(self, settings: Settings, jar: CookieJar) -> None:
        self._jar = jar
        self._idle = settings.bff_session_idle
        self._absolute = settings.bff_session_absolute
        self._access = Sealer(settings.access_secrets, "access")
        self._user = Sealer(settings.access_secrets, "user")
        self._refresh = Sealer(settings.refresh_secrets, "refresh")
        self._apis = Sealer(settings.access_secrets, "apis")
        self._names = (jar.name(ACCESS_COOKIE), jar.name(REFRESH_COOKIE), jar.name(USER_COOKIE))
        self._apis_name = jar.name(API_TOKENS_COOKIE)
        self._sessions: ExpiringCache[bytes, Session] = ExpiringCache(SESSION_CACHE_SIZE)

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        access_name, refresh_name, user_name = self._names
        access_value = self._jar.read(cookies, access_name)
        refresh_value = self._jar.read(cookies, refresh_name)
        user_value = self._jar.read(cookies, user_name)
        if access_value is None and refresh_value is None:
            return None
        apis_value = self._jar.read(cookies, self._apis_name)
        # The same cookies arrive request after request: the assembled session is kept, bounded,
        # until the first of its sealed values expires.
        source = f"{access_value or ''}\0{refresh_value or ''}\0{user_value or ''}\0{apis_value or ''}"
        key = hashlib.blake2b(source.encode(), digest_size=20).digest()
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        opened = self._open_all(access_value, refresh_value, user_value, apis_value)
        if opened is None:
            return None
        self._sessions.put(key, *opened)
        return opened[0]

    def _open_all(
        self,
        access_value: str | None,
        refresh_value: str | None,
        user_value: str | None,
        apis_value: str | None,
    ) -> tuple[Session, float] | None:
        """The session in these cookie values and when the first of them expires, or None."""
        access = _open(self._access, access_value)
        durable = _open(self._refresh, refresh_value)
        user = _open(self._user, user_value)
        apis = _open(self._apis, apis_value)
        if durable is None and access is None:
            return None
        try:
            session = self._assemble(
                durable[0] if durable else None,
                access[0] if access else None,
                user[0] if user else None,
                apis[0] if apis else None,
            )
        except (KeyError, TypeError, ValueError):  # sealed by an incompatible version: treat as absent
            return None
        if session is None:
            return None
        expiries = [opened[1] for opened in (access, durable, user, apis) if opened is not None]
        return session, min(*expiries, session.created_at + self._absolute)

    def _assemble(
        self,
        durable: dict[str, Any] | None,
        access: dict[str, Any] | None,
        user: dict[str, Any] | None,
        apis: dict[str, Any] | None,
    ) -> Session | None:
        sid = str((durable or access or {})["sid"])
        created_at = float((durable or access or {})["c"])
        if time.time() >= created_at + self._absolute:
            return None
        if access is not None and access["sid"] != sid:
            access = None
        user_data = user["u"] if user is not None and user["sid"] == sid else (durable or {}).get("u", {})
        api_tokens = apis.get("apis") if apis is not None and apis["sid"] == sid else None
        # The parts joined back through the one codec, ``Session.from_dict``.
        return Session.from_dict(
            {
                **(durable or {}),
                **(access or {}),
                "sid": sid,
                "c": created_at,
                "u": user_data,
                "apis": api_tokens,
            }
        )

    async def save(self, session: Session, *, existing: bool = False) -> None:
        """Nothing to do: the session travels in the cookies of the response."""

    async def delete(self, session: Session) -> None:
        """Nothing to do: clearing the cookies ends a stateless session."""

    # Stateless: nothing but a browser's own cookies knows its session, so no other can be ended.
    server_side = False

    async def delete_all_of_user(self, user: Mapping[str, Any]) -> int:
        return 0

    async def delete_provider_sessions(self, issuer: str, *, sid: str | None, sub: str | None) -> int:
        raise BackchannelUnsupported()

    async def first_use_of_logout_token(self, issuer: str, jti: str, window: float) -> bool:
        raise BackchannelUnsupported()

    def set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        try:
            return self._set_cookies(session, cookies)
        except CookieTooLarge:
            pass
        # Too big for the bounded chunks: keep the tokens, trim what is only for display (user data
        # to its usual claims, the ID token used as a logout hint) rather than fail the request.
        log.warning("session %s too large for cookies: user data trimmed, ID token dropped", session.sid[:6])
        slim = replace(
            session, user={k: v for k, v in session.user.items() if k in USER_CLAIMS}, id_token=None
        )
        try:
            return self._set_cookies(slim, cookies)
        except CookieTooLarge:
            pass
        # The access token itself does not fit. The refresh token may have been rotated: keep it
        # (access and user cookies cleared) so the next request refreshes with it, not a spent one.
        try:
            keep = self._set_cookies(replace(slim, access_token=None, api_tokens={}), cookies)
        except CookieTooLarge:
            keep = []
        raise SessionTooLarge(set_cookies=keep)

    def _set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        access_name, refresh_name, user_name = self._names
        now = time.time()
        session_end = session.session_expires_at(self._idle, self._absolute, now)
        durable = session.part(DURABLE_KEYS)
        headers = self._write(cookies, refresh_name, self._refresh, durable, now, session_end)
        access_end = now + session.access_max_age(now)
        if session.access_token and access_end > now:
            access = session.part(ACCESS_KEYS)
            headers += self._write(cookies, access_name, self._access, access, now, access_end)
            user = session.part(USER_KEYS)
            headers += self._write(cookies, user_name, self._user, user, now, access_end)
        else:
            headers += self._jar.clear(cookies, access_name) + self._jar.clear(cookies, user_name)
        return headers + self._api_cookie(session, cookies, now)

    def _api_cookie(self, session: Session, cookies: Mapping[str, str], now: float) -> list[str]:
        """The per-API tokens' cookie: written while one of them lives (at most 15 minutes, like the
        access cookie), else expired if the browser holds one; sessions without any never get it."""
        until = min(now + ACCESS_COOKIE_MAX_AGE, session.api_expires_at())
        if session.api_tokens and until > now:
            return self._write(cookies, self._apis_name, self._apis, session.part(API_KEYS), now, until)
        return self._clear_held(cookies, self._apis_name)

    def _clear_held(self, cookies: Mapping[str, str], name: str) -> list[str]:
        return self._jar.clear(cookies, name) if self._jar.read(cookies, name) is not None else []

    def _write(
        self, cookies: Mapping[str, str], name: str, sealer: Sealer, data: Any, now: float, until: float
    ) -> list[str]:
        return self._jar.write(cookies, name, sealer.seal(data, until), int(until - now))

    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]:
        headers = [header for name in self._names for header in self._jar.clear(cookies, name)]
        return headers + self._clear_held(cookies, self._apis_name)

    def has_cookies(self, cookies: Mapping[str, str]) -> bool:
        return any(self._jar.read(cookies, name) for name in (*self._names, self._apis_name))

    async def ping(self) -> None:
        """Always ready: the cookie store has no server."""


def _open(sealer: Sealer, value: str | None) -> tuple[dict[str, Any], float] | None:
    opened = sealer.unseal_with_expiry(value) if value else None
    return opened if opened is not None and isinstance(opened[0], dict) else None

"""Shared fakes of the unit layer: a ``SessionStore`` and a ``TokenProvider`` in memory.

Each records what was asked of it, so that a test asserts what the module under test did with its
store or provider. (``memory_transport.py`` is the fake of the third seam, the API transport.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bffgate.session import Session
from bffgate.tokens import TokenSet


class MemoryStore:
    """A ``SessionStore`` that loads ``session`` (None: no session) for any cookies.

    Its Set-Cookie headers name the session's access token (``token=at1``), so a test sees which
    session reached the browser; ``sealed`` lists every session ``set_cookies`` was asked for.
    """

    def __init__(self, session: Session | None = None) -> None:
        self.session = session
        self.saved: list[Session] = []
        self.deleted: list[Session] = []
        self.sealed: list[Session] = []

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        return self.session

    async def save(self, session: Session, *, existing: bool = False) -> None:
        self.saved.append(session)

    async def delete(self, session: Session) -> None:
        self.deleted.append(session)

    def set_cookies(self, session: Session, cookies: Mapping[str, str]) -> list[str]:
        self.sealed.append(session)
        return [f"token={session.access_token}"]

    def clear_cookies(self, cookies: Mapping[str, str]) -> list[str]:
        return []

    def has_cookies(self, cookies: Mapping[str, str]) -> bool:
        return False

    async def ping(self) -> None:
        return None

    server_side = False

    async def delete_all_of_user(self, user: Mapping[str, Any]) -> int:
        return 0

    async def delete_provider_sessions(self, issuer: str, *, sid: str | None, sub: str | None) -> int:
        return 0

    async def first_use_of_logout_token(self, issuer: str, jti: str, window: float) -> bool:
        return True


class RotatingProvider:
    """A ``TokenProvider`` that answers at once, handing out ``at1``/``rt1``, ``at2``/``rt2``… per refresh."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def refresh(self, refresh_token: str) -> TokenSet:
        self.refreshes += 1
        return TokenSet(
            access_token=f"at{self.refreshes}", refresh_token=f"rt{self.refreshes}", expires_in=600
        )

    async def revoke(self, session: Session) -> None:
        return None

    async def ready(self) -> None:
        return None

    revokes_with_access_token = False


def session_of(sid: str = "sid-1", *, expires_in: float = 600) -> Session:
    """A session with access token ``at0`` and refresh token ``rt0``, issued now and expiring in ``expires_in`` seconds."""
    now = time.time()
    lifetime = max(expires_in, 60)
    return Session(
        sid=sid,
        created_at=now,
        access_token="at0",
        access_expires_at=now + expires_in,
        access_issued_at=now + expires_in - lifetime,
        refresh_token="rt0",
    )

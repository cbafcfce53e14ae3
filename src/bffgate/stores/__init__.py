"""Session stores: ``cookie`` (stateless, the default) and ``redis`` (server-side), chosen by settings."""

from __future__ import annotations

from ..config import Settings
from ..cookies import CookieJar
from ..session import SessionStore
from .cookie import CookieSessionStore

__all__ = ["CookieSessionStore", "create_store"]


def create_store(settings: Settings, jar: CookieJar) -> SessionStore:
    """The store ``BFF_SESSION_STORE`` names."""
    if settings.bff_session_store == "redis":
        raise NotImplementedError("BFF_SESSION_STORE=redis is not available yet")
    return CookieSessionStore(settings, jar)

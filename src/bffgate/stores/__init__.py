"""Session stores: ``cookie`` (stateless, the default) and ``redis`` (server-side), chosen by settings."""

from __future__ import annotations

from ..config import Settings
from ..cookies import CookieJar
from ..redis_client import RedisClient
from ..session import SessionStore
from .cookie import CookieSessionStore
from .redis import RedisSessionStore

__all__ = ["CookieSessionStore", "RedisSessionStore", "create_store"]


def create_store(settings: Settings, jar: CookieJar, client: RedisClient | None) -> SessionStore:
    """The store ``BFF_SESSION_STORE`` names (settings validation guarantees Redis for ``redis``)."""
    if settings.bff_session_store == "redis" and client is not None:
        return RedisSessionStore(settings, jar, client)
    return CookieSessionStore(settings, jar)

"""Token providers behind one protocol: ``rest`` (an API's own login/refresh endpoints) and ``oidc``."""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from ..config import Settings
from ..session import Session
from ..tokens import TokenSet


class TokenProvider(Protocol):
    """What the gateway needs from whoever issues tokens."""

    async def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens; raises ``RefreshRejected`` (terminal) or ``RefreshFailed`` (transient)."""

    async def revoke(self, session: Session) -> None:
        """Best-effort revocation of the session's refresh token at logout; never raises."""

    async def ready(self) -> None:
        """Raise ``UpstreamError`` when the provider cannot be used (readiness, ``bffgate check``)."""


class PasswordLogin(Protocol):
    """Providers that take credentials from the browser (``rest``)."""

    async def login(self, credentials: dict[str, Any]) -> tuple[TokenSet, dict[str, Any]]:
        """Tokens and user data for ``credentials``; raises ``LoginFailed`` or ``UpstreamError``."""


def create_provider(settings: Settings, http: aiohttp.ClientSession) -> TokenProvider:
    """The provider ``BFF_PROVIDER`` names."""
    from .rest import RestProvider

    if settings.bff_provider == "oidc":
        raise NotImplementedError("BFF_PROVIDER=oidc is not available yet")
    return RestProvider(settings, http)

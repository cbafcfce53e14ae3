"""Which API a per-API token is for: an RFC 8707 ``resource`` and the ``scope`` asked with it.

A leaf module: the provider asks for the targets at sign-in and in its grants, the session keys its
per-API tokens by ``ApiTarget.key``, and ``api_tokens.py`` obtains and refreshes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """One API's token request. ``resource`` is its RFC 8707 resource indicator (an absolute URI, the
    token's audience); ``scopes`` (space-separated) narrow the token, and alone select the API on
    providers that pick the audience from the scope (Microsoft Entra's ``api://…/.default``)."""

    resource: str | None = None
    scopes: str | None = None

    def __post_init__(self) -> None:
        if not self.resource and not self.scopes:
            raise ValueError("an API target needs a resource or scopes")

    @property
    def key(self) -> str:
        """The name of this API's token in the session: tokens of two targets are never mixed (a
        resource indicator has no fragment, so ``#`` cannot be part of it)."""
        return f"{self.resource or ''}#{self.scopes or ''}"

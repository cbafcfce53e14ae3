"""Token providers behind one protocol: ``rest`` (an API's own login/refresh endpoints) and ``oidc``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import aiohttp

from ..api_target import ApiTarget
from ..config import Settings
from ..session import Session
from ..tokens import TokenSet
from .http import JsonAnswer
from .logout_token import LogoutToken


class TokenProvider(Protocol):
    """What the gateway needs from whoever issues tokens.

    How a user signs in is a capability of its own: ``PasswordLogin`` or ``RedirectLogin``; and
    ``BackchannelLogout`` for providers that end sessions server to server.
    """

    @property
    def revokes_with_access_token(self) -> bool:
        """Whether ``revoke`` presents the access token (so logout refreshes an expired one first)."""

    async def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens; raises ``RefreshRejected`` (terminal) or ``RefreshFailed`` (transient)."""

    async def revoke(self, session: Session) -> None:
        """Best-effort revocation of the session's refresh token at logout; never raises."""

    async def ready(self) -> None:
        """Raise ``UpstreamError`` when the provider cannot be used (readiness, ``bffgate check``)."""


@dataclass(frozen=True, slots=True)
class LoginRefusal:
    """The API's own refusal of a password login (a wrong password and the like), not an error of ours:
    the browser gets its status and JSON body as the API wrote them."""

    status: int
    body: Any
    code: ClassVar[str] = "login_refused"  # the problems metric's label


@runtime_checkable
class PasswordLogin(Protocol):
    """Providers that take credentials from the browser (``rest``)."""

    async def login(self, credentials: dict[str, Any]) -> tuple[TokenSet, dict[str, Any]] | LoginRefusal:
        """Tokens and user data for ``credentials``, or the API's refusal; raises ``UpstreamError``."""


@runtime_checkable
class RedirectLogin(Protocol):
    """Providers that sign the user in on their own pages and send the browser back (``oidc``)."""

    async def start_login(self, return_to: str) -> tuple[str, dict[str, Any]]:
        """The URL to send the browser to, and the transaction to keep (sealed) until it comes back."""

    async def finish_login(
        self, params: Mapping[str, str], transaction: Mapping[str, Any]
    ) -> tuple[TokenSet, dict[str, Any]]:
        """Tokens and user data from the callback's query; raises ``LoginRejected`` or ``UpstreamError``."""

    async def end_session_url(self, id_token_hint: str | None) -> str | None:
        """Where the browser ends its session at the provider, or None; never raises.

        The URL carries ``id_token_hint`` when given: only the gateway's logout redirect asks for that,
        never a page (``logout_redirect.py``)."""


@runtime_checkable
class ApiTokenGrant(Protocol):
    """Providers that issue a token for one API from the user's refresh token (RFC 8707, ``oidc``)."""

    async def refresh_for_api(self, refresh_token: str, target: ApiTarget) -> TokenSet:
        """A token for ``target`` (and maybe a rotated refresh token); raises like ``refresh``, or
        ``ApiTokenRefused`` when the grant does not cover that API."""


@runtime_checkable
class BackchannelLogout(Protocol):
    """Providers that tell the gateway, server to server, that a user's session there has ended."""

    async def logout_token(self, token: str) -> LogoutToken:
        """The claims of a valid logout token; raises ``InvalidLogoutToken`` (``UpstreamError``: JWKS)."""


def read_tokens(
    answer: JsonAnswer,
    parse: Callable[[Any], TokenSet],
    *,
    endpoint: str,
    rejection: Callable[[JsonAnswer], Exception | None],
    failure: Callable[[str], Exception],
) -> TokenSet:
    """A token endpoint's answer, read the same way by every flow of every provider.

    ``rejection`` says whether the answer is a refusal (and what to raise: the flows differ there);
    any other non-2xx answer, or one without usable tokens, raises ``failure``.
    """
    refused = rejection(answer)
    if refused is not None:
        raise refused
    if not answer.ok:
        raise failure(f"the {endpoint} answered {answer.status}")
    try:
        return parse(answer.body)
    except ValueError as exc:
        raise failure(f"the {endpoint}'s answer is unusable: {exc}") from None


def create_provider(
    settings: Settings, http: aiohttp.ClientSession, api_targets: Sequence[ApiTarget] = ()
) -> TokenProvider:
    """The provider ``BFF_PROVIDER`` names; ``api_targets``: the APIs it asks per-API tokens for."""
    from .oidc import OidcProvider
    from .rest import RestProvider

    if settings.bff_provider == "oidc":
        return OidcProvider(settings, http, api_targets)
    return RestProvider(settings, http)

"""A token per API: the session's access token for one API, kept apart from every other.

A route that names an API (``resource``, RFC 8707, and/or ``scopes``) does not get the session's own
access token: it gets a token the provider issued for that API alone, from the user's refresh token
(``OidcProvider.refresh_for_api``: the refresh-token grant with ``resource`` and ``scope``). The
session keeps one such token per API (``Session.api_tokens``, by ``ApiTarget.key``), sealed like the
rest: in the ``apiTokensEtls`` cookie, or in Redis with the session. A token is only ever looked up
by its own target, so one API's token is never sent to another.

Obtaining and refreshing them is the refresh coordinator's work (``refresh.py``): the grants use the
session's refresh token, which the provider may rotate, so they share its single flight, its turns
per session, its grace window and its logout tombstones. This module is the policy on top: when a
route's token is missing or about to expire, and the one forced renewal after the API's 401.
"""

from __future__ import annotations

from .api_target import ApiTarget
from .errors import ApiTokenRefused, RefreshUnavailable
from .refresh import RefreshCoordinator, token_of
from .session import Session


class ApiTokens:
    """The per-API tokens of sessions, refreshed ahead of expiry like the session's own."""

    def __init__(self, refresher: RefreshCoordinator, *, skew: float) -> None:
        self._refresher = refresher
        self._skew = skew

    async def fresh(self, session: Session, target: ApiTarget) -> tuple[Session, str]:
        """The newest state of ``session`` and its unexpired token for ``target`` (one grant for all
        the requests that need it at once)."""
        session = await self._refresher.current(session)
        _check_granted(session, target)
        token = session.api_tokens.get(target.key)
        if token is None or token.needs_refresh(self._skew):
            session = await self._refresher.refresh(session, target=target)
        return session, _token(session, target)

    async def renewed(self, session: Session, target: ApiTarget, rejected: str) -> tuple[Session, str]:
        """After the API answered 401 to ``rejected``: a newer token for ``target``, never that one."""
        _check_granted(session, target)
        session = await self._refresher.refresh(session, target=target, rejected_access_token=rejected)
        return session, _token(session, target)


def _check_granted(session: Session, target: ApiTarget) -> None:
    """Refuse a resource the session's sign-in did not ask for, before asking the provider: a grant
    does not cover it (RFC 8707 2.1), and some providers (oidc-provider) spend the refresh token on
    such a request before refusing it, so asking would end the session at its next refresh."""
    if target.resource and target.resource not in session.resources:
        raise ApiTokenRefused("this session's sign-in did not ask for this API")


def _token(session: Session, target: ApiTarget) -> str:
    token = token_of(session, target)
    if token is None:  # a concurrent rotation handed back a state without it: try again later
        raise RefreshUnavailable("no token for this API yet; try again")
    return token

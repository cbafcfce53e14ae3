"""Session administration (Redis store): list a user's sessions, end one, end them all.

An operator's tool, never reachable with a user's cookie: the routes live on the operators' listener
(``BFF_METRICS_ADDRESS``) and, with ``BFF_ADMIN_TOKEN``, on the main listener behind
``Authorization: Bearer <token>``; cookies are never read. ``bffgate sessions list|end`` does the same
from the command line.

A user is named by the claim their sessions are indexed by (``sub``, else ``id``, else ``email`` of the
user data); a session by its fingerprint, the ``session`` of the log lines — never by its id or a
token. Ending a session works as a logout does: tombstoned for every instance (an in-flight refresh
cannot bring it back), refresh token revoked at the provider where possible, deleted. Every action
is logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import AdminUnauthorized, BffError, InvalidRequest, NotFound
from .gateway import Gateway
from .logs import fields, fingerprint, user_hash
from .metrics import PROBLEMS
from .problems import problem_response
from .stores.redis import RedisSessionStore, StoredSession

log = logging.getLogger("bffgate.admin")

USER_CLAIMS = ("sub", "id", "email")
PATH = "/admin/sessions"


def user_from(values: dict[str, str]) -> dict[str, str]:
    """The user named by exactly one of ``sub``, ``id``, ``email``."""
    given = {claim: values[claim] for claim in USER_CLAIMS if values.get(claim)}
    if len(given) != 1:
        raise InvalidRequest("name the user with exactly one of sub, id or email")
    return given


def describe(stored: StoredSession) -> dict[str, Any]:
    """What an operator sees of a session: no token, no session id, no raw user agent."""
    session = stored.session
    return {
        "session": fingerprint(session.sid),
        "createdAt": int(session.created_at),
        "lastRefreshAt": int(session.access_issued_at) if session.access_issued_at else None,
        "lastSeenAt": stored.last_seen,
        "userAgent": stored.agent,
        "expiresAt": int(stored.expires_at),
    }


async def list_sessions(gateway: Gateway, user: dict[str, str]) -> list[dict[str, Any]]:
    store = _redis_store(gateway)
    sessions = await store.sessions_of_user(user)
    log.info(
        "admin: sessions listed", extra=fields(event="admin_list", user=user_hash(user), found=len(sessions))
    )
    return sorted((describe(stored) for stored in sessions), key=lambda d: d["createdAt"])


async def end_sessions(gateway: Gateway, user: dict[str, str], session: str | None = None) -> int:
    """End ``user``'s session with fingerprint ``session``, or all of them; returns how many ended."""
    store = _redis_store(gateway)
    ended = 0
    for stored in await store.sessions_of_user(user):
        found = stored.session
        if session is not None and fingerprint(found.sid) != session:
            continue
        newest = await gateway.refresher.end(found)  # tombstone first: no refresh brings it back
        await gateway.provider.revoke(newest)
        await store.delete(found)
        ended += 1
        log.info(
            "admin: session ended",
            extra=fields(event="admin_end", user=user_hash(user), session=fingerprint(found.sid)),
        )
    if session is not None and ended == 0:
        raise NotFound("this user has no session with that fingerprint")
    return ended


def _redis_store(gateway: Gateway) -> RedisSessionStore:
    if not isinstance(gateway.store, RedisSessionStore):
        raise NotFound("session administration needs BFF_SESSION_STORE=redis")
    return gateway.store


class AdminEndpoints:
    """``GET /admin/sessions?sub=…`` lists; ``DELETE /admin/sessions?sub=…[&session=…]`` ends."""

    def __init__(
        self, gateway: Callable[[], Awaitable[Gateway]], token: str | None, *, trusted: bool = False
    ) -> None:
        self._gateway = gateway
        self._token = token.encode() if token else None
        self._trusted = trusted

    def routes(self) -> list[Route]:
        return [Route(PATH, self.sessions, methods=["GET", "DELETE"])]

    async def sessions(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-store"}
        try:
            self._authorize(request)
            gateway = await self._gateway()
            user = user_from(dict(request.query_params))
            if request.method == "GET":
                body: dict[str, Any] = {"sessions": await list_sessions(gateway, user)}
            else:
                body = {
                    "endedSessions": await end_sessions(gateway, user, request.query_params.get("session"))
                }
        except BffError as error:
            PROBLEMS.labels(error.code).inc()
            if isinstance(error, AdminUnauthorized):
                headers["WWW-Authenticate"] = "Bearer"
            return problem_response(error, headers=headers)
        return JSONResponse(body, headers=headers)

    def _authorize(self, request: Request) -> None:
        if self._trusted:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if (
            self._token is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(presented.strip().encode("latin-1", errors="replace"), self._token)
        ):
            raise AdminUnauthorized()

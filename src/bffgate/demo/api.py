"""The bundled demo API: a small, deliberately strict resource server with its own login.

``bffgate demo`` runs it beside the gateway so there is something real to log in to and call;
the test suite and the benchmark use it as the upstream for the same reason.

It plays the *strictest provider* the gateway has to cope with:

* access tokens are short-lived HS256 JWTs (claims ``sub``, ``iat``, ``exp``, ``jti``, ``fam``);
* refresh tokens are opaque and rotate on every use;
* presenting a refresh token that was already rotated away is treated as theft: the whole token
  *family* (every token descended from one login) is revoked, so a gateway that ever refreshes
  twice with the same token loses the session. There is no grace period.

Everything lives in memory (:class:`DemoState`) and the signing key is random per process, so a
restart logs everyone out. The state also counts calls, which the tests and the benchmark read to
prove how often the gateway refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = [
    "DEMO_USER",
    "DOWNLOAD_CHUNK_SIZE",
    "DOWNLOAD_DEFAULT_SIZE",
    "DOWNLOAD_MAX_SIZE",
    "AccessClaims",
    "DemoState",
    "TokenGrant",
    "create_demo_api",
]

_ALGORITHM: Final = "HS256"

# The one account. Credentials are public on purpose: this is a demo.
_DEMO_USERNAME: Final = "demo"
_DEMO_PASSWORD: Final = "demo"
DEMO_USER: Final[Mapping[str, str]] = {"id": "demo", "name": "Demo User", "email": "demo@example.com"}

_ITEMS: Final[tuple[Mapping[str, object], ...]] = (
    {"id": 1, "name": "Keyboard", "price": 49.9},
    {"id": 2, "name": "Mouse", "price": 19.5},
    {"id": 3, "name": "Monitor", "price": 189.0},
    {"id": 4, "name": "Headset", "price": 59.0},
    {"id": 5, "name": "Webcam", "price": 39.99},
)

TICK_SECONDS: Final = 1.0  # the /ticks WebSocket's default interval
DOWNLOAD_DEFAULT_SIZE: Final = 1024 * 1024
DOWNLOAD_MAX_SIZE: Final = 200 * 1024 * 1024
DOWNLOAD_CHUNK_SIZE: Final = 64 * 1024
# Byte i of every download is i % 256. The chunk size is a multiple of 256, so one immutable
# chunk serves every position and a 200 MiB download never allocates more than this.
_DOWNLOAD_CHUNK: Final = bytes(range(256)) * (DOWNLOAD_CHUNK_SIZE // 256)


@dataclass(frozen=True)
class TokenGrant:
    """What login and refresh hand out; ``family`` is for bookkeeping and never sent."""

    # repr=False: a grant that ends up in a log line must not leak usable tokens.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    family: str

    def to_json(self) -> dict[str, object]:
        return {
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expiresIn": self.expires_in,
            "user": dict(DEMO_USER),
        }


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token that is currently honoured."""

    sub: str
    fam: str
    jti: str
    exp: float


@dataclass
class _Family:
    """One login's chain of refresh tokens; revoking it kills every token it issued."""

    user_id: str
    current_refresh: str = field(repr=False)
    refresh_expires_at: float
    revoked: bool = False


@dataclass
class DemoState:
    """All of the demo API's memory: token families, the signing key and call counters.

    Methods are synchronous on purpose: a handler awaits its request body first and then calls
    one method, so check-and-rotate can never interleave with another request on the event loop.
    """

    access_ttl: float
    refresh_ttl: float
    login_calls: int = 0
    logout_calls: int = 0
    refresh_calls: int = 0
    refresh_calls_by_family: dict[str, int] = field(default_factory=dict)
    reuse_detected: int = 0
    # Every refresh token ever issued (current or superseded) -> its family, so reuse of an old
    # one is recognised. repr=False keeps tokens and the key out of any log line showing the state.
    _families: dict[str, _Family] = field(default_factory=dict, init=False, repr=False)
    _refresh_owner: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _key: OctKey = field(default_factory=lambda: OctKey.generate_key(256), init=False, repr=False)

    @property
    def expires_in(self) -> int:
        return max(1, int(self.access_ttl))

    def family_of_refresh_token(self, token: str) -> str | None:
        """The family a refresh token was issued to, whether still current, superseded or revoked."""
        return self._refresh_owner.get(token)

    def is_family_active(self, family: str) -> bool:
        fam = self._families.get(family)
        return fam is not None and not fam.revoked

    def login(self, user_id: str) -> TokenGrant:
        """Start a new family for ``user_id`` and issue its first token pair."""
        family = uuid.uuid4().hex
        refresh = self._new_refresh_token(family)
        self._families[family] = _Family(
            user_id=user_id, current_refresh=refresh, refresh_expires_at=time.time() + self.refresh_ttl
        )
        self.refresh_calls_by_family[family] = 0
        return TokenGrant(self._mint_access_token(user_id, family), refresh, self.expires_in, family)

    def refresh(self, token: str) -> TokenGrant | None:
        """Rotate ``token``; ``None`` means invalid_grant (and revokes the family on reuse).

        Counts the call against the token's family; the handler counts the total itself so
        that malformed requests are counted too.
        """
        family_id = self._refresh_owner.get(token)
        if family_id is None:
            return None
        self.refresh_calls_by_family[family_id] = self.refresh_calls_by_family.get(family_id, 0) + 1
        fam = self._families[family_id]
        if fam.revoked:
            return None
        if token != fam.current_refresh:
            # A superseded token came back: either the client raced itself or it was stolen.
            # Which copy is legitimate is unknowable, so neither may continue.
            fam.revoked = True
            self.reuse_detected += 1
            return None
        now = time.time()
        if now >= fam.refresh_expires_at:
            return None
        fam.current_refresh = self._new_refresh_token(family_id)
        fam.refresh_expires_at = now + self.refresh_ttl
        access = self._mint_access_token(fam.user_id, family_id)
        return TokenGrant(access, fam.current_refresh, self.expires_in, family_id)

    def revoke_by_refresh_token(self, token: str) -> None:
        """Revoke the family of any refresh token it issued; unknown tokens are ignored."""
        family_id = self._refresh_owner.get(token)
        if family_id is not None:
            self._families[family_id].revoked = True

    def verify_access_token(self, token: str) -> AccessClaims | None:
        """Claims of a well-signed, unexpired token whose family is still live; else ``None``."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM]).claims
        except (JoseError, ValueError):
            return None
        parsed = _parse_claims(claims)
        if parsed is None or time.time() >= parsed.exp or not self.is_family_active(parsed.fam):
            return None
        return parsed

    def _new_refresh_token(self, family: str) -> str:
        token = secrets.token_urlsafe(32)
        self._refresh_owner[token] = family
        return token

    def _mint_access_token(self, user_id: str, family: str) -> str:
        now = time.time()
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + self.access_ttl,
            "jti": uuid.uuid4().hex,
            "fam": family,
        }
        return jwt.encode({"alg": _ALGORITHM}, claims, self._key)


def _parse_claims(claims: Mapping[str, Any]) -> AccessClaims | None:
    """Type-check the claims we rely on; a token we signed always passes, anything else fails."""
    sub, fam, jti, exp = (claims.get(name) for name in ("sub", "fam", "jti", "exp"))
    if not (isinstance(sub, str) and isinstance(fam, str) and isinstance(jti, str)):
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return AccessClaims(sub=sub, fam=fam, jti=jti, exp=float(exp))


# --- HTTP layer -------------------------------------------------------------------------------

ProtectedEndpoint = Callable[[Request, AccessClaims], Awaitable[Response]]
ProtectedSocket = Callable[[WebSocket, AccessClaims], Awaitable[None]]


def _error(status: int, code: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code}, status_code=status, headers=headers)


def _invalid_request() -> JSONResponse:
    return _error(400, "invalid_request")


def _invalid_token() -> JSONResponse:
    return _error(401, "invalid_token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` if it is not one (so callers answer 400, not 500)."""
    try:
        body = json.loads(await request.body())
    # ValueError covers invalid UTF-8 too; RecursionError is deeply nested input like "[[[[...".
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _string_field(body: Mapping[str, Any] | None, name: str) -> str | None:
    value = None if body is None else body.get(name)
    return value if isinstance(value, str) else None


def _bearer_token(request: HTTPConnection) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router 404/405 as JSON, like every other answer of this API."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only; narrows the type
        raise exc
    codes = {404: "not_found", 405: "method_not_allowed"}
    return _error(exc.status_code, codes.get(exc.status_code, "http_error"), exc.headers)


async def _download_stream(size: int) -> AsyncIterator[bytes]:
    full_chunks, tail = divmod(size, DOWNLOAD_CHUNK_SIZE)
    for _ in range(full_chunks):
        yield _DOWNLOAD_CHUNK
    if tail:
        yield _DOWNLOAD_CHUNK[:tail]


def _download_size(raw: str | None) -> int | None:
    """Requested size clamped to the cap; ``None`` if it is not a non-negative integer."""
    if raw is None:
        return DOWNLOAD_DEFAULT_SIZE
    if not raw.isascii() or not raw.isdigit():
        return None
    # Compare as a string length first so a million-digit number is not parsed.
    if len(raw) > len(str(DOWNLOAD_MAX_SIZE)):
        return DOWNLOAD_MAX_SIZE
    return min(int(raw), DOWNLOAD_MAX_SIZE)


def _tick_seconds(raw: str | None) -> float:
    try:
        seconds = float(raw) if raw is not None else TICK_SECONDS
    except ValueError:
        seconds = TICK_SECONDS
    return min(max(seconds, 0.01), 60.0) if seconds == seconds else TICK_SECONDS  # NaN: the default


def _first_subprotocol(websocket: WebSocket) -> str | None:
    """The first sub-protocol the client offered, if any (a client that offers one needs one back)."""
    offered: list[str] = websocket.scope.get("subprotocols") or []
    return offered[0] if offered else None


def _is_price(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


class _Endpoints:
    """Request handlers bound to one :class:`DemoState`."""

    def __init__(self, state: DemoState) -> None:
        self.state = state
        self._next_item_id = len(_ITEMS) + 1

    def protected(self, endpoint: ProtectedEndpoint) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``endpoint`` so it only runs for a request with a currently valid access token."""

        async def guarded(request: Request) -> Response:
            token = _bearer_token(request)
            claims = None if token is None else self.state.verify_access_token(token)
            if claims is None:
                return _invalid_token()
            return await endpoint(request, claims)

        return guarded

    def protected_socket(self, endpoint: ProtectedSocket) -> Callable[[WebSocket], Awaitable[None]]:
        """``protected`` for a WebSocket: a handshake without a valid access token gets the 401."""

        async def guarded(websocket: WebSocket) -> None:
            token = _bearer_token(websocket)
            claims = None if token is None else self.state.verify_access_token(token)
            if claims is None:
                await websocket.send_denial_response(_invalid_token())
                return
            await endpoint(websocket, claims)

        return guarded

    async def ticks(self, websocket: WebSocket, claims: AccessClaims) -> None:
        """A counter, one message a second (``?every=`` seconds, 0.01 to 60): the demo page's live
        panel. Messages from the browser are read and dropped, so its close is seen at once."""
        every = _tick_seconds(websocket.query_params.get("every"))
        await websocket.accept(subprotocol=_first_subprotocol(websocket))

        async def tick() -> None:
            for count in range(1, 1 << 62):
                await websocket.send_json({"tick": count, "user": claims.sub})
                await asyncio.sleep(every)

        sender = asyncio.get_running_loop().create_task(tick())
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError):
                await sender

    async def echo(self, websocket: WebSocket, claims: AccessClaims) -> None:
        """Every message back as it came (text as text, binary as binary), until the client closes."""
        await websocket.accept(subprotocol=_first_subprotocol(websocket))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
            else:
                await websocket.send_text(message.get("text") or "")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def login(self, request: Request) -> Response:
        self.state.login_calls += 1
        body = await _json_object(request)
        username, password = _string_field(body, "username"), _string_field(body, "password")
        if username is None or password is None:
            return _invalid_request()
        # Compare both fields in constant time, and always both, so timing reveals nothing.
        user_ok = secrets.compare_digest(username.encode(), _DEMO_USERNAME.encode())
        password_ok = secrets.compare_digest(password.encode(), _DEMO_PASSWORD.encode())
        if not (user_ok and password_ok):
            return _error(401, "invalid_credentials")
        return JSONResponse(self.state.login(DEMO_USER["id"]).to_json())

    async def refresh(self, request: Request) -> Response:
        self.state.refresh_calls += 1
        token = _string_field(await _json_object(request), "refreshToken")
        if token is None:
            return _invalid_request()
        # Nothing is awaited from here on, so concurrent refreshes cannot both rotate.
        grant = self.state.refresh(token)
        if grant is None:
            return _error(400, "invalid_grant")
        return JSONResponse(grant.to_json())

    async def logout(self, request: Request) -> Response:
        self.state.logout_calls += 1
        token = _string_field(await _json_object(request), "refreshToken")
        if token is None:
            return _invalid_request()
        self.state.revoke_by_refresh_token(token)
        return JSONResponse({"message": "Logged out"})

    async def me(self, request: Request, claims: AccessClaims) -> Response:
        return JSONResponse(dict(DEMO_USER))

    async def list_items(self, request: Request, claims: AccessClaims) -> Response:
        return JSONResponse([dict(item) for item in _ITEMS])

    async def get_item(self, request: Request, claims: AccessClaims) -> Response:
        wanted = request.path_params["item_id"]
        for item in _ITEMS:
            if str(item["id"]) == wanted:
                return JSONResponse(dict(item))
        return _error(404, "not_found")

    async def create_item(self, request: Request, claims: AccessClaims) -> Response:
        """Validate and echo the item with a fresh id; nothing is stored, so memory stays flat."""
        body = await _json_object(request)
        name = _string_field(body, "name")
        if body is None or not name or not _is_price(body.get("price")):
            return _invalid_request()
        item_id, self._next_item_id = self._next_item_id, self._next_item_id + 1
        return JSONResponse({"id": item_id, "name": name, "price": body["price"]}, status_code=201)

    async def download(self, request: Request, claims: AccessClaims) -> Response:
        size = _download_size(request.query_params.get("size"))
        if size is None:
            return _invalid_request()
        return StreamingResponse(
            _download_stream(size),
            media_type="application/octet-stream",
            headers={"Content-Length": str(size)},
        )

    async def stats(self, request: Request, claims: AccessClaims) -> Response:
        return JSONResponse(
            {
                "refreshes": self.state.refresh_calls_by_family.get(claims.fam, 0),
                "totalRefreshes": self.state.refresh_calls,
                "family": claims.fam,
            }
        )


def create_demo_api(
    *, access_ttl: float = 20.0, refresh_ttl: float = 8 * 3600.0
) -> tuple[Starlette, DemoState]:
    """Build the demo API app and the state it reads and writes (exposed for tests)."""
    state = DemoState(access_ttl=access_ttl, refresh_ttl=refresh_ttl)
    ep = _Endpoints(state)
    routes = [
        Route("/health", ep.health, methods=["GET"]),
        Route("/auth/login", ep.login, methods=["POST"]),
        Route("/auth/refresh", ep.refresh, methods=["POST"]),
        Route("/auth/logout", ep.logout, methods=["POST"]),
        Route("/me", ep.protected(ep.me), methods=["GET"]),
        Route("/items", ep.protected(ep.list_items), methods=["GET"]),
        Route("/items", ep.protected(ep.create_item), methods=["POST"]),
        Route("/items/{item_id}", ep.protected(ep.get_item), methods=["GET"]),
        Route("/download", ep.protected(ep.download), methods=["GET"]),
        Route("/stats", ep.protected(ep.stats), methods=["GET"]),
        WebSocketRoute("/ticks", ep.protected_socket(ep.ticks)),
        WebSocketRoute("/echo", ep.protected_socket(ep.echo)),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error}), state

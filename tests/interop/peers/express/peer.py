"""Express 5 + jsonwebtoken (``server.mjs`` beside this file) under node, and how bffgate meets it.

One app, two shapes the Node world uses: the refresh token as the JSON field ``refreshToken``
(``express``), or kept in the API's own HttpOnly cookie ``refreshToken`` (``express-cookie``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp

from ...server_process import ServerProcess, npm_ci, require_program

APP_DIR = Path(__file__).parent
ACCESS_TOKEN_SECRET = "express-test-access-secret-0123456789"
REFRESH_TOKEN_SECRET = "express-test-refresh-secret-0123456789"
REFRESH_COOKIE = "refreshToken"


class ExpressPeer:
    """Refresh tokens rotate on every use; a used one presented again revokes its family."""

    credentials: ClassVar[dict[str, str]] = {"username": "alice", "password": "wonderland"}
    echo_path = "/api/echo"

    def __init__(self, log_dir: Path, access_lifetime: int, refresh_in: Literal["body", "cookie"]) -> None:
        self.name = "express" if refresh_in == "body" else "express-cookie"
        self._refresh_in = refresh_in
        node = require_program("node", "the Express interop peer")
        self._server = ServerProcess(
            [node, "server.mjs", "0"],
            cwd=APP_DIR,
            env={
                "ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET,
                "REFRESH_TOKEN_SECRET": REFRESH_TOKEN_SECRET,
                "ACCESS_TOKEN_TTL": str(access_lifetime),
                "REFRESH_TOKEN_IN": refresh_in,
            },
            listening=r"^LISTENING (\d+)",
            log_path=log_dir / f"{self.name}.log",
        )
        self.url = ""

    def start(self) -> str:
        npm_ci(APP_DIR, "express")
        self.url = self._server.start()
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def gateway_env(self) -> dict[str, str]:
        """What a user sets (the README's Express recipes)."""
        env = {
            "REMOTE_API": self.url,
            "BFF_LOGIN_URL": "/auth/login",
            "BFF_REFRESH_URL": "/auth/refresh",
            "BFF_LOGOUT_URL": "/auth/logout",
        }
        if self._refresh_in == "cookie":
            env |= {"BFF_REFRESH_TOKEN_IN": "cookie", "BFF_REFRESH_COOKIE_NAME": REFRESH_COOKIE}
        return env

    async def refresh_calls(self, http: aiohttp.ClientSession) -> int:
        return int((await self._stats(http)).get("refresh", 0))

    async def reject_access(self, http: aiohttp.ClientSession, access_token: str) -> None:
        """The API changes its signing key (a redeploy): every access token so far is answered 401."""
        async with http.post(f"{self.url}/_test/rotate-access-key") as answer:
            assert answer.status == 204

    async def revoke_refresh(self, http: aiohttp.ClientSession, refresh_token: str) -> None:
        """The API's own logout: the token's whole family is revoked."""
        async with http.post(f"{self.url}/auth/logout", **self._present(refresh_token)) as answer:
            assert answer.status == 204

    async def refresh_token_alive(self, http: aiohttp.ClientSession, refresh_token: str) -> bool:
        async with http.post(f"{self.url}/auth/refresh", **self._present(refresh_token)) as answer:
            return answer.status == 200

    def _present(self, refresh_token: str) -> dict[str, Any]:
        """The refresh token the way this shape of the API reads it."""
        if self._refresh_in == "cookie":
            return {"headers": {"Cookie": f"{REFRESH_COOKIE}={refresh_token}"}}
        return {"json": {"refreshToken": refresh_token}}

    async def _stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.url}/_test/stats") as answer:
            assert answer.status == 200
            body: dict[str, Any] = await answer.json()
            return body

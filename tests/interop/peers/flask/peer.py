"""Flask + Flask-JWT-Extended (``app.py`` beside this file) under gunicorn, and how bffgate meets it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from ...server_process import ServerProcess

APP_DIR = Path(__file__).parent
JWT_SECRET_KEY = "flask-test-secret-key-0123456789abcdef"  # HS256 wants 32+ bytes


class FlaskPeer:
    """The refresh token goes back as ``Authorization: Bearer`` (``@jwt_required(refresh=True)``);
    revocation is the docs' blocklist: ``DELETE /logout`` with either token."""

    name = "flask"
    credentials: ClassVar[dict[str, str]] = {"username": "alice", "password": "wonderland"}
    echo_path = "/api/echo"

    def __init__(self, log_dir: Path, access_lifetime: int) -> None:
        self._server = ServerProcess(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *("--bind", "127.0.0.1:0", "--workers", "1", "--threads", "8"),
                "--no-control-socket",
                "app:app",
            ],
            cwd=APP_DIR,
            env={"JWT_SECRET_KEY": JWT_SECRET_KEY, "JWT_ACCESS_TOKEN_EXPIRES": str(access_lifetime)},
            listening=r"Listening at: http://127\.0\.0\.1:(\d+)",
            log_path=log_dir / "flask.log",
        )
        self.url = ""

    def start(self) -> str:
        self.url = self._server.start()
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def gateway_env(self) -> dict[str, str]:
        """What a user sets (the README's Flask-JWT-Extended recipe)."""
        return {
            "REMOTE_API": self.url,
            "BFF_LOGIN_URL": "/login",
            "BFF_REFRESH_URL": "/refresh",
            "BFF_LOGOUT_URL": "/logout",
            "BFF_LOGOUT_METHOD": "DELETE",
            "BFF_ACCESS_TOKEN_FIELD": "access_token",
            "BFF_REFRESH_TOKEN_FIELD": "refresh_token",
            "BFF_REFRESH_TOKEN_IN": "header",
        }

    async def refresh_calls(self, http: aiohttp.ClientSession) -> int:
        return int((await self._stats(http)).get("refresh", 0))

    async def reject_access(self, http: aiohttp.ClientSession, access_token: str) -> None:
        """The API revokes this access token (the blocklist), so its next use is answered 401."""
        await self._logout_with(http, access_token)

    async def revoke_refresh(self, http: aiohttp.ClientSession, refresh_token: str) -> None:
        """The API revokes this refresh token, so the gateway's next refresh is refused."""
        await self._logout_with(http, refresh_token)

    async def refresh_token_alive(self, http: aiohttp.ClientSession, refresh_token: str) -> bool:
        headers = {"Authorization": f"Bearer {refresh_token}"}
        async with http.post(f"{self.url}/refresh", headers=headers) as answer:
            return answer.status == 200

    async def _logout_with(self, http: aiohttp.ClientSession, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.delete(f"{self.url}/logout", headers=headers) as answer:
            assert answer.status == 200, await answer.text()

    async def _stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.url}/_test/stats") as answer:
            assert answer.status == 200
            body: dict[str, Any] = await answer.json()
            return body

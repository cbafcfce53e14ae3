"""An aiohttp.web API with nested tokens and an absolute expiry (see app/main.py for the shape).

Dotted token paths and BFF_EXPIRES_AT_FIELD; the access tokens are opaque, so the gateway knows their
expiry only from ``expires_at``. The README's recipe is exactly ``settings`` below.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

from tests.interop.peer import PYTHON, Peer, RunningPeer, free_port, served

APP = Path(__file__).parent / "app"
EMAIL, PASSWORD = "ann@example.com", "correct horse battery staple"
ACCESS_SECONDS = 5


@contextlib.asynccontextmanager
async def start(tmp: Path) -> AsyncIterator[RunningPeer]:
    env = {"PEER_EMAIL": EMAIL, "PEER_PASSWORD": PASSWORD, "PEER_ACCESS_SECONDS": str(ACCESS_SECONDS)}
    port = free_port()
    server = [PYTHON, "-m", "aiohttp.web", "-H", "127.0.0.1", "-P", str(port), "main:init_func"]
    async with served(server, port=port, cwd=APP, log_path=tmp / "aiohttp.log", env=env) as url:
        yield RunningPeer(
            url=url,
            settings={
                "BFF_LOGIN_URL": "/v1/auth/login",
                "BFF_REFRESH_URL": "/v1/auth/refresh",
                "BFF_LOGOUT_URL": "/v1/auth/logout",
                "BFF_ACCESS_TOKEN_FIELD": "data.tokens.accessToken",
                "BFF_REFRESH_TOKEN_FIELD": "data.tokens.refreshToken",
                "BFF_EXPIRES_AT_FIELD": "expires_at",
            },
            credentials={"email": EMAIL, "password": PASSWORD},
            echo_path="/v1/echo",
            access_lifetime=ACCESS_SECONDS,
            versions={"aiohttp": version("aiohttp")},
        )


PEER = Peer(name="nested", start=start)

"""FastAPI with OAuth2PasswordRequestForm and PyJWT, under uvicorn (see app/main.py for the shape).

A form login, the refresh token as a form field, ``expires_in`` in the answer, a logout that needs a
valid Bearer. The README's recipe is exactly ``settings`` below.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

from tests.interop.peer import PYTHON, Peer, RunningPeer, free_port, served

APP = Path(__file__).parent / "app"
USER, PASSWORD = "ann", "correct horse battery staple"
ACCESS_SECONDS = 5


@contextlib.asynccontextmanager
async def start(tmp: Path) -> AsyncIterator[RunningPeer]:
    env = {
        "PEER_SECRET_KEY": secrets.token_urlsafe(48),
        "PEER_PASSWORD": PASSWORD,
        "PEER_ACCESS_SECONDS": str(ACCESS_SECONDS),
    }
    port = free_port()
    server = [PYTHON, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
    async with served(server, port=port, cwd=APP, log_path=tmp / "uvicorn.log", env=env) as url:
        yield RunningPeer(
            url=url,
            settings={
                "BFF_LOGIN_URL": "/token",
                "BFF_LOGIN_BODY": "form",
                "BFF_REFRESH_URL": "/token/refresh",
                "BFF_REFRESH_TOKEN_IN": "form",
                "BFF_LOGOUT_URL": "/logout",
                "BFF_ACCESS_TOKEN_FIELD": "access_token",
                "BFF_REFRESH_TOKEN_FIELD": "refresh_token",
                "BFF_EXPIRES_IN_FIELD": "expires_in",
                "BFF_USERINFO_URL": "/users/me/",
            },
            credentials={"username": USER, "password": PASSWORD},
            echo_path="/echo",
            access_lifetime=ACCESS_SECONDS,
            versions={name: version(name) for name in ("fastapi", "python-multipart", "pyjwt", "uvicorn")},
        )


PEER = Peer(name="fastapi", start=start)

"""Flask + Flask-JWT-Extended (``app.py`` beside this file) under gunicorn.

The refresh token goes back as ``Authorization: Bearer`` (``@jwt_required(refresh=True)``), the refresh
answer has no new refresh token, expiry comes from the JWT's ``exp``, and logout is the docs'
``DELETE /logout`` that puts the presented (refresh) token on the blocklist. The README's recipe is
exactly ``settings`` below.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

from tests.interop.peer import PYTHON, Peer, RunningPeer, free_port, served

APP = Path(__file__).parent
USER, PASSWORD = "alice", "wonderland"  # app.py's users
ACCESS_SECONDS = 5


SETTINGS = {
    "BFF_LOGIN_URL": "/login",
    "BFF_REFRESH_URL": "/refresh",
    "BFF_REFRESH_TOKEN_IN": "header",
    "BFF_ACCESS_TOKEN_FIELD": "access_token",
    "BFF_REFRESH_TOKEN_FIELD": "refresh_token",
    "BFF_LOGOUT_URL": "/logout",
    "BFF_LOGOUT_METHOD": "DELETE",
}


def gunicorn(tmp: Path, *, port: int, secret_key: str) -> contextlib.AbstractAsyncContextManager[str]:
    """app.py under gunicorn on ``port``, signing with ``secret_key``; yields its URL."""
    env = {"JWT_SECRET_KEY": secret_key, "JWT_ACCESS_TOKEN_EXPIRES": str(ACCESS_SECONDS)}
    # One worker: app.py's blocklist is in memory (the docs keep it in Redis or a database instead).
    server = [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8"]
    server += ["--no-control-socket", "app:app"]
    return served(server, port=port, cwd=APP, log_path=tmp / f"gunicorn-{secret_key[:8]}.log", env=env)


@contextlib.asynccontextmanager
async def start(tmp: Path) -> AsyncIterator[RunningPeer]:
    async with gunicorn(tmp, port=free_port(), secret_key=secrets.token_urlsafe(48)) as url:
        yield RunningPeer(
            url=url,
            settings=SETTINGS,
            credentials={"username": USER, "password": PASSWORD},
            echo_path="/api/echo",
            access_lifetime=ACCESS_SECONDS,
            versions=versions(),
        )


def versions() -> dict[str, str]:
    return {name: version(name) for name in ("flask", "flask-jwt-extended", "pyjwt", "gunicorn")}


PEER = Peer(name="flask", start=start)

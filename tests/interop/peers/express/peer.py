"""Express 5 + jsonwebtoken (``server.mjs`` beside this file) under node.

One app, the two shapes the Node world uses (``REFRESH_TOKEN_IN`` of server.mjs): the refresh token
as the JSON field ``refreshToken`` (peer ``express``: bffgate's defaults), or kept in the API's own
HttpOnly cookie ``refreshToken`` (peer ``express-cookie``, in ``../express_cookie``). Refresh tokens
rotate on every use and a reused one revokes its family; ``/auth/logout`` revokes the family. The
README's recipes are exactly the ``settings`` below.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Literal

from tests.interop.peer import Peer, RunningPeer, free_port, run_checked, served

APP = Path(__file__).parent
USER, PASSWORD = "alice", "wonderland"  # server.mjs's users
ACCESS_SECONDS = 5
PACKAGES = ("express", "jsonwebtoken", "cookie-parser")
REFRESH_COOKIE = "refreshToken"

Shape = Literal["body", "cookie"]


def _settings(shape: Shape) -> dict[str, str]:
    settings = {"BFF_LOGIN_URL": "/auth/login", "BFF_REFRESH_URL": "/auth/refresh"}
    if shape == "cookie":
        settings |= {"BFF_REFRESH_TOKEN_IN": "cookie", "BFF_REFRESH_COOKIE_NAME": REFRESH_COOKIE}
    return settings | {"BFF_LOGOUT_URL": "/auth/logout"}


async def _install() -> None:
    """``npm ci`` from the pinned lock file, once (node_modules is ignored by git)."""
    if not all((APP / "node_modules" / name).is_dir() for name in PACKAGES):
        await run_checked([_program("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=APP)


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"the Express peer needs {name} on PATH (scripts/test-services installs it)")
    return path


def _versions() -> dict[str, str]:
    node = subprocess.run([_program("node"), "--version"], capture_output=True, text=True, check=True)
    versions = {"node": node.stdout.strip().lstrip("v")}
    for name in PACKAGES:
        manifest = json.loads((APP / "node_modules" / name / "package.json").read_text())
        versions[name] = manifest["version"]
    return versions


def express(shape: Shape) -> Callable[[Path], AbstractAsyncContextManager[RunningPeer]]:
    @contextlib.asynccontextmanager
    async def start(tmp: Path) -> AsyncIterator[RunningPeer]:
        await _install()
        env = {
            "ACCESS_TOKEN_SECRET": secrets.token_urlsafe(48),
            "REFRESH_TOKEN_SECRET": secrets.token_urlsafe(48),
            "ACCESS_TOKEN_TTL": str(ACCESS_SECONDS),
            "REFRESH_TOKEN_IN": shape,
        }
        port = free_port()
        server = [_program("node"), "server.mjs", str(port)]
        async with served(server, port=port, cwd=APP, log_path=tmp / "node.log", env=env) as url:
            yield RunningPeer(
                url=url,
                settings=_settings(shape),
                credentials={"username": USER, "password": PASSWORD},
                echo_path="/api/echo",
                access_lifetime=ACCESS_SECONDS,
                versions=_versions(),
            )

    return start


PEER = Peer(name="express", start=express("body"))

"""Django REST framework + djangorestframework-simplejwt behind gunicorn (see app/drfsite/).

SimpleJWT's own views at trailing-slash URLs (``APPEND_SLASH`` on), refresh-token rotation with
blacklisting, ``TokenBlacklistView`` as the logout endpoint. The README's recipe is exactly
``settings`` below.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

from tests.interop.peer import PYTHON, Peer, RunningPeer, free_port, run_checked, served

APP = Path(__file__).parent / "app"
USER, PASSWORD = "ann", "correct horse battery staple"
ACCESS_SECONDS = 5

CREATE_USER = (
    "from django.core.management import call_command; "
    "from django.contrib.auth import get_user_model; "
    "call_command('migrate', verbosity=0); "
    f"get_user_model().objects.create_user({USER!r}, password={PASSWORD!r})"
)


@contextlib.asynccontextmanager
async def start(tmp: Path) -> AsyncIterator[RunningPeer]:
    env = {
        "DJANGO_SETTINGS_MODULE": "drfsite.settings",
        "PEER_SECRET_KEY": secrets.token_urlsafe(48),
        "PEER_DB": str(tmp / "db.sqlite3"),
        "PEER_ACCESS_SECONDS": str(ACCESS_SECONDS),
    }
    await run_checked([PYTHON, "manage.py", "shell", "--no-imports", "-c", CREATE_USER], cwd=APP, env=env)
    port = free_port()
    server = [PYTHON, "-m", "gunicorn", "drfsite.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    server += ["--worker-class", "gthread", "--threads", "8"]
    async with served(server, port=port, cwd=APP, log_path=tmp / "gunicorn.log", env=env) as url:
        yield RunningPeer(
            url=url,
            settings={
                "BFF_LOGIN_URL": "/api/token/",
                "BFF_REFRESH_URL": "/api/token/refresh/",
                "BFF_LOGOUT_URL": "/api/token/blacklist/",
                "BFF_ACCESS_TOKEN_FIELD": "access",
                "BFF_REFRESH_TOKEN_FIELD": "refresh",
            },
            credentials={"username": USER, "password": PASSWORD},
            echo_path="/api/echo/",
            access_lifetime=ACCESS_SECONDS,
            versions={
                name: version(name)
                for name in ("django", "djangorestframework", "djangorestframework-simplejwt", "gunicorn")
            },
        )


PEER = Peer(name="drf", start=start)

"""django-oauth-toolkit as a running OpenID Connect provider, with the API it protects.

``DotProcess`` sets the Django site in ``dotsite/`` up the way its docs do: an RS256 key generated for
the run, a sqlite database in a temporary directory, ``manage.py migrate``, a user and a confidential
RS256 Application (``manage.py createapplication``) whose loopback redirect URIs fit a gateway on any
port (RFC 8252 7.3, which DOT implements). It then serves the site with uvicorn on an ephemeral
loopback port. ``DotServer`` is what the tests ask the running site: gateway settings, the counters of
DOT's token and revocation endpoints, and the test-only hooks (expire access tokens, revoke grants).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ....oidc.support import read_until

SITE_DIR = Path(__file__).parent
CLIENT_ID = "bffgate"
USERNAME = "alice"
START_TIMEOUT = 60.0
SERVE_OPTIONS = ("--host", "127.0.0.1", "--port", "0", "--lifespan", "off")  # Django has no lifespan
RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
CREATE_USER = (
    "import os; from django.contrib.auth.models import User; "
    "User.objects.create_user(os.environ['DOT_USERNAME'], 'alice@example.test', "
    "os.environ['DOT_PASSWORD'], first_name='Alice', last_name='Liddell')"
)


def rsa_private_key_pem() -> str:
    """What DOT's docs make with ``openssl genrsa -out oidc.key 4096``, made here for the run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@dataclass(frozen=True)
class DotServer:
    """The running site as the tests see it."""

    url: str
    client_secret: str
    password: str

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"  # DOT is mounted under o/ (dotsite/urls.py)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def credentials(self) -> dict[str, str]:
        """The fields of Django's login form."""
        return {"username": USERNAME, "password": self.password}

    def gateway_settings(self, gateway_url: str) -> dict[str, Any]:
        """bffgate's documented settings for this provider (the README's django-oauth-toolkit recipe)."""
        return {
            "remote_api": self.api_url,
            "bff_provider": "oidc",
            "bff_public_url": gateway_url,
            "oidc_issuer": self.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": self.client_secret,
            "oidc_scopes": "openid profile email",  # DOT's SCOPES; it issues refresh tokens without offline_access
        }

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """``{"calls": {"refresh_token 200": 1, "revoke refresh_token 200": 1, ...}, "live_refresh_tokens": n}``."""
        async with http.get(f"{self.url}/__test/stats") as response:
            assert response.status == 200
            return dict(await response.json())

    async def calls(self, http: aiohttp.ClientSession) -> dict[str, int]:
        return dict((await self.stats(http))["calls"])

    async def hook(self, http: aiohttp.ClientSession, name: str) -> None:
        """``reset``, ``expire-access`` (time passes for access tokens) or ``revoke-refresh``."""
        async with http.post(f"{self.url}/__test/{name}") as response:
            assert response.status == 200, await response.text()


class DotProcess:
    """``uvicorn dotsite.asgi:application`` on an ephemeral loopback port, stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._log: IO[str] | None = None

    def start(self) -> DotServer:
        client_secret, password = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dotsite.settings",
            "DOT_DATABASE": str(self.directory / "db.sqlite3"),
            "DOT_DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "OIDC_RSA_PRIVATE_KEY": rsa_private_key_pem(),
        }
        self._manage(env, "migrate", "--no-input", "--verbosity", "0")
        self._manage({**env, "DOT_USERNAME": USERNAME, "DOT_PASSWORD": password}, "shell", "-c", CREATE_USER)
        self._manage(
            env,
            "createapplication",
            "--name=bffgate",
            f"--client-id={CLIENT_ID}",
            f"--client-secret={client_secret}",
            "--redirect-uris=http://127.0.0.1/api/auth/callback",  # any port: a loopback redirect URI
            "--post-logout-redirect-uris=http://127.0.0.1/",
            "--algorithm=RS256",
            "confidential",
            "authorization-code",
        )
        self._log = (self.directory / "uvicorn.log").open("w")
        self._process = subprocess.Popen(  # fixed arguments
            [sys.executable, "-m", "uvicorn", "dotsite.asgi:application", *SERVE_OPTIONS],
            cwd=SITE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stderr = self._process.stderr
        assert stderr is not None
        line = read_until(stderr, "Uvicorn running on", START_TIMEOUT)
        running = RUNNING.search(line or "")
        if running is None:
            self.stop()
            raise RuntimeError(f"django-oauth-toolkit did not start; see {self.directory}/uvicorn.log")
        # Keep reading its log, so that a full pipe never blocks it.
        self._drain = threading.Thread(target=self._copy_log, args=(stderr,), daemon=True)
        self._drain.start()
        return DotServer(running.group(1), client_secret, password)

    def _manage(self, env: dict[str, str], *arguments: str) -> None:
        result = subprocess.run(  # fixed arguments
            [sys.executable, "manage.py", *arguments], cwd=SITE_DIR, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {arguments[0]} failed:\n{result.stderr[-2000:]}")

    def _copy_log(self, stderr: IO[str]) -> None:
        for line in stderr:
            if self._log is not None and not self._log.closed:
                self._log.write(line)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if self._drain is not None:
                self._drain.join(timeout=10)
            if process.stderr is not None:
                process.stderr.close()
        if self._log is not None:
            self._log.close()
            self._log = None

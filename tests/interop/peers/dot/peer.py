"""django-oauth-toolkit as an OpenID Connect provider, and the API it protects (see app/dotsite/).

The site is set up the way DOT's docs do: an RS256 key made for the run, a sqlite database under
``tmp``, ``manage.py migrate``, a user, and a confidential RS256 Application (``manage.py
createapplication``) whose loopback redirect URIs fit a gateway on any port (RFC 8252 7.3, which DOT
implements). uvicorn serves it. The gateway signs users in through Django's login form and DOT's
consent form, refreshes at DOT's token endpoint (counted there, ``/__test/stats``), revokes at its
``revoke_token`` endpoint and answers DOT's end-session URL at logout. The README's recipe is
exactly ``settings`` below.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import Answer, Browser
from tests.interop.peer import PYTHON, Peer, RunningPeer, free_port, run_checked, served
from tests.oidc.support import ProviderUser, sign_in

APP = Path(__file__).parent / "app"
CLIENT_ID = "bffgate"
USER = "ann"
ACCESS_SECONDS = 6  # room for the storm and its one refresh on a busy two-core machine (DOT serves sync views one at a time)
CREATE_USER = (
    "import os; from django.contrib.auth import get_user_model; "
    "get_user_model().objects.create_user(os.environ['PEER_USER'], 'ann@example.test', "
    "os.environ['PEER_PASSWORD'], first_name='Ann', last_name='Example')"
)


def rsa_private_key_pem() -> str:
    """What DOT's docs make with ``openssl genrsa -out oidc.key 4096``, made here for the run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


class Dot:
    """The running site as the scenario's hooks see it: its counters and the people signed in."""

    def __init__(self, url: str, credentials: dict[str, str]) -> None:
        self.url = url
        self.issuer = f"{url}/o"  # DOT is mounted under o/ (app/dotsite/urls.py)
        self.credentials = credentials
        self.users: list[ProviderUser] = []
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        for user in self.users:
            await user.close()
        await self.http.close()

    async def stats(self) -> dict[str, object]:
        async with self.http.get(f"{self.url}/__test/stats") as response:
            assert response.status == 200
            return dict(await response.json())

    async def calls(self) -> dict[str, int]:
        """Token and revocation calls by kind and status: ``{"refresh_token 200": 1, ...}``."""
        calls = (await self.stats())["calls"]
        assert isinstance(calls, dict)
        return {str(kind): int(count) for kind, count in calls.items()}

    async def sign_in(self, browser: Browser) -> None:
        """Gateway → DOT's authorize → Django's login form → DOT's consent form → gateway callback."""
        user = ProviderUser(browser.base, credentials=self.credentials)
        self.users.append(user)
        await sign_in(browser, user)
        # The session's user: the RS256 ID token's claims (DOT's validator adds name and email).
        me = await browser.request("GET", "/api/auth/user")
        assert me.status == 200, me.body
        assert me.json()["user"]["name"] == "Ann Example"

    async def refresh_calls(self) -> int:
        return sum(count for kind, count in (await self.calls()).items() if kind.startswith("refresh_token "))

    async def check_logout(self, answer: Answer) -> None:
        """The gateway revoked the refresh token at DOT, and ``logoutUrl`` (the gateway's redirect, which
        keeps the ID token away from the page) leads to DOT's end-session URL, which DOT accepts: after
        its "Confirm Logout" form it sends the user back to the gateway."""
        assert (await self.calls()).get("revoke refresh_token 200") == 1
        assert (await self.stats())["live_refresh_tokens"] == 0
        user = self.users[-1]
        logout_url = answer.json()["logoutUrl"]
        assert logout_url.startswith(f"{user.gateway_url}/api/auth/logout/redirect?"), logout_url
        async with user.http.get(logout_url, allow_redirects=False) as redirect:
            assert redirect.status == 302, await redirect.text()
            end_session_url = redirect.headers["Location"]
        assert end_session_url.startswith(f"{self.issuer}/logout/?"), end_session_url
        assert "id_token_hint=" in end_session_url
        assert await user.confirm_logout(end_session_url) == f"{user.gateway_url}/"


@contextlib.asynccontextmanager
async def start(tmp: Path) -> AsyncIterator[RunningPeer]:
    password, client_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    env = {
        "DJANGO_SETTINGS_MODULE": "dotsite.settings",
        "DOT_DATABASE": str(tmp / "db.sqlite3"),
        "DOT_DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "DOT_ACCESS_SECONDS": str(ACCESS_SECONDS),
        "OIDC_RSA_PRIVATE_KEY": rsa_private_key_pem(),
    }
    manage = [PYTHON, "manage.py"]
    await run_checked([*manage, "migrate", "--no-input", "--verbosity=0"], cwd=APP, env=env)
    user_env = {**env, "PEER_USER": USER, "PEER_PASSWORD": password}
    await run_checked([*manage, "shell", "--no-imports", "-c", CREATE_USER], cwd=APP, env=user_env)
    application = [
        "createapplication",
        "--name=bffgate",
        f"--client-id={CLIENT_ID}",
        f"--client-secret={client_secret}",
        "--redirect-uris=http://127.0.0.1/api/auth/callback",  # any port: a loopback redirect URI
        "--post-logout-redirect-uris=http://127.0.0.1/",
        "--algorithm=RS256",
        "confidential",
        "authorization-code",
    ]
    await run_checked([*manage, *application], cwd=APP, env=env)
    port = free_port()
    server = [PYTHON, "-m", "uvicorn", "dotsite.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    server += ["--lifespan", "off"]  # Django's ASGI handler has no lifespan
    async with served(server, port=port, cwd=APP, log_path=tmp / "uvicorn.log", env=env) as url:
        dot = Dot(url, {"username": USER, "password": password})
        try:
            yield RunningPeer(
                url=url,
                settings={
                    "BFF_PROVIDER": "oidc",
                    "OIDC_ISSUER": dot.issuer,
                    "OIDC_CLIENT_ID": CLIENT_ID,
                    "OIDC_CLIENT_SECRET": client_secret,
                    "OIDC_SCOPES": "openid profile email",
                },
                credentials=dot.credentials,
                echo_path="/api/echo/",
                access_lifetime=ACCESS_SECONDS,
                sign_in=dot.sign_in,
                refresh_calls=dot.refresh_calls,
                check_logout=dot.check_logout,
                versions={
                    name: version(name)
                    for name in ("django", "django-oauth-toolkit", "oauthlib", "jwcrypto", "uvicorn")
                },
            )
        finally:
            await dot.close()


PEER = Peer(name="dot", start=start, provider="oidc")

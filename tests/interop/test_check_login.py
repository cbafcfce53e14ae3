"""`bffgate check --login USER` against the real peers, run as a new user would run it.

With a peer's recipe it logs in, refreshes once, logs out and exits 0; with settings that do not fit
it exits 1 with one line per problem naming the setting to set. It never prints a token or the
password.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from ..harness import SECRET_A, SECRET_R
from .peer import Peer, RunningPeer, discover_peers
from .peers.drf.peer import PEER as DRF
from .peers.express_cookie.peer import PEER as EXPRESS_COOKIE
from .peers.fastapi.peer import PEER as FASTAPI

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


async def check_login(api: RunningPeer, settings: dict[str, str]) -> tuple[int, str, str]:
    """``bffgate check --login`` with ``settings`` in the environment: (exit code, stdout, stderr)."""
    user_field, user = next((k, v) for k, v in api.credentials.items() if k != "password")
    return await bffgate_check(api, settings, "--login", user, "--user-field", user_field)


async def bffgate_check(api: RunningPeer, settings: dict[str, str], *arguments: str) -> tuple[int, str, str]:
    """``bffgate check ARGUMENTS`` with ``settings`` in the environment: (exit code, stdout, stderr)."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "ETLS_", "REMOTE_", "REDIS_"))},
        "REMOTE_API": api.url,
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
        "BFF_CHECK_PASSWORD": api.credentials["password"],
        **settings,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bffgate.cli",
        "check",
        *arguments,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    text = out.decode() + err.decode()
    assert not JWT.search(text), "a token was printed"
    assert api.credentials["password"] not in text, "the password was printed"
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
@pytest.mark.parametrize("peer", [p for p in discover_peers() if p.provider == "rest"], ids=str)
async def test_the_recipe_fits(peer: Peer, tmp_path: Path) -> None:
    """With the README recipe's settings: login, refresh and logout (where configured) work, exit 0."""
    async with peer.start(tmp_path) as api:
        code, out, err = await check_login(api, api.settings)
    assert code == 0, out + err
    assert "ok: refresh:" in out
    assert ("ok: logout:" in out) == ("BFF_LOGOUT_URL" in api.settings)


@pytest.mark.slow
async def test_drf_without_settings_is_told_the_url_and_the_field_names(tmp_path: Path) -> None:
    """A DRF user who set only the URL without its slash learns the URL, then the field names."""
    async with DRF.start(tmp_path) as api:
        code, _, err = await check_login(api, {"BFF_LOGIN_URL": "/api/token"})
        assert code == 1
        assert f"BFF_LOGIN_URL: {api.url}/api/token redirects (301) to {api.url}/api/token/; " in err
        assert f"set BFF_LOGIN_URL={api.url}/api/token/" in err

        code, out, err = await check_login(api, {"BFF_LOGIN_URL": "/api/token/"})
    assert code == 1
    assert "answered with `refresh` (string), `access` (string)" in out
    assert "set BFF_ACCESS_TOKEN_FIELD=access" in err
    assert "set BFF_REFRESH_TOKEN_FIELD=refresh" in err


@pytest.mark.slow
async def test_fastapi_with_a_json_login_is_told_to_send_a_form(tmp_path: Path) -> None:
    """OAuth2PasswordRequestForm answers a JSON body 422: the advice is BFF_LOGIN_BODY=form."""
    async with FASTAPI.start(tmp_path) as api:
        settings = {k: v for k, v in api.settings.items() if k != "BFF_LOGIN_BODY"}
        code, _, err = await check_login(api, settings)
    assert code == 1
    assert "set BFF_LOGIN_BODY=form" in err


@pytest.mark.slow
@pytest.mark.parametrize("peer", [p for p in discover_peers() if p.provider == "oidc"], ids=str)
async def test_an_oidc_recipe_passes_check_and_login_is_left_to_the_browser(
    peer: Peer, tmp_path: Path
) -> None:
    """With an OpenID Connect provider's recipe, `bffgate check` finds its discovery document and keys;
    `--login` says in one line that this login happens in the browser."""
    async with peer.start(tmp_path) as api:
        code, out, err = await bffgate_check(api, api.settings)
        assert code == 0, out + err
        assert "ok: provider reachable (oidc" in out
        code, _, err = await check_login(api, api.settings)
    assert code == 1
    assert "--login: applies to BFF_PROVIDER=rest; an OpenID Connect login happens in the browser" in err


async def test_express_with_its_own_refresh_cookie_is_told_to_take_the_cookie(tmp_path: Path) -> None:
    """Login answers only the access token and sets the refresh token as the API's own cookie: with
    bffgate's defaults the advice names the cookie."""
    async with EXPRESS_COOKIE.start(tmp_path) as api:
        code, out, err = await check_login(api, {})
    assert code == 1
    assert "answered with `accessToken` (string) and cookies refreshToken" in out
    assert "set BFF_REFRESH_TOKEN_IN=cookie and BFF_REFRESH_COOKIE_NAME=refreshToken" in err

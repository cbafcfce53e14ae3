"""The config file (issue 13): `bffgate serve|check --config FILE` and BFF_CONFIG, as a user runs them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from bffgate import ConfigError, load_settings

from .harness import SECRET_A, SECRET_R, Browser, closed_port, serve
from .processes import gateway_process
from .test_cli import run_cli
from .upstream import create_test_upstream

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "bffgate.toml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests see only the variables they set (the CLI tests start from a clean one too)."""
    for name in (
        "BFF_CONFIG",
        "REMOTE_API",
        "ETLS_ACCESS",
        "ETLS_REFRESH",
        "BFF_ROUTES",
        "BFF_UPSTREAM_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name + "_FILE", raising=False)


# --- bffgate serve with a file -------------------------------------------------------------------


async def test_serve_with_a_config_file_logs_in_and_proxies(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """`bffgate serve --config FILE` with nothing in the environment but a secret's *_FILE: REMOTE_API and
    one secret from the file (the secret as a file path relative to the config file), the other from
    ETLS_REFRESH_FILE; a real login and a proxied call carry the user's token to the API."""
    upstream, _, recorder = create_test_upstream()
    write(tmp_path / "secrets" / "etls_access", SECRET_A + "\n")
    refresh_file = write(tmp_path / "elsewhere" / "etls_refresh", SECRET_R + "\n")
    async with serve(upstream, lifespan="off") as api_url:
        config = write(
            tmp_path / "bffgate.toml",
            f'remote_api = "{api_url}"\netls_access_file = "secrets/etls_access"\n'
            "bff_login_limit_per_client = 0\nbff_login_limit_per_username = 0\n",
        )
        env = {"ETLS_REFRESH_FILE": str(refresh_file)}
        async with gateway_process(None, env, args=["--config", str(config)]) as gateway:
            browser = Browser(http, gateway.url)
            await browser.login()
            answer = await browser.request("GET", "/api/rest/proxy/echo/from-file?x=1")
    assert answer.status == 200, answer.body
    assert answer.json()["query"] == "x=1"
    [call] = recorder.to("/echo/from-file")
    assert call.headers["authorization"].startswith("Bearer ")


async def test_the_environment_overrides_the_file_in_every_worker(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """`--config` reaches uvicorn's worker processes (each needs the file's etls_refresh to start at
    all); REMOTE_API and ETLS_ACCESS in the environment win over the file's (a dead API, a secret file
    that does not exist and is then not even opened), and the file's other keys (here the user claims
    shown to JavaScript) apply."""
    upstream, _, _ = create_test_upstream()
    config = write(
        tmp_path / "bffgate.toml",
        f'remote_api = "http://127.0.0.1:{closed_port()}"\n'
        'etls_access_file = "/nonexistent/etls_access"\n'
        f'etls_refresh = "{SECRET_R}"\n'
        'bff_user_claims = "name"\n',
    )
    async with serve(upstream, lifespan="off") as api_url:
        env = {"REMOTE_API": api_url, "ETLS_ACCESS": SECRET_A}
        async with gateway_process(None, env, workers=2, args=["--config", str(config)]) as gateway:
            browser = Browser(http, gateway.url)
            await browser.login()
            calls = [browser.clone().request("GET", "/api/rest/proxy/echo/env-wins") for _ in range(6)]
            users = [browser.clone().request("GET", "/api/auth/user") for _ in range(6)]
            answers = await asyncio.gather(*calls, *users)
    assert [a.status for a in answers] == [200] * 12
    assert [a.json()["user"] for a in answers[6:]] == [{"name": "Demo User"}] * 6


# --- bffgate check --config ----------------------------------------------------------------------


async def test_check_with_a_good_file_exits_0_and_names_it(tmp_path: Path) -> None:
    """`bffgate check --config FILE` validates the file and reaches the API it names: exit 0."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        config = write(
            tmp_path / "ok.toml",
            f'remote_api = "{api_url}"\netls_access = "{SECRET_A}"\netls_refresh = "{SECRET_R}"\n',
        )
        result = await asyncio.to_thread(run_cli, "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"ok: settings (provider rest, store cookie, file {config})" in result.stdout
    assert "ok: provider reachable (rest)" in result.stdout


def test_check_reports_every_problem_of_a_file_one_line_each(tmp_path: Path) -> None:
    """A typo (with the nearest key), values of the wrong TOML type, a secret file that cannot be read
    and a secret given twice: exit 1, one line each naming the file, the key and the fix."""
    config = write(
        tmp_path / "bffgate.toml",
        'remote_apl = "https://api.example.com"\n'
        'etls_access_file = "missing/etls_access"\n'
        f'etls_refresh = "{SECRET_R}"\n'
        'etls_refresh_file = "/run/secrets/etls_refresh"\n'
        'bff_upstream_timeout = "soon"\n'
        "bff_cookie_secure = 1.5\n"
        "bff_login_page = 7\n"
        'bff_provider = "saml"\n',
    )
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert result.stdout == ""  # nothing was reached
    assert result.stderr.splitlines() == [
        f"bffgate: {config}: remote_apl: unknown key; did you mean remote_api?",
        f"bffgate: {config}: etls_access_file: cannot read {tmp_path}/missing/etls_access (No such file or "
        "directory); mount the file there or fix the path",
        f"bffgate: {config}: etls_refresh_file: etls_refresh is set too; keep only one of them",
        f"bffgate: {config}: remote_api: is required; set it to the base URL of your API, e.g. https://api.example.com",
        f"bffgate: {config}: bff_provider: Input should be 'rest' or 'oidc'",
        f'bffgate: {config}: bff_login_page: Input should be a valid string; write it as a quoted string, e.g. bff_login_page = "…"',
        f"bffgate: {config}: bff_upstream_timeout: Input should be a valid number, unable to parse string as a "
        "number; write a number without quotes, e.g. bff_upstream_timeout = 30.0",
        f"bffgate: {config}: bff_cookie_secure: Input should be a valid boolean; write true or false, without quotes",
    ]


def test_a_bad_combination_names_the_keys_as_the_file_writes_them(tmp_path: Path) -> None:
    """Combinations that cannot work name the file's keys (bff_refresh_token_in=cookie), not variables."""
    config = write(
        tmp_path / "bffgate.toml",
        'remote_api = "https://api.example.com"\n'
        f'etls_access = "{SECRET_A}"\netls_refresh = "{SECRET_R}"\n'
        'bff_refresh_token_in = "cookie"\nbff_session_store = "redis"\n',
    )
    result = run_cli("check", env={"BFF_CONFIG": str(config)})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"bffgate: {config}: redis_url: is required when bff_session_store=redis",
        f"bffgate: {config}: bff_refresh_cookie_name: is required when bff_refresh_token_in=cookie; "
        "set it to the name of the cookie your API sets on login",
    ]


def test_a_setting_from_the_environment_is_named_as_the_variable(tmp_path: Path) -> None:
    """A wrong value that came from the environment is reported as before, by its variable, even with a
    file in use: the line says where to fix it."""
    config = write(tmp_path / "bffgate.toml", f'etls_access = "{SECRET_A}"\netls_refresh = "{SECRET_R}"\n')
    result = run_cli("check", "--config", str(config), env={"REMOTE_API": "ftp://api.example.com"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "bffgate: REMOTE_API: must be an absolute http(s) URL, got 'ftp://api.example.com'; "
        "set it to the base URL of your API, e.g. https://api.example.com"
    ]


def test_check_validates_the_server_bounds_in_the_file_too(tmp_path: Path) -> None:
    """The file's `server:` keys are checked by `check` as `serve` would, before anything is reached."""
    config = write(
        tmp_path / "bffgate.toml",
        f'remote_api = "http://127.0.0.1:{closed_port()}"\n'
        f'etls_access = "{SECRET_A}"\netls_refresh = "{SECRET_R}"\nbff_head_timeout = 0\n',
    )
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"bffgate: {config}: bff_head_timeout: Input should be greater than 0"
    ]


def test_forward_auth_config_reads_the_file(tmp_path: Path) -> None:
    """`bffgate forward-auth-config nginx --config FILE` renders the file's REMOTE_API."""
    config = write(
        tmp_path / "bffgate.toml",
        f'remote_api = "http://127.0.0.1:9/v1"\netls_access = "{SECRET_A}"\netls_refresh = "{SECRET_R}"\n',
    )
    result = run_cli("forward-auth-config", "nginx", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:9" in result.stdout


@pytest.mark.parametrize("command", ["serve", "check"])
def test_invalid_toml_is_one_line_with_its_position(tmp_path: Path, command: str) -> None:
    """A syntax error stops `serve` and `check` with one line giving tomllib's line and column."""
    config = write(
        tmp_path / "bffgate.toml", 'remote_api = "https://api.example.com"\nbff_login_page = /login\n'
    )
    result = run_cli(command, "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"bffgate: {config}: line 2, column 18: invalid TOML (Invalid value); fix the syntax there "
        '(strings need quotes, e.g. remote_api = "https://api.example.com")'
    ]
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    """A path that does not exist, given as BFF_CONFIG, stops start-up naming it."""
    missing = tmp_path / "nowhere.toml"
    result = run_cli("serve", env={"BFF_CONFIG": str(missing)})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"bffgate: {missing}: cannot read the config file (No such file or directory); "
        "fix the path given to --config or BFF_CONFIG"
    ]


# --- in-process: precedence, nested settings, the example file ------------------------------------


def test_precedence_arguments_environment_secret_files_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyword arguments > environment > NAME_FILE variables > the file > defaults."""
    write(tmp_path / "access", "e" * 40)
    config = write(
        tmp_path / "bffgate.toml",
        'remote_api = "https://file.example.com"\n'
        f'etls_access = "{"f" * 40}"\netls_refresh = "{"f" * 40}"\n'
        "bff_upstream_timeout = 7\nbff_refresh_skew = 5\n",
    )
    monkeypatch.setenv("BFF_CONFIG", str(config))
    monkeypatch.setenv("ETLS_ACCESS_FILE", str(tmp_path / "access"))
    monkeypatch.setenv("BFF_UPSTREAM_TIMEOUT", "9")
    settings = load_settings(remote_api="https://argument.example.com")
    assert settings.remote_api == "https://argument.example.com"  # argument over file
    assert settings.access_secrets == ["e" * 40]  # ETLS_ACCESS_FILE over the file's etls_access
    assert settings.refresh_secrets == ["f" * 40]  # the file
    assert settings.bff_upstream_timeout == 9  # environment over file
    assert settings.bff_refresh_skew == 5  # file over default
    assert settings.bff_grace_seconds == 30  # default


ROUTES_FILE = f"""
remote_api = "https://api.example.com"
etls_access = "{SECRET_A}"
etls_refresh = "{SECRET_R}"

[[routes]]
prefix = "/billing/"
upstream = "https://billing.example.com"
token = "client"
client_token_url = "https://login.example.com/token"
client_id = "billing"
client_secret_file = "billing_secret"

[[routes]]
prefix = "/catalogue/"
upstream = "https://catalogue.example.com"
token = "user-or-none"
"""


def test_arrays_of_tables_fill_a_nested_model_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[[routes]] tables become the route table (a nested name_file key included); BFF_ROUTES as JSON in
    the environment replaces the file's list."""
    write(tmp_path / "billing_secret", "s3cret\n")
    monkeypatch.setenv("BFF_CONFIG", str(write(tmp_path / "bffgate.toml", ROUTES_FILE)))
    settings = load_settings()
    billing, catalogue = settings.routes
    assert (billing.prefix, billing.upstream, billing.token) == (
        "/billing/",
        "https://billing.example.com",
        "client",
    )
    assert billing.client_secret is not None and billing.client_secret.get_secret_value() == "s3cret"
    assert (catalogue.prefix, catalogue.upstream, catalogue.token) == (
        "/catalogue/",
        "https://catalogue.example.com",
        "user-or-none",
    )
    monkeypatch.setenv(
        "BFF_ROUTES", '[{"prefix": "/x/", "upstream": "https://x.example.com", "token": "none"}]'
    )
    assert [(r.prefix, r.upstream, r.token) for r in load_settings().routes] == [
        ("/x/", "https://x.example.com", "none")
    ]


def test_problems_inside_nested_tables_name_their_dotted_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown key inside the second [[routes]] table is routes[1].prefx (counted from 0, as the
    values' own errors are), with the nearest key of that table."""
    text = ROUTES_FILE.replace('prefix = "/catalogue/"', 'prefx = "/catalogue/"').replace(
        '"user-or-none"', '"users"'
    )
    config = write(tmp_path / "bffgate.toml", text.replace('client_secret_file = "billing_secret"\n', ""))
    monkeypatch.setenv("BFF_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).splitlines() == [
        f"{config}: routes[1].prefx: unknown key; did you mean prefix?",
        f"{config}: routes[1].prefix: is required",
        f"{config}: routes[1].token: Input should be 'user', 'user-or-none', 'client' or 'none'",
    ]


def test_the_example_file_is_valid_and_the_readme_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/bffgate.toml loads (its secret files are not read: the environment gives the secrets),
    and the README's "Config file" section shows exactly that file."""
    monkeypatch.setenv("BFF_CONFIG", str(EXAMPLE))
    monkeypatch.setenv("ETLS_ACCESS", SECRET_A)
    monkeypatch.setenv("ETLS_REFRESH", SECRET_R)
    monkeypatch.setenv("BFF_METRICS_TOKEN", "m" * 20)
    settings = load_settings()
    assert settings.remote_api == "https://api.example.com/v1"
    assert settings.login_url == "https://api.example.com/v1/auth/login"
    assert settings.allowed_origins == {"https://app.example.com", "https://admin.example.com"}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Config file", 1)[1]
    shown = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert shown is not None
    assert shown[1] == EXAMPLE.read_text(encoding="utf-8")

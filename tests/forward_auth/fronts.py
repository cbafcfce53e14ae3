"""Real front proxies (Debian's nginx and Caddy) started on loopback with a config `bffgate
forward-auth-config` printed: own state directory in tmp, pid file, stopped by that PID.
``front_stack``: a test API, bffgate and the front proxy, the browser talking to the front only."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from unittest import mock

import aiohttp
import pytest

from bffgate import cli, create_app
from bffgate.config import Settings
from bffgate.demo.api import DemoState

from ..harness import SECRET_A, SECRET_R, Answer, Browser, bind_loopback, serve, settings_for
from ..interop.peer import until_listening
from ..processes import free_port
from ..upstream import Recorder, create_test_upstream

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
FRONTS = ("nginx", "caddy")


def binary(kind: str) -> str:
    """The server's binary, or skip: ``make test`` installs it (scripts/test-services)."""
    found = shutil.which(kind, path=SEARCH_PATH)
    if found is None:
        pytest.skip(f"{kind} is not installed (make test installs Debian's {kind} package)")
    return found


def generated_config(
    kind: str,
    *,
    api_url: str,
    public_url: str,
    listen: str,
    bffgate: str,
    state: str,
    in_process: bool = False,
    env: dict[str, str] | None = None,
) -> str:
    """What `bffgate forward-auth-config KIND` prints for these settings: the config under test.

    ``in_process``: the same command's ``main`` in this process (no interpreter start-up per test);
    ``env``: more settings (the session store: Redis sessions need one cookie slot, not 27).
    """
    more = env or {}
    prefixes = ("BFF_", "ETLS_", "REMOTE_", "OIDC_", "REDIS_")
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        | more
        | {
            "REMOTE_API": api_url,
            "ETLS_ACCESS": SECRET_A,
            "ETLS_REFRESH": SECRET_R,
            "BFF_PUBLIC_URL": public_url,
        }
    )
    args = ["forward-auth-config", kind, "--listen", listen, "--bffgate", bffgate, "--state-dir", state]
    if in_process:
        printed = io.StringIO()
        with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(printed):
            assert cli.main(args) == 0
        return printed.getvalue()
    result = subprocess.run(
        [sys.executable, "-m", "bffgate.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _command(kind: str, state: Path) -> list[str]:
    if kind == "nginx":
        conf = state / "nginx.conf"
        return [
            binary(kind),
            "-p",
            str(state),
            "-c",
            str(conf),
            "-e",
            str(state / "error.log"),
            "-g",
            "daemon off;",
        ]
    return [
        binary(kind),
        "run",
        "--config",
        str(state / "Caddyfile"),
        "--adapter",
        "caddyfile",
        "--pidfile",
        str(state / "caddy.pid"),
    ]


def _pid_file(kind: str, state: Path) -> Path:
    return state / ("nginx.pid" if kind == "nginx" else "caddy.pid")


@contextlib.contextmanager
def state_directory() -> Iterator[Path]:
    # Traversable by nginx's unprivileged workers (pytest's tmp_path is not).
    path = Path(tempfile.mkdtemp(prefix="bffgate-front-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_front(kind: str, config: str, state: Path, port: int) -> AsyncIterator[None]:
    """Start the server with ``config``; ready once it accepts connections; stopped by its PID."""
    log = _prepare(kind, config, state)
    env = {**os.environ, "HOME": str(state), "XDG_DATA_HOME": str(state), "XDG_CONFIG_HOME": str(state)}
    process = await asyncio.create_subprocess_exec(*_command(kind, state), stdout=log, stderr=log, env=env)
    try:
        await until_listening(process, port, state / "server.log")
        yield
    finally:
        pid_file = _pid_file(kind, state)
        pid = int(pid_file.read_text()) if pid_file.exists() else process.pid
        assert pid == process.pid, "the pid file names the server we started"
        if process.returncode is None:
            os.kill(pid, signal.SIGTERM)
            await process.wait()
        log.close()


def _prepare(kind: str, config: str, state: Path) -> BinaryIO:
    """Write the config; the server's own output goes to a log file (shown if it fails to start)."""
    (state / ("nginx.conf" if kind == "nginx" else "Caddyfile")).write_text(config)
    return open(state / "server.log", "wb")


@dataclass
class Front:
    """A front proxy in front of a test API, bffgate deciding; browsers talk to ``url`` only."""

    kind: str
    url: str
    api: DemoState
    recorder: Recorder
    http: aiohttp.ClientSession
    settings: Settings
    directory: Path  # the front proxy's state: its config, logs and (nginx) decision cache

    def browser(self) -> Browser:
        return Browser(self.http, self.url)

    async def logged_in(self) -> Browser:
        browser = self.browser()
        await browser.login()
        return browser

    def tokens_sent_to_api(self) -> set[str]:
        values = (r.headers.get("authorization", "") for r in self.recorder.requests)
        return {v[len("Bearer ") :] for v in values if v.startswith("Bearer ")}


@contextlib.asynccontextmanager
async def front_stack(
    kind: str, http: aiohttp.ClientSession, *, rules: Sequence[tuple[str, str]] = (), **overrides: Any
) -> AsyncIterator[Front]:
    """The test API, bffgate (its settings with ``overrides``) and ``kind`` configured by what
    `bffgate forward-auth-config` prints; all stopped on the way out. ``rules``: routes as (prefix,
    token rule), each to the test API's ``/status`` (no token needed there) (``BFF_ROUTES`` for the config command)."""
    binary(kind)
    upstream, state, recorder = create_test_upstream()
    async with contextlib.AsyncExitStack() as stack:
        api_url = await stack.enter_async_context(serve(upstream, lifespan="off"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        if rules:
            overrides["routes"] = [
                {"prefix": prefix, "upstream": f"{api_url}/status", "token": rule} for prefix, rule in rules
            ]
        settings = settings_for(api_url, bff_public_url=url, **overrides)
        sock = bind_loopback()
        bffgate = f"127.0.0.1:{sock.getsockname()[1]}"
        await stack.enter_async_context(serve(create_app(settings), sock=sock))
        directory = stack.enter_context(state_directory())
        config = generated_config(
            kind,
            api_url=api_url,
            public_url=url,
            listen=f"127.0.0.1:{port}",
            bffgate=bffgate,
            state=str(directory),
            in_process=True,
            env=store_env(settings),
        )
        await stack.enter_async_context(running_front(kind, config, directory, port))
        yield Front(kind, url, state, recorder, http, settings, directory)


def store_env(settings: Settings) -> dict[str, str]:
    """The session store's settings and the routes as the environment `bffgate forward-auth-config`
    reads."""
    env = {}
    if settings.routes:
        env["BFF_ROUTES"] = json.dumps(
            [r.model_dump(mode="json", exclude_defaults=True) for r in settings.routes]
        )
    if settings.bff_session_store == "cookie":
        return env
    return env | {"BFF_SESSION_STORE": settings.bff_session_store, "REDIS_URL": settings.redis_url or ""}


def assert_no_token(front: Front, *answers: Answer) -> None:
    """The token never reaches the browser: not in a header, not in a body."""
    tokens = front.tokens_sent_to_api()
    for answer in answers:
        seen = answer.body.decode("latin-1") + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        assert "Bearer" not in seen
        assert not any(token in seen for token in tokens)

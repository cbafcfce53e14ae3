"""Real front proxies (Debian's nginx and Caddy) started on loopback with a config `bffgate
forward-auth-config` printed: own state directory in tmp, pid file, stopped by that PID."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO
from unittest import mock

import pytest

from bffgate import cli

from ..harness import SECRET_A, SECRET_R
from ..interop.peer import until_listening

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
) -> str:
    """What `bffgate forward-auth-config KIND` prints for these settings: the config under test.

    ``in_process``: the same command's ``main`` in this process (no interpreter start-up per test).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "ETLS_", "REMOTE_", "OIDC_"))}
    env |= {
        "REMOTE_API": api_url,
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
        "BFF_PUBLIC_URL": public_url,
    }
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

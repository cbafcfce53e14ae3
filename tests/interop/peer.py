"""What a peer of the conformance matrix is, how peers are found, and how their servers are run.

A *peer* is a small API written the way its framework's documentation shows, run as a real server
in its own process on a loopback port. Each lives in ``tests/interop/peers/<folder>/`` (a Python
package: an ``__init__.py``, folder names with underscores, e.g. ``express_cookie``) whose
``peer.py`` defines ``PEER = Peer(name=..., start=...)``. The scenario (``scenario.py``) finds every
such ``PEER`` and runs the same steps against each.

``start(tmp)`` is an async context manager: it starts the server (files, databases, ``npm ci``
output… go under ``tmp``), yields a ``RunningPeer`` once the server answers, and stops it on exit.
The server must be a **separate process**: the scenario freezes the gateway's wall clock (so the
gateway never refreshes on its own while the API's tokens expire in real time), which must not reach
the API. ``served()`` below runs such a process.

What ``RunningPeer`` promises:

* ``settings``: the gateway's environment for this API, documented ``BFF_*`` variables only (what the
  README's recipe for this framework says), endpoint URLs as paths under ``REMOTE_API``. The scenario
  sets ``REMOTE_API`` (a recording proxy in front of ``url``), the secrets and nothing else.
* ``credentials``: the JSON object a browser posts to ``/api/auth/login`` for a user that exists.
* ``echo_path``: a path under ``REMOTE_API`` that requires the access token as ``Authorization:
  Bearer`` (401 without a valid one) and answers GET and POST with the JSON object
  ``{"method": ..., "query": <the raw query string>, "json": <the parsed JSON body, or null>}``.
* ``access_lifetime``: seconds an access token lives, set through the framework's own settings. Keep
  it short (a few seconds): the scenario waits that long for the API to refuse a token.
* ``revokes_at_logout``: whether ``BFF_LOGOUT_URL`` revokes the refresh token (the scenario then checks
  that a refresh with it is refused). Without it, ``reject_refresh`` must be given: a coroutine that
  makes the API refuse every refresh token issued so far.

An OpenID Connect provider (``BFF_PROVIDER=oidc``) is a peer too: its API is the resource server
behind ``REMOTE_API``, its login and token endpoints are not. It gives three hooks more:

* ``sign_in(browser)``: signs the browser in through the gateway and the provider's own pages
  (instead of posting ``credentials`` to ``/api/auth/login``). The scenario sets ``BFF_PUBLIC_URL``
  to the gateway's real URL, so the provider's redirects come back to it.
* ``refresh_calls()``: how many refresh grants the provider's token endpoint has answered (the
  recording proxy in front of ``REMOTE_API`` does not see them).
* ``check_logout(answer)``: what the provider shows of the logout the gateway just answered
  (its revocation, the end-session URL in ``logoutUrl``), checked after the scenario's own checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from ..harness import Answer, Browser
from ..processes import stop_process

PEERS_DIR = Path(__file__).parent / "peers"
START_TIMEOUT = 60.0  # seconds: a cold interpreter importing Django on a busy two-core machine


@dataclass(frozen=True)
class RunningPeer:
    url: str
    settings: dict[str, str]
    credentials: dict[str, str]
    echo_path: str
    access_lifetime: float
    revokes_at_logout: bool = True
    reject_refresh: Callable[[], Awaitable[None]] | None = None
    versions: dict[str, str] = field(default_factory=dict)  # package -> version, for the report
    sign_in: Callable[[Browser], Awaitable[None]] | None = None
    refresh_calls: Callable[[], Awaitable[int]] | None = None
    check_logout: Callable[[Answer], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Peer:
    name: str
    start: Callable[[Path], AbstractAsyncContextManager[RunningPeer]]
    provider: str = "rest"  # the recipe's BFF_PROVIDER: `check --login` tries rest peers only

    def __str__(self) -> str:  # the pytest id
        return self.name


def discover_peers() -> list[Peer]:
    """Every ``PEER`` of ``tests/interop/peers/*/peer.py``, by name."""
    peers = []
    for path in sorted(PEERS_DIR.glob("*/peer.py")):
        module = importlib.import_module(f"tests.interop.peers.{path.parent.name}.peer")
        peers.append(module.PEER)
    return peers


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(
    args: Sequence[str], *, port: int, cwd: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """Run ``args`` in ``cwd`` (a server listening on 127.0.0.1:``port``) until the block ends; yields
    its URL.

    Ready means it accepts TCP connections; a server that exits first fails with its output. The
    process is ended with SIGTERM (SIGKILL after 10 s); its output goes to ``log_path``.
    """
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *args,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await until_listening(process, port, log_path)
            yield f"http://127.0.0.1:{port}"
        finally:
            await stop_process(process)


async def until_listening(process: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
    """Wait until ``port`` accepts connections; a server that exits (or does not listen) fails with its log."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"the server did not listen within {START_TIMEOUT:g} s") from None
            await asyncio.sleep(0.05)  # polling for a condition (the port accepts), not a fixed wait
            continue
        writer.close()
        await writer.wait_closed()
        return


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


async def run_checked(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> None:
    """Run a set-up command (migrations, ``npm ci``) to completion; fail with its output if it fails."""
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            f"{args[0]} failed ({process.returncode}):\n{output.decode(errors='replace')[-3000:]}"
        )


PYTHON = sys.executable

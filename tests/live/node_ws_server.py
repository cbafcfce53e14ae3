"""The Node ``ws`` WebSocket API (``node_ws/server.mjs``) as a process on an ephemeral loopback port.

Installs the pinned ``ws`` (``npm ci`` into the ignored ``node_ws/node_modules``) when it is missing,
as tests/oidc does for its provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from ..processes import stop_process

SERVER_DIR = Path(__file__).parent / "node_ws"
PORT_MARKER = b"BFFGATE_NODE_WS "


def install() -> str:
    """``node``'s path, after installing the pinned packages if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError(
            "the Node ws tests need Node.js and npm on PATH (scripts/test-services installs them)"
        )
    if not (SERVER_DIR / "node_modules" / "ws").is_dir():
        subprocess.run(  # fixed arguments, the pinned lock file
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SERVER_DIR, check=True
        )
    return node


@contextlib.asynccontextmanager
async def node_ws_server() -> AsyncIterator[str]:
    """``node server.mjs 0``; yields its base URL (http://127.0.0.1:PORT), stopped by its PID."""
    node = await asyncio.to_thread(install)
    process = await asyncio.create_subprocess_exec(
        node, "server.mjs", "0", cwd=SERVER_DIR, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line.startswith(PORT_MARKER):
            raise RuntimeError(f"the Node ws server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line[len(PORT_MARKER) :])}"
    finally:
        await stop_process(process)

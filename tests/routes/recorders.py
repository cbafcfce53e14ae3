"""The APIs behind the routes under test: real frameworks in their own processes, recording what
they receive (``apis/``). Started once per test module (plain processes, stopped by their PID), so
each test tells its own requests apart by a marker in the path."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.interop.peer import PYTHON, START_TIMEOUT, free_port
from tests.interop.peers.express import peer as express_peer

APIS = Path(__file__).parent / "apis"


@dataclass(frozen=True)
class RecordingApi:
    """A running recorder: its base URL; what it received is asked over HTTP."""

    name: str
    url: str

    async def received(self, http: aiohttp.ClientSession, marker: str) -> list[dict[str, Any]]:
        """The requests whose path contains ``marker``, oldest first."""
        async with http.get(f"{self.url}/__log") as response:
            assert response.status == 200
            return [r for r in await response.json() if marker in r["path"]]

    async def reject(self, http: aiohttp.ClientSession, token: str) -> None:
        """From now on the API answers 401 to this Bearer token."""
        async with http.post(f"{self.url}/__reject", data=token.encode()) as response:
            assert response.status == 200


def header(request: Mapping[str, Any], name: str) -> list[str]:
    """Every value of header ``name`` in a recorded request."""
    return [value for key, value in request["headers"] if key.lower() == name.lower()]


@contextlib.contextmanager
def running(
    name: str, args: Sequence[str], port: int, log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[RecordingApi]:
    """Run ``args`` (a server on 127.0.0.1:``port``) in ``apis/`` until the block ends."""
    with (log_dir / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(  # fixed arguments
            list(args), cwd=APIS, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _until_listening(process, port, log_dir / f"{name}.log")
            yield RecordingApi(name, f"http://127.0.0.1:{port}")
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _until_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log_path.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} did not listen within {START_TIMEOUT:g} s")
        time.sleep(0.05)  # polling a condition (the port accepts), not a fixed wait


def fastapi_api(log_dir: Path, name: str = "fastapi") -> contextlib.AbstractContextManager[RecordingApi]:
    port = free_port()
    args = [PYTHON, "-m", "uvicorn", "fastapi_recorder:app", "--host", "127.0.0.1", "--port", str(port)]
    return running(name, args, port, log_dir, {"RECORDER_NAME": name})


def flask_api(log_dir: Path) -> contextlib.AbstractContextManager[RecordingApi]:
    port = free_port()
    args = [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8"]
    return running("flask", [*args, "--no-control-socket", "flask_recorder:app"], port, log_dir)


def express_api(log_dir: Path) -> contextlib.AbstractContextManager[RecordingApi]:
    if not (express_peer.APP / "node_modules" / "express").is_dir():
        subprocess.run(  # the Express peer's pinned lock file, fixed arguments
            [express_peer._program("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=express_peer.APP,
            check=True,
        )
    port = free_port()
    args = [express_peer._program("node"), "express_recorder.mjs", str(port)]
    return running("express", args, port, log_dir, {"EXPRESS_DIR": str(express_peer.APP)})

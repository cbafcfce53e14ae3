"""Gateways and Redis servers as separate processes, the way several instances really run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .harness import SECRET_A, SECRET_R, bind_loopback

STARTED_LINE = b"Application startup complete"  # once per worker
LISTENING_LINE = b"Uvicorn running on"  # once the socket is bound


def free_port() -> int:
    with bind_loopback() as sock:
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    url: str
    process: asyncio.subprocess.Process

    def kill(self) -> None:
        """SIGKILL: the process dies on the spot, locks and all."""
        self.process.kill()


@contextlib.asynccontextmanager
async def gateway_process(api_url: str, *, workers: int = 1, **env: str) -> AsyncIterator[GatewayProcess]:
    """`bffgate serve` in its own process; ready once it listens and every worker has started."""
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "ETLS_", "REMOTE_", "REDIS_"))},
        "REMOTE_API": api_url,
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bffgate.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[None] | None = None
    try:
        assert process.stderr is not None
        started, listening = 0, False
        while started < workers or not listening:
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            if not line:
                raise RuntimeError("bffgate serve exited during start-up")
            started += STARTED_LINE in line
            listening = listening or LISTENING_LINE in line
        drain = asyncio.create_task(_drain(process.stderr))
        yield GatewayProcess(f"http://127.0.0.1:{port}", process)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    # Keep reading the child's log so a full pipe never blocks it.
    while await stream.readline():
        pass


@dataclass
class RedisProcess:
    """A private redis-server (own port, own append-only file), to stop and restart at will."""

    port: int
    directory: str
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            self.directory,
            "--logfile",
            "",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        while b"Ready to accept connections" not in await asyncio.wait_for(
            self.process.stdout.readline(), 30
        ):
            pass
        self._drain = asyncio.create_task(_drain(self.process.stdout))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
            self._drain.cancel()


@contextlib.asynccontextmanager
async def redis_process() -> AsyncIterator[RedisProcess]:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisProcess(free_port(), directory)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()

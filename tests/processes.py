"""Gateways and Redis servers as separate processes, the way several instances really run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

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
    # With ``capture_log=True``: every line it wrote (stderr and stdout), until the block ends.
    log: list[bytes] = field(default_factory=list)
    news: asyncio.Event = field(default_factory=asyncio.Event)  # set on each line captured

    async def said(self, marker: bytes, timeout: float = 30) -> None:
        """Wait until a captured line contains ``marker`` (needs ``capture_log=True``)."""
        async with asyncio.timeout(timeout):
            while not any(marker in line for line in self.log):
                self.news.clear()
                await self.news.wait()

    def kill(self) -> None:
        """SIGKILL: the process dies on the spot, locks and all."""
        self.process.kill()


@contextlib.asynccontextmanager
async def gateway_process(
    api_url: str | None,
    env: Mapping[str, str] | None = None,
    *,
    workers: int = 1,
    args: Sequence[str] = (),
    capture_log: bool = False,
) -> AsyncIterator[GatewayProcess]:
    """`bffgate serve` in its own process; ready once it listens and every worker has started.

    ``api_url=None``: no REMOTE_API and no secrets in the environment (a config file gives them).
    """
    port = free_port()
    base = {"REMOTE_API": api_url, "ETLS_ACCESS": SECRET_A, "ETLS_REFRESH": SECRET_R} if api_url else {}
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "ETLS_", "REMOTE_", "REDIS_"))},
        **base,
        # Tests log in many sessions from 127.0.0.1; tests of the login limits set their own.
        "BFF_LOGIN_LIMIT_PER_CLIENT": "0",
        "BFF_LOGIN_LIMIT_PER_USERNAME": "0",
        **(env or {}),
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
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE if capture_log else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[bytes] = []
    news = asyncio.Event()
    drains: list[asyncio.Task[None]] = []
    if capture_log:
        assert process.stdout is not None
        drains.append(asyncio.create_task(_drain(process.stdout, log, news)))
    try:
        assert process.stderr is not None
        started, listening = 0, False
        while started < workers or not listening:
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            if capture_log and line:
                log.append(line)
            if not line:
                raise RuntimeError("bffgate serve exited during start-up")
            started += STARTED_LINE in line
            listening = listening or LISTENING_LINE in line
        drains.append(asyncio.create_task(_drain(process.stderr, log if capture_log else None, news)))
        yield GatewayProcess(f"http://127.0.0.1:{port}", process, log, news)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        for drain in drains:
            if capture_log:  # the process has exited: read its last lines to the end
                await asyncio.wait_for(drain, 30)
            else:
                drain.cancel()


async def _drain(
    stream: asyncio.StreamReader, into: list[bytes] | None = None, news: asyncio.Event | None = None
) -> None:
    # Keep reading the child's log so a full pipe never blocks it.
    while line := await stream.readline():
        if into is not None:
            into.append(line)
            if news is not None:
                news.set()


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


# --- Sentinel and Cluster topologies -----------------------------------------------------------------

SENTINEL_SERVICE = "mymaster"


async def _start_server(*args: str, ready: bytes, timeout: float = 30) -> asyncio.subprocess.Process:
    """A redis-server with ``args``, logging to stdout; returns once a line containing ``ready`` came."""
    process = await asyncio.create_subprocess_exec(
        shutil.which("redis-server") or "redis-server",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        await asyncio.wait_for(_read_until(process.stdout, ready), timeout)
    except BaseException:
        await stop_process(process)
        raise
    return process


async def _read_until(stream: asyncio.StreamReader, ready: bytes) -> None:
    while ready not in (line := await stream.readline()):
        if not line:
            raise RuntimeError("redis-server exited during start-up")


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10) -> None:
    """End a process this test started: SIGTERM, then SIGKILL if it is still there after ``grace``."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()


def _server_args(port: int, directory: str) -> list[str]:
    return [
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", directory, "--logfile", ""),
    ]


def _write_sentinel_conf(path: str, setup: SentinelSetup, directory: str) -> None:
    # Sentinel rewrites its configuration file, so it gets a file of its own.
    with open(path, "w") as file:
        file.write(
            f'port {setup.sentinel_port}\nbind 127.0.0.1\ndir {directory}\nlogfile ""\n'
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {setup.master_port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 5000\n"
        )


@dataclass
class SentinelSetup:
    """A master (optionally with one replica) and one sentinel monitoring it (quorum 1)."""

    master_port: int
    sentinel_port: int
    replica_port: int | None = None
    sentinel_lines: list[bytes] = field(default_factory=list)
    _seen: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SENTINEL_SERVICE}/0"

    async def sentinel_said(self, marker: bytes, timeout: float = 30) -> None:
        """Wait until the sentinel logged a line containing ``marker`` (e.g. ``+switch-master``)."""
        async with self._seen:
            await asyncio.wait_for(
                self._seen.wait_for(lambda: any(marker in line for line in self.sentinel_lines)), timeout
            )

    async def _watch(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self._seen:
                self.sentinel_lines.append(line)
                self._seen.notify_all()


@contextlib.asynccontextmanager
async def sentinel_process(*, replica: bool = False) -> AsyncIterator[SentinelSetup]:
    """A redis-server master (and with ``replica`` one replica of it, in sync) and a
    ``redis-server <conf> --sentinel`` watching it, all on loopback; ready once the sentinel monitors
    the master (and has discovered the replica)."""
    with tempfile.TemporaryDirectory() as directory:
        setup = SentinelSetup(free_port(), free_port(), free_port() if replica else None)
        async with contextlib.AsyncExitStack() as stack:
            processes = [
                await _start_server(
                    *_server_args(setup.master_port, directory), ready=b"Ready to accept connections"
                )
            ]
            stack.push_async_callback(stop_process, processes[0])
            if setup.replica_port is not None:
                replica_dir = os.path.join(directory, "replica")
                os.mkdir(replica_dir)
                processes.append(
                    await _start_server(
                        *_server_args(setup.replica_port, replica_dir),
                        *("--replicaof", "127.0.0.1", str(setup.master_port)),
                        ready=b"MASTER <-> REPLICA sync: Finished with success",
                    )
                )
                stack.push_async_callback(stop_process, processes[-1])
            conf = os.path.join(directory, "sentinel.conf")
            _write_sentinel_conf(conf, setup, directory)
            sentinel = await _start_server(conf, "--sentinel", ready=b"+monitor master")
            stack.push_async_callback(stop_process, sentinel)
            assert sentinel.stdout is not None
            watch = asyncio.create_task(setup._watch(sentinel.stdout))
            stack.callback(watch.cancel)
            for process in processes:
                assert process.stdout is not None
                drain = asyncio.create_task(_drain(process.stdout))
                stack.callback(drain.cancel)
            if setup.replica_port is not None:
                await setup.sentinel_said(b"+slave slave")
            yield setup


@dataclass
class ClusterSetup:
    """Three masters, no replicas, the 16384 slots spread over them."""

    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)


async def _cluster_state(port: int) -> str:
    process = await asyncio.create_subprocess_exec(
        shutil.which("redis-cli") or "redis-cli",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "CLUSTER",
        "INFO",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    for line in out.decode().splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


@contextlib.asynccontextmanager
async def cluster_process(nodes: int = 3) -> AsyncIterator[ClusterSetup]:
    """``nodes`` cluster-enabled redis-servers joined by ``redis-cli --cluster create``; ready at state ok."""
    with tempfile.TemporaryDirectory() as directory:
        setup = ClusterSetup([free_port() for _ in range(nodes)])
        async with contextlib.AsyncExitStack() as stack:
            for index, port in enumerate(setup.ports):
                process = await _start_server(
                    *_server_args(port, directory),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    os.path.join(directory, f"nodes-{index}.conf"),
                    ready=b"Ready to accept connections",
                )
                stack.push_async_callback(stop_process, process)
                assert process.stdout is not None
                drain = asyncio.create_task(_drain(process.stdout))
                stack.callback(drain.cancel)
            create = await asyncio.create_subprocess_exec(
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in setup.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(create.communicate(), 60)
            if create.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{output.decode()}")
            # Every node must see every slot covered before clients may rely on any of them.
            for port in setup.ports:
                await _until_cluster_ok(port)
            yield setup


async def _until_cluster_ok(port: int, attempts: int = 600) -> None:
    """Poll ``CLUSTER INFO`` until the node reports ``cluster_state:ok`` (bounded: about 30 s)."""
    for _ in range(attempts):
        if await _cluster_state(port) == "ok":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"cluster node {port} never reached cluster_state:ok")

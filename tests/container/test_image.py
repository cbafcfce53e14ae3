"""The container image, built from the Containerfile and run read-only against a real API and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from ..harness import Browser, serve
from ..processes import LISTENING_LINE, free_port
from ..upstream import Recorder, create_test_upstream
from .podman import (
    Image,
    PodmanUnavailable,
    base_image,
    build_image,
    check_podman,
    check_runs,
    fill_wheelhouse,
    podman,
    podman_environment,
)

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/11"  # this suite's own database
STOP_DEADLINE = 20  # seconds podman waits after SIGTERM before it sends SIGKILL (exit code 137)
UID = "10001"  # the image's USER


@pytest.fixture(scope="module")
def image() -> Image:
    """The image of this checkout (the first run also makes the Debian base image: minutes)."""
    try:
        check_podman()
        base = base_image()
        check_runs(base)
    except PodmanUnavailable as exc:
        pytest.skip(str(exc))
    fill_wheelhouse(base)
    built = build_image(base)
    print(f"\nimage {built.tag}: {built.size_bytes / 1e6:.0f} MB, built in {built.build_seconds:.1f} s")
    return built


@dataclass
class Running:
    name: str
    url: str
    process: asyncio.subprocess.Process
    log: list[str]

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=False)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, Recorder]]:
    app, _, recorder = create_test_upstream()
    async with serve(app, lifespan="off") as api_url:
        yield api_url, recorder


@contextlib.contextmanager
def secret_files(directory: Path) -> Iterator[dict[str, str]]:
    """ETLS secrets and the Redis URL as mounted secret files (with the newline `echo` leaves)."""
    directory.mkdir(mode=0o755)
    values = {
        "etls_access": secrets.token_urlsafe(48),
        "etls_refresh": secrets.token_urlsafe(48),
        "redis_url": REDIS_URL,
    }
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
        (directory / name).chmod(0o644)  # Kubernetes' default mode: readable by the image's user
    yield values


@contextlib.asynccontextmanager
async def run_container(image: Image, api_url: str, secrets_dir: Path) -> AsyncIterator[Running]:
    """`podman run --read-only` in the foreground; yields once bffgate listens, removes it at the end."""
    name = f"bffgate-test-{uuid.uuid4().hex[:12]}"
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        shutil.which("podman") or "podman", "run", "--rm", "--name", name,
        "--read-only", "--read-only-tmpfs=false",  # no writable /tmp, /run or /var/tmp either
        "--network", "host",  # the API and Redis listen on this machine's loopback
        "--health-interval", "disable",  # no systemd timer here; the test runs the check itself
        "--volume", f"{secrets_dir}:/run/secrets:ro",
        "--env", "BFF_HOST=127.0.0.1", "--env", f"BFF_PORT={port}",  # loopback only, on a free port
        "--env", f"REMOTE_API={api_url}",
        "--env", "BFF_SESSION_STORE=redis",
        "--env", "ETLS_ACCESS_FILE=/run/secrets/etls_access",
        "--env", "ETLS_REFRESH_FILE=/run/secrets/etls_refresh",
        "--env", "REDIS_URL_FILE=/run/secrets/redis_url",
        image.tag,
        "--graceful-timeout", "1",  # arguments after the image go to `bffgate serve`
        env=podman_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    log: list[str] = []
    reader: asyncio.Task[None] | None = None
    try:
        assert process.stdout is not None
        while LISTENING_LINE.decode() not in (line := await _next_line(process.stdout, log)):
            if not line:
                raise RuntimeError("the container exited during start-up:\n" + "".join(log))
        reader = asyncio.create_task(_read_rest(process.stdout, log))
        yield Running(name, f"http://127.0.0.1:{port}", process, log)
    finally:
        if process.returncode is None:
            await asyncio.to_thread(podman, "rm", "--force", "--time", "0", name, check=False)
            await process.wait()
        if reader is not None:
            await reader


async def _next_line(stream: asyncio.StreamReader, log: list[str]) -> str:
    line = (await asyncio.wait_for(stream.readline(), 120)).decode(errors="replace")
    log.append(line)
    return line


async def _read_rest(stream: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stream.readline():
        log.append(line.decode(errors="replace"))


def test_the_image_is_small_and_runs_without_root_or_compiler(image: Image) -> None:
    """The final stage has bffgate's environment but no compiler, no pip, and a non-root numeric USER."""
    config = podman("image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}", image.tag)
    assert config.stdout.split(" ", 1) == [f"{UID}:{UID}", '["bffgate","serve"]\n']
    tools = podman(
        "run", "--rm", "--entrypoint", "sh", image.tag, "-c",
        "for tool in gcc cc c++ make pip pip3; do command -v $tool; done; id -u",
    )  # fmt: skip
    assert tools.stdout.split() == [UID]  # no tool found, then the uid
    assert image.size_bytes < 400_000_000


async def test_the_container_logs_in_proxies_and_stops_on_sigterm(
    image: Image, upstream: tuple[str, Recorder], tmp_path: Path
) -> None:
    """Read-only and non-root, with secrets from files and sessions in Redis, the container logs a user
    in and proxies a call; SIGTERM during a download stops it cleanly (exit 0) before the deadline."""
    api_url, recorder = upstream
    store = redis.Redis.from_url(REDIS_URL)
    await store.flushdb()
    with secret_files(tmp_path / "secrets") as secret_values:
        async with (
            run_container(image, api_url, tmp_path / "secrets") as container,
            aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        ):
            browser = Browser(http, container.url)
            login = await browser.login()
            assert login.json()["user"]["name"] == "Demo User"
            assert await store.dbsize() > 0  # the session went to Redis, whose URL came from a file
            call = await browser.request("GET", "/api/rest/proxy/echo/hello?x=1")
            assert call.status == 200 and call.headers["X-Upstream"] == "yes"
            assert recorder.to("/echo/hello")[-1].headers["authorization"].startswith("Bearer ")

            status = dict(
                line.split(":\t", 1) for line in container.exec("cat", "/proc/1/status").stdout.splitlines()
            )
            assert status["Uid"].split() == [UID] * 4 and status["Gid"].split() == [UID] * 4  # bffgate, PID 1
            inspected = podman(
                "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}} {{.Config.Env}}", container.name
            )
            assert inspected.stdout.startswith("true ")
            assert not any(value in inspected.stdout for value in secret_values.values())
            for place in ("/", "/tmp", "/opt/bffgate"):  # noqa: S108  # writing there must fail
                refused = container.exec("sh", "-c", f"echo x > {place}/probe")
                assert "Read-only file system" in refused.stderr, place
            assert podman("healthcheck", "run", container.name, check=False).returncode == 0

            async with http.get(
                container.url + "/api/rest/proxy/endless",
                headers={"X-CSRF": "1", "Cookie": browser.cookie_header()},
            ) as download:
                assert download.status == 200
                await download.content.readexactly(65536)  # a download is in flight
                stop = await asyncio.to_thread(podman, "stop", "--time", str(STOP_DEADLINE), container.name)
            assert stop.returncode == 0
            assert await asyncio.wait_for(container.process.wait(), STOP_DEADLINE) == 0  # not 137: SIGKILL
            await asyncio.wait_for(recorder.endless_stopped.wait(), 10)  # the API was hung up on too
    assert "Finished server process" in "".join(container.log)
    assert not any(value in "".join(container.log) for value in secret_values.values())
    await store.flushdb()
    await store.aclose()

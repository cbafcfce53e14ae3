"""The bffgate command as a user runs it: real processes, real exit codes and output."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from .harness import SECRET_A, SECRET_R, Browser, bind_loopback, closed_port, serve
from .processes import gateway_process
from .upstream import create_test_upstream

BFFGATE = [sys.executable, "-m", "bffgate.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BFF_", "ETLS_", "REMOTE_", "OIDC_", "REDIS_"))
    }
    return subprocess.run(
        [*BFFGATE, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_without_settings_fails_with_one_line_per_problem() -> None:
    """A missing setting stops `bffgate serve` with exit 1, clear lines and no traceback."""
    result = run_cli("serve", env={"ETLS_ACCESS": "short"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("bffgate: ")
    assert any(line.startswith("bffgate: REMOTE_API: is required") for line in lines)
    assert any(line.startswith("bffgate: ETLS_ACCESS: every comma-separated secret") for line in lines)
    assert "Traceback" not in result.stderr + result.stdout


def test_keygen_prints_two_strong_secrets() -> None:
    """`bffgate keygen` prints ETLS_ACCESS and ETLS_REFRESH lines with long random values."""
    first, second = run_cli("keygen"), run_cli("keygen")
    assert first.returncode == 0
    values = dict(line.split("=", 1) for line in first.stdout.strip().splitlines())
    assert set(values) == {"ETLS_ACCESS", "ETLS_REFRESH"}
    assert all(len(v) >= 32 for v in values.values())
    assert values["ETLS_ACCESS"] != values["ETLS_REFRESH"]
    assert first.stdout != second.stdout


async def test_check_succeeds_when_the_provider_answers_and_fails_when_not() -> None:
    """`bffgate check` exits 0 when the API is reachable, 1 with a clear message when it is not."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        env = {"REMOTE_API": api_url, "ETLS_ACCESS": SECRET_A, "ETLS_REFRESH": SECRET_R}
        ok = await asyncio.to_thread(run_cli, "check", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "ok: provider reachable" in ok.stdout
    env["REMOTE_API"] = f"http://127.0.0.1:{closed_port()}"
    failed = await asyncio.to_thread(run_cli, "check", env=env)
    assert failed.returncode == 1
    assert "bffgate: provider:" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.fixture
async def demo_process() -> AsyncIterator[str]:
    """`bffgate demo` running as a user would start it; yields its URL once it listens."""
    with bind_loopback() as sock:
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        *BFFGATE, "demo", "--port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert f"http://127.0.0.1:{port}/" in banner and "demo / demo" in banner
        while b"Uvicorn running on" not in await asyncio.wait_for(process.stderr.readline(), 30):
            pass
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)


@pytest.mark.slow
async def test_demo_serves_page_api_and_gateway_in_one_process(
    demo_process: str, http: aiohttp.ClientSession
) -> None:
    """`bffgate demo` needs no configuration: page at /, login demo/demo, proxied calls, refresh count."""
    async with http.get(demo_process + "/") as page:
        assert page.status == 200
        assert "bffgate demo" in await page.text()
    browser = Browser(http, demo_process)
    await browser.login()
    items = await browser.request("GET", "/api/rest/proxy/items")
    assert items.status == 200 and len(items.json()) >= 3
    browser.forget_access_cookie()
    calls = await asyncio.gather(
        *(browser.clone().request("GET", "/api/rest/proxy/items") for _ in range(20))
    )
    assert [c.status for c in calls] == [200] * 20
    browser.absorb(calls[0].set_cookies)
    stats = await browser.request("GET", "/api/rest/proxy/stats")
    assert stats.json()["refreshes"] == 1
    user = await browser.request("GET", "/api/auth/user")
    assert user.json()["user"]["name"] == "Demo User"
    assert re.fullmatch(r"\d+", str(user.json()["expiresAt"]))


@pytest.mark.slow
async def test_demo_refuses_a_head_over_the_bound_while_it_arrives(demo_process: str) -> None:
    """`bffgate demo` serves with bounded request heads too: 100 KiB of header on the page's route is 431."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(demo_process.rsplit(":", 1)[1]))
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * 100 * 1024 + b"\r\n\r\n")
    status_line = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_bad_server_bound_stops_start_up_with_one_line(command: str) -> None:
    """BFF_HEAD_TIMEOUT=0 stops `bffgate serve` and `bffgate demo` before they listen: exit 1, one line."""
    env = {"REMOTE_API": "http://127.0.0.1:9", "ETLS_ACCESS": SECRET_A, "ETLS_REFRESH": SECRET_R}
    result = run_cli(command, env={**env, "BFF_HEAD_TIMEOUT": "0"})
    assert result.returncode == 1
    assert result.stderr.startswith("bffgate: BFF_HEAD_TIMEOUT: ")
    assert "Traceback" not in result.stderr + result.stdout


def test_check_reaches_redis_when_configured() -> None:
    """`bffgate check` pings REDIS_URL: ok when Redis answers, exit 1 naming REDIS_URL when it does not."""
    upstream_less = {
        "REMOTE_API": f"http://127.0.0.1:{closed_port()}",
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
    }
    up = run_cli("check", env={**upstream_less, "REDIS_URL": "redis://127.0.0.1:6379/15"})
    down = run_cli("check", env={**upstream_less, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    assert "ok: Redis answers" in up.stdout
    assert down.returncode == 1
    assert "bffgate: REDIS_URL: Redis does not answer" in down.stderr
    assert "Traceback" not in down.stderr


async def test_sigterm_stops_serve_during_a_download_after_the_graceful_timeout(
    http: aiohttp.ClientSession,
) -> None:
    """SIGTERM stops `bffgate serve` (exit 0) even while a download streams: requests in flight get
    --graceful-timeout seconds, so a container stops before its runtime's SIGKILL."""
    upstream, _, recorder = create_test_upstream()
    async with (
        serve(upstream, lifespan="off") as api_url,
        gateway_process(api_url, args=["--graceful-timeout", "0.5"]) as gateway,
    ):
        browser = Browser(http, gateway.url)
        await browser.login()
        headers = {"X-CSRF": "1", "Cookie": browser.cookie_header()}
        async with http.get(gateway.url + "/api/rest/proxy/endless", headers=headers) as download:
            await download.content.readexactly(65536)  # the download is in flight
            gateway.process.send_signal(signal.SIGTERM)
            # After its clean shutdown uvicorn re-raises the signal: -SIGTERM here, exit 0 as a
            # container's PID 1 (which the kernel shields from default signal actions).
            assert await asyncio.wait_for(gateway.process.wait(), 20) in (0, -signal.SIGTERM)
        await asyncio.wait_for(recorder.endless_stopped.wait(), 10)  # the API was hung up on too


def test_serve_listens_where_bff_host_and_bff_port_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """BFF_HOST and BFF_PORT are serve's defaults (the image sets 0.0.0.0:8000); flags still win."""
    from bffgate.cli import _parser

    monkeypatch.setenv("BFF_HOST", "0.0.0.0")  # noqa: S104  # only parsed, never bound
    monkeypatch.setenv("BFF_PORT", "8123")
    from_env = _parser().parse_args(["serve"])
    flags = _parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "9000"])
    assert (from_env.host, from_env.port) == ("0.0.0.0", 8123)  # noqa: S104
    assert (flags.host, flags.port) == ("127.0.0.1", 9000)

"""`bffgate serve --access-log` as a user runs it: the log never records the OIDC callback's code and
state, nor the logout redirect's reference (issue 11, item 15)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from .harness import SECRET_A, SECRET_R, bind_loopback, closed_port

SECRETS = ("SECRETCODE123", "SECRETSTATE456", "SECRETREF789")


async def test_access_log_redacts_callback_and_logout_reference(http: aiohttp.ClientSession) -> None:
    """Requests to /api/auth/callback and /api/auth/logout/redirect are logged without their query;
    other requests keep theirs."""
    with bind_loopback() as sock:
        port = sock.getsockname()[1]
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BFF_", "ETLS_", "REMOTE_", "OIDC_", "REDIS_"))
        },
        "REMOTE_API": f"http://127.0.0.1:{closed_port()}",
        "ETLS_ACCESS": SECRET_A,
        "ETLS_REFRESH": SECRET_R,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bffgate.cli", "serve", "--access-log", "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None and process.stdout is not None
        while b"Uvicorn running on" not in await asyncio.wait_for(process.stderr.readline(), 30):
            pass
        base = f"http://127.0.0.1:{port}"
        for path in (
            f"/api/auth/callback?code={SECRETS[0]}&state={SECRETS[1]}",
            f"/api/auth/logout/redirect?ref={SECRETS[2]}",
            "/healthz?probe=visible",
        ):
            async with http.get(base + path) as response:
                await response.read()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    log = stdout.decode()
    assert "/api/auth/callback?[redacted]" in log
    assert "/api/auth/logout/redirect?[redacted]" in log
    assert "/healthz?probe=visible" in log
    for secret in SECRETS:
        assert secret not in log

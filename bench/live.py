"""WebSocket benchmark: ``.venv/bin/python bench/live.py [--quick]``.

Same run, same client, two paths to one WebSocket echo API (the ``websockets`` library's own server on
uvloop, its own process, no compression on any hop):

* **direct**: the client to the API;
* **through bffgate**: the client to ``bffgate serve`` (1 worker) at ``/api/rest/proxy/echo`` with a
  session's cookies, the gateway to the API with the session's Bearer.

For small text frames (32 B) and 64 KiB binary frames: **messages/s** with a window of messages in
flight (a sender and a receiver at once, as a busy socket is used), and the **round-trip time** of one
message at a time, whose difference is the latency the gateway adds per message. The gateway's CPU
per relayed message is its process CPU time over the pipelined run divided by the messages (each
message crosses it twice: up and back). Logins go to the bench upstream (bench/upstream.py).
"""

from __future__ import annotations

import argparse
import asyncio
import http
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from run import HERE, PYTHON, Fleet, Server, bffgate_command, cpu_seconds, free_port

from forward_auth import login

SMALL = b"x" * 32
LARGE = os.urandom(64 * 1024)
WINDOW = 64  # messages in flight in the pipelined run


async def serve_echo(port: int) -> None:
    """The API: echo every message as it came; ``GET /health`` answers 200 for the fleet's readiness."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.http11 import Request, Response

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/health":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        return None

    async with serve(
        echo, "127.0.0.1", port, process_request=health, compression=None, max_size=None
    ) as server:
        await server.serve_forever()


@dataclass
class Figures:
    rate: float  # messages per second, pipelined
    rtt_us: float  # median round trip, one message at a time
    gateway_cpu_us: float | None  # gateway CPU per message (None for direct)


async def measure(
    url: str, headers: dict[str, str], payload: str | bytes, count: int, pids: Sequence[int]
) -> Figures:
    from websockets.asyncio.client import connect
    from websockets.typing import Origin

    async with connect(
        url,
        additional_headers=headers,
        origin=Origin("http://127.0.0.1:8000"),
        compression=None,
        max_size=None,
        proxy=None,
    ) as socket:
        for _ in range(200):  # warm up
            await socket.send(payload)
            await socket.recv()
        rtts = []
        for _ in range(max(200, count // 10)):
            start = time.perf_counter()
            await socket.send(payload)
            await socket.recv()
            rtts.append(time.perf_counter() - start)

        async def sender(credits: asyncio.Semaphore) -> None:
            for _ in range(count):
                await credits.acquire()
                await socket.send(payload)

        credits = asyncio.Semaphore(WINDOW)
        cpu_before = cpu_seconds(pids)
        start = time.perf_counter()
        task = asyncio.create_task(sender(credits))
        for _ in range(count):
            await socket.recv()
            credits.release()
        elapsed = time.perf_counter() - start
        await task
        cpu = cpu_seconds(pids) - cpu_before
    return Figures(count / elapsed, statistics.median(rtts) * 1e6, cpu / count * 1e6 if pids else None)


def start_servers(fleet: Fleet) -> tuple[Server, Server, Server]:
    port = free_port()
    upstream = fleet.start(
        "upstream", [PYTHON, str(HERE / "upstream.py"), "--port", str(port)], port, health="/items"
    )
    port = free_port()
    api = fleet.start(
        "ws echo", [PYTHON, str(Path(__file__)), "--serve-echo", str(port)], port, health="/health"
    )
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BFF_", "OIDC_", "ETLS_", "REDIS_", "REMOTE_"))
    }
    env |= {
        "REMOTE_API": api.url,
        "BFF_LOGIN_URL": upstream.url + "/auth/login",
        "BFF_REFRESH_URL": upstream.url + "/auth/refresh",
        "ETLS_ACCESS": secrets.token_urlsafe(48),
        "ETLS_REFRESH": secrets.token_urlsafe(48),
        "BFF_LOGIN_LIMIT_PER_CLIENT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    gateway = fleet.start(
        "bffgate",
        [*bffgate_command(), "serve", "--port", str(port), "--workers", "1"],
        port,
        health="/healthz",
        env=env,
    )
    return upstream, api, gateway


async def run(quick: bool) -> str:
    small_count, large_count = (20_000, 2_000) if quick else (100_000, 10_000)
    with tempfile.TemporaryDirectory(prefix="bffgate-bench-live-") as logdir:
        fleet = Fleet(Path(logdir))
        try:
            _, api, gateway = start_servers(fleet)
            cookies = {"Cookie": login(gateway.port)}
            direct_url = api.url.replace("http://", "ws://") + "/echo"
            gateway_url = gateway.url.replace("http://", "ws://") + "/api/rest/proxy/echo"
            lines = [
                "| frames | direct msg/s | via bffgate msg/s | ratio | direct RTT µs | via bffgate RTT µs "
                "| added µs/msg | bffgate CPU µs/msg |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for name, payload, count in (
                ("text, 32 B", SMALL.decode(), small_count),
                ("binary, 64 KiB", LARGE, large_count),
            ):
                direct = await measure(direct_url, {}, payload, count, [])
                through = await measure(gateway_url, cookies, payload, count, gateway.pids())
                lines.append(
                    f"| {name} | {direct.rate:,.0f} | {through.rate:,.0f} | {through.rate / direct.rate:.2f}x "
                    f"| {direct.rtt_us:.0f} | {through.rtt_us:.0f} | {through.rtt_us - direct.rtt_us:.0f} "
                    f"| {through.gateway_cpu_us or 0:.0f} |"
                )
        finally:
            fleet.stop_all()
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (about 20 s)")
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import uvloop

    if args.serve_echo:
        uvloop.run(serve_echo(args.serve_echo))
        return 0
    print(uvloop.run(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load generation for bench/run.py: wrk when it is installed, else a bundled asyncio/aiohttp generator.

Both report the same numbers (requests, bytes, errors, p50/p99 latency) as one ``BENCH_JSON {...}`` line,
and both run as a child process so they can be pinned to a CPU and their CPU time measured.

The bundled generator is also a command of its own (loopback targets only)::

    python bench/load.py http://127.0.0.1:8000/items --connections 32 --duration 5 -H "X-CSRF: 1"

It is an order of magnitude slower than wrk (it is Python too), so with it the numbers of the fastest
servers are the generator's limit, not theirs; run.py says which generator it used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    requests: int
    seconds: float
    bytes: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # the load generator's own CPU time (user + system)
    others: float = 0.0  # share of the machine's CPU that other processes used meanwhile (run.py sets it)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / self.seconds / (1024 * 1024) if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to load {host!r}: the benchmark only targets 127.0.0.1")


def run_load(
    url: str,
    *,
    connections: int,
    duration: float,
    headers: Sequence[tuple[str, str]] = (),
    tool: str = "auto",
    cpus: set[int] | None = None,
    cookies_file: Path | None = None,
) -> LoadResult:
    """Drive ``url`` for ``duration`` seconds with ``connections`` keep-alive connections.

    ``cookies_file``: one Cookie header value per line; each request carries one picked at random
    (and ``X-CSRF: 1``), so the load spreads over that many sessions.
    """
    check_loopback(url)
    use_wrk = tool == "wrk" or (tool == "auto" and wrk_available())
    seconds = max(1, round(duration))
    if use_wrk:
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
        argv += ["-s", str(HERE / ("sessions.lua" if cookies_file else "report.lua"))]
    else:
        argv = [sys.executable, str(HERE / "load.py"), "--connections", str(connections)]
        argv += ["--duration", str(seconds)]
        if cookies_file:
            argv += ["--cookies-file", str(cookies_file)]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    env = {**os.environ, "BENCH_COOKIES": str(cookies_file)} if cookies_file else None
    output, cpu = _run_measured(argv, cpus, timeout=seconds + 30, env=env)
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            break
    else:
        raise RuntimeError(f"the load generator printed no result:\n{output[-2000:]}")
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        tool="wrk" if use_wrk else "bench/load.py",
        connections=connections,
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        bytes=int(data["bytes"]),
        errors=errors,
        p50_ms=float(data["p50_us"]) / 1000,
        p99_ms=float(data["p99_us"]) / 1000,
        cpu_seconds=cpu,
    )


def pin_to(cpus: set[int] | None) -> Callable[[], None]:
    """A ``preexec_fn`` pinning the child (and every thread it starts) to ``cpus``; None means every CPU.

    None must still be explicit: a child inherits its parent's affinity, and run.py pins itself.
    """
    target = cpus or set(range(os.cpu_count() or 1))

    def pin() -> None:
        os.sched_setaffinity(0, target)

    return pin


def _run_measured(
    argv: list[str], cpus: set[int] | None, *, timeout: float, env: dict[str, str] | None = None
) -> tuple[str, float]:
    """Run ``argv`` to completion; its output and the CPU seconds it used (from wait4's rusage)."""
    proc = subprocess.Popen(  # noqa: S603  # argv built here from fixed parts, no shell
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pin_to(cpus), env=env
    )
    watchdog = threading.Timer(timeout, proc.kill)  # bounded even if a server hangs the generator
    watchdog.start()
    try:
        # The child's output is small; EOF comes when it exits.
        output = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        watchdog.cancel()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{output[-2000:]}")
    return output, usage.ru_utime + usage.ru_stime


# -- the bundled generator ---------------------------------------------------------------------------------


async def generate(
    url: str, connections: int, duration: float, headers: dict[str, str], cookies: Sequence[str] = ()
) -> dict[str, float]:
    import random

    import aiohttp

    latencies: list[float] = []
    counts = {"requests": 0, "bytes": 0, "status": 0, "read": 0}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        started = time.perf_counter()
        stop_at = started + duration

        async def worker() -> None:
            while (now := time.perf_counter()) < stop_at:
                sent = headers
                if cookies:  # a session picked at random, as bench/sessions.lua does with wrk
                    sent = {**headers, "Cookie": random.choice(cookies), "X-CSRF": "1"}
                try:
                    async with http.get(url, headers=sent) as answer:
                        size = 0
                        async for chunk in answer.content.iter_chunked(256 * 1024):
                            size += len(chunk)
                        if answer.status >= 400:
                            counts["status"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    counts["read"] += 1
                    continue
                latencies.append(time.perf_counter() - now)
                counts["requests"] += 1
                counts["bytes"] += size

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1e6

    return {
        "requests": counts["requests"],
        "duration_us": int(elapsed * 1e6),
        "bytes": counts["bytes"],
        "connect": 0,
        "read": counts["read"],
        "write": 0,
        "status": counts["status"],
        "timeout": 0,
        "p50_us": percentile(50),
        "p99_us": percentile(99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="a small asyncio/aiohttp HTTP load generator (loopback only)"
    )
    parser.add_argument("url")
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--cookies-file", type=Path, help="one Cookie value per line, one picked per request")
    args = parser.parse_args()
    check_loopback(args.url)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    cookies = (
        [line for line in args.cookies_file.read_text().splitlines() if line] if args.cookies_file else []
    )
    run = generate(args.url, args.connections, args.duration, headers, cookies)
    try:
        import uvloop

        result = uvloop.run(run)
    except ImportError:
        result = asyncio.run(run)
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

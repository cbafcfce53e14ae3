"""Forward-auth benchmark: ``.venv/bin/python bench/forward_auth.py [--quick] [--duration S]``.

Same run, same machine, every server its own process on 127.0.0.1 (started here, stopped by PID):

* nginx ``proxy_pass`` alone, straight to the bench upstream (the ceiling);
* nginx + bffgate forward-auth, decisions cached (the config ``bffgate forward-auth-config nginx``
  prints, as it is), with cookie sessions (the default: ~1.3 KB of sealed cookies, which nginx hashes
  into every decision's cache key) and with Redis sessions (one short ticket; skipped when no Redis
  answers at ``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/12``);
* nginx + bffgate forward-auth without caching (the same config with ``proxy_cache off``: every
  request costs one subrequest);
* bffgate's own proxy (``/api/rest/proxy/items``).

Every nginx runs one worker process, so each row is one core's worth of proxying against bffgate's
one worker. Small JSON (``/items``, ~1 KB) at 1 and 32 connections, 1 MiB bodies at 4 connections.
Each row also reports the CPU its serving processes (the row's nginx, bffgate) spent per request at 32
connections, and the ratios by it: on a machine others share, req/s of rows measured one after the
other vary with the others' load, CPU per request much less.
Needs Debian's nginx (``apt-get install nginx``) and, preferably, wrk.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from load import LoadResult, run_load, wrk_available
from run import HERE, PYTHON, Fleet, Server, bffgate_command, cpu_seconds, free_port, http_status

from bffgate.forward_auth_config import nginx_file

ALONE = "nginx proxy_pass alone"
CACHED = "nginx + bffgate forward-auth, decisions cached"
ALONE_REDIS = "nginx proxy_pass alone, a Redis session's requests"
CACHED_REDIS = "nginx + bffgate forward-auth, decisions cached, Redis sessions"
UNCACHED = "nginx + bffgate forward-auth, no cache"
OWN = "bffgate's own proxy (1 worker)"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
ONE_MIB = "bytes?size=1048576"


def bffgate_env(upstream: str, public_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BFF_", "OIDC_", "ETLS_", "REDIS_", "REMOTE_"))
    }
    return env | {
        "REMOTE_API": upstream,
        "ETLS_ACCESS": secrets.token_urlsafe(48),
        "ETLS_REFRESH": secrets.token_urlsafe(48),
        "BFF_PUBLIC_URL": public_url,
        "BFF_LOGIN_LIMIT_PER_CLIENT": "0",
        "PYTHONUNBUFFERED": "1",
    }


def login(port: int) -> str:
    """The Cookie header of a fresh session (the bench upstream accepts any credentials)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"username": "demo", "password": "demo"})
    conn.request("POST", "/api/auth/login", body, {"Content-Type": "application/json", "X-CSRF": "1"})
    answer = conn.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"login failed: {answer.status}")
    pairs = [h.split(";", 1)[0] for k, h in answer.getheaders() if k.lower() == "set-cookie"]
    return "; ".join(p for p in pairs if not p.endswith("="))


def generated_nginx(env: dict[str, str], listen: str, bffgate: str, state: Path) -> str:
    argv = [
        *bffgate_command(),
        "forward-auth-config",
        "nginx",
        "--listen",
        listen,
        "--bffgate",
        bffgate,
        "--state-dir",
        str(state),
    ]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout  # noqa: S603


def plain_nginx(listen: str, upstream_hostport: str, state: Path) -> str:
    """nginx alone: the recipe's own process settings (``nginx_file``), a plain ``proxy_pass``. It
    drops the browser's ``Cookie`` and ``X-CSRF`` as the recipe does, so that the upstream (which
    shares the machine) gets the same requests from every row."""
    return nginx_file(
        str(state),
        f"""    upstream api {{ server {upstream_hostport}; keepalive 64; }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Cookie "";
            proxy_set_header X-CSRF "";
        }}
    }}
""",
    )


def start_nginx(fleet: Fleet, name: str, config: str, state: Path) -> Server:
    state.mkdir(parents=True)
    state.chmod(0o755)
    (state / "nginx.conf").write_text(config.replace("worker_processes auto;", "worker_processes 1;"))
    port = int(config.split("listen 127.0.0.1:", 1)[1].split(";", 1)[0])
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if nginx is None:
        raise SystemExit("nginx is not installed (apt-get install nginx)")
    argv = [
        nginx,
        "-p",
        str(state),
        "-c",
        str(state / "nginx.conf"),
        "-e",
        str(state / "error.log"),
        "-g",
        "daemon off;",
    ]
    # Any answer means it listens (the forward-auth configs answer 401 without a session).
    return fleet_start_listening(fleet, name, argv, port)


def fleet_start_listening(fleet: Fleet, name: str, argv: list[str], port: int) -> Server:
    log = fleet.logdir / (name.replace(" ", "_").replace("/", "_") + ".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
    server = Server(name, proc, port, log)
    fleet.servers.append(server)
    deadline = time.monotonic() + 15
    while http_status(port, "/") == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{server.log_tail()}")
        time.sleep(0.05)
    return server


@dataclass
class Row:
    """One row's load runs and the CPU its serving processes (nginx, bffgate) spent per request at 32
    connections: on a shared machine the steadiest figure, as it does not count waiting for a core."""

    c1: LoadResult
    c32: LoadResult
    big: LoadResult
    cpu_us: dict[str, float]  # per serving process group: "nginx", "bffgate"

    @property
    def total_cpu_us(self) -> float:
        return sum(self.cpu_us.values())

    @property
    def errors(self) -> int:
        return self.c1.errors + self.c32.errors + self.big.errors


def measure(url: str, headers: list[tuple[str, str]], duration: float, serving: list[Server]) -> Row:
    run_load(url + "items", connections=32, duration=1, headers=headers)  # warm-up
    c1 = run_load(url + "items", connections=1, duration=duration, headers=headers)
    groups = {server_kind(s): s.pids() for s in serving}
    before = {kind: cpu_seconds(pids) for kind, pids in groups.items()}
    c32 = run_load(url + "items", connections=32, duration=duration, headers=headers)
    cpu_us = {
        kind: (cpu_seconds(pids) - before[kind]) / max(c32.requests, 1) * 1e6 for kind, pids in groups.items()
    }
    big = run_load(url + ONE_MIB, connections=4, duration=duration, headers=headers)
    return Row(c1, c32, big, cpu_us)


def server_kind(server: Server) -> str:
    return "bffgate" if server.name.startswith("bffgate") else "nginx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per load run")
    parser.add_argument("--duration", type=float, default=10.0)
    options = parser.parse_args()
    duration = 3.0 if options.quick else options.duration
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bffgate-bench-fa-"))
    workdir.chmod(0o755)
    fleet = Fleet(workdir)
    results: dict[str, Row] = {}
    try:
        for row, (url, headers, serving) in start_rows(fleet, workdir).items():
            print(f"measuring {row} …", file=sys.stderr, flush=True)
            results[row] = measure(url, headers, duration, serving)
    finally:
        fleet.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, duration, load_before, os.getloadavg())


Target = tuple[str, list[tuple[str, str]], list[Server]]  # URL prefix, request headers, serving processes


def start_rows(fleet: Fleet, workdir: Path) -> dict[str, Target]:
    """Every row's servers, started; the rows in the table's order."""
    up_port = free_port()
    upstream = fleet.start(
        "upstream", [PYTHON, str(HERE / "upstream.py"), "--port", str(up_port)], up_port, health="/items"
    )
    # Every row gets the same requests: a browser's, with its session's cookies and X-CSRF.
    gateway, session, env = start_gateway(fleet, "bffgate", upstream.url, {})
    plain_port = free_port()
    plain = plain_nginx(f"127.0.0.1:{plain_port}", f"127.0.0.1:{up_port}", workdir / "plain")
    alone = start_nginx(fleet, ALONE, plain, workdir / "plain")
    targets: dict[str, Target] = {ALONE: (f"http://127.0.0.1:{plain_port}/", session, [alone])}
    targets[CACHED] = start_front(fleet, CACHED, workdir / "cached", env, gateway, session)
    if redis_answers(REDIS_URL):
        store = {"BFF_SESSION_STORE": "redis", "REDIS_URL": REDIS_URL}
        redis_gateway, redis_session, redis_env = start_gateway(fleet, "bffgate-redis", upstream.url, store)
        targets[ALONE_REDIS] = (f"http://127.0.0.1:{plain_port}/", redis_session, [alone])
        targets[CACHED_REDIS] = start_front(
            fleet, CACHED_REDIS, workdir / "cached-redis", redis_env, redis_gateway, redis_session
        )
    else:
        print(f"no Redis answers at {REDIS_URL}: the Redis sessions row is left out", file=sys.stderr)
    targets[UNCACHED] = start_front(
        fleet, UNCACHED, workdir / "uncached", env, gateway, session, decision_cache=False
    )
    targets[OWN] = (f"http://127.0.0.1:{gateway.port}/api/rest/proxy/", session, [gateway])
    return targets


def start_gateway(
    fleet: Fleet, name: str, upstream_url: str, extra_env: dict[str, str]
) -> tuple[Server, list[tuple[str, str]], dict[str, str]]:
    """One bffgate (one worker) and a fresh session's request headers; its environment, for its recipe."""
    port = free_port()
    env = bffgate_env(upstream_url, f"http://127.0.0.1:{port}") | extra_env
    argv = [*bffgate_command(), "serve", "--port", str(port)]
    gateway = fleet.start(name, argv, port, health="/healthz", env=env)
    return gateway, [("Cookie", login(port)), ("X-CSRF", "1")], env


def start_front(
    fleet: Fleet,
    row: str,
    state: Path,
    env: dict[str, str],
    gateway: Server,
    session: list[tuple[str, str]],
    *,
    decision_cache: bool = True,
) -> Target:
    """An nginx with the generated recipe in front of ``gateway`` (``decision_cache=False``: with
    ``proxy_cache off``)."""
    port = free_port()
    config = generated_nginx(env, f"127.0.0.1:{port}", f"127.0.0.1:{gateway.port}", state)
    if not decision_cache:
        config = config.replace("proxy_cache bffgate_decisions;", "proxy_cache off;")
    front = start_nginx(fleet, row, config, state)
    return f"http://127.0.0.1:{port}/api/", session, [front, gateway]


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def report(
    results: dict[str, Row],
    duration: float,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    tool = "wrk" if wrk_available() else "bench/load.py"
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {tool}, {duration:g} s per run, "
        f"{os.cpu_count()} CPUs, load average before {load_before[0]:.2f}, after {load_after[0]:.2f}\n"
    )
    print(
        "| server | req/s, 32 connections | CPU µs/request: nginx + bffgate | p50, 1 connection "
        "| 1 MiB bodies | errors |"
    )
    print("|---|---|---|---|---|---|")
    for row, r in results.items():
        cpu = " + ".join(f"{r.cpu_us.get(kind, 0):.0f}" for kind in ("nginx", "bffgate"))
        print(
            f"| {row} | {r.c32.rps:,.0f} | {cpu} = {r.total_cpu_us:.0f} | {r.c1.p50_ms:.2f} ms "
            f"| {r.big.mib_s:,.0f} MiB/s | {r.errors} |"
        )
    # By CPU: requests per CPU second, what one core would serve whatever else the machine was doing.
    print()
    for row, alone, label in (
        (CACHED, ALONE, "cached"),
        (CACHED_REDIS, ALONE_REDIS, "cached, Redis sessions"),
    ):
        if row in results:
            print(ratio_line(label, results[row], "nginx alone", results[alone], "0.50"))
    print(ratio_line("uncached", results[UNCACHED], "bffgate's own proxy", results[OWN], "1.5"))


def ratio_line(label: str, row: Row, base_label: str, base: Row, goal: str) -> str:
    return (
        f"{label} ÷ {base_label}: {row.c32.rps / base.c32.rps:.2f} by req/s, "
        f"{base.total_cpu_us / row.total_cpu_us:.2f} by CPU (goal ≥ {goal})"
    )


if __name__ == "__main__":
    main()

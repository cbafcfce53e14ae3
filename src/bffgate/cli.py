"""The ``bffgate`` command: serve, demo, check, keygen. Thin: parse, build settings, run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import logging.config
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator, Sequence

import uvicorn

from .accesslog import log_config
from .config import Settings, load_server_settings, load_settings
from .config_file import CONFIG_VARIABLE, config_path
from .errors import BffError, ClusterUnavailable, ConfigError
from .forward_auth_config import FrontProxy, render
from .logs import LOG_FORMATS, LOG_LEVELS, logging_config
from .metrics import MULTIPROCESS_DIR
from .runtime import raise_descriptor_limit
from .server import HTTP_PROTOCOL, WS_PROTOCOL, server_settings

log = logging.getLogger("bffgate")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "config", None) is not None:
        # Through the environment: uvicorn's worker processes read their settings from it too.
        os.environ[CONFIG_VARIABLE] = args.config
    # Until the settings are read: BFF_LOG_FORMAT / BFF_LOG_LEVEL as given, checked by load_settings.
    logging.config.dictConfig(logging_config(*_log_choice()))
    try:
        return int(args.run(args))
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"bffgate: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _log_choice() -> tuple[str, str]:
    """BFF_LOG_FORMAT and BFF_LOG_LEVEL from the environment, defaults where unset or invalid."""
    log_format = os.environ.get("BFF_LOG_FORMAT", "text").lower()
    level = os.environ.get("BFF_LOG_LEVEL", "INFO").upper()
    return (log_format if log_format in LOG_FORMATS else "text", level if level in LOG_LEVELS else "INFO")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bffgate", description="A backend-for-frontend token gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        metavar="FILE",
        help=f"read settings from this TOML file (default: {CONFIG_VARIABLE}); environment variables override it",
    )

    serve = commands.add_parser(
        "serve", parents=[config], help="run the gateway (settings from the environment and --config)"
    )
    # BFF_HOST / BFF_PORT: the container image listens on 0.0.0.0:8000 through them.
    serve.add_argument("--host", default=os.environ.get("BFF_HOST", "127.0.0.1"), help="default: BFF_HOST")
    serve.add_argument(
        "--port", type=int, default=os.environ.get("BFF_PORT", "8000"), help="default: BFF_PORT"
    )
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true", help="log every request (off: it costs time)")
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight (downloads, long polls) may go on (default: 5)",
    )
    serve.set_defaults(run=serve_command)

    demo = commands.add_parser("demo", help="run the gateway with a bundled demo API and page, no setup")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--public-url", help="the origin browsers use, when a front end (e.g. Next.js) proxies to the demo"
    )
    demo.add_argument("--login-page", default="/", help="where navigations without a session go")
    demo.set_defaults(run=demo_command)

    check = commands.add_parser(
        "check", parents=[config], help="validate settings (and --config) and reach the provider and Redis"
    )
    check.add_argument(
        "--login",
        metavar="USER",
        help="also try a login as USER and one refresh (BFF_PROVIDER=rest), and say which settings fit "
        "the API's answers; the password comes from BFF_CHECK_PASSWORD or a prompt, never an argument",
    )
    check.add_argument(
        "--user-field",
        default="username",
        help="the credential field USER goes in (default: username; e.g. email)",
    )
    check.set_defaults(run=check_command)

    front = commands.add_parser(
        "forward-auth-config",
        parents=[config],
        help="print an nginx.conf or Caddyfile that keeps the proxying and asks bffgate (forward-auth)",
    )
    front.add_argument("kind", choices=["nginx", "caddy"])
    front.add_argument("--listen", default="127.0.0.1:8080", help="host:port the front proxy serves on")
    front.add_argument(
        "--bffgate", default="127.0.0.1:8000", help="host:port bffgate listens on (only the proxy reaches it)"
    )
    front.add_argument("--prefix", default="/api/", help="the path prefix proxied to REMOTE_API (removed)")
    front.add_argument(
        "--state-dir",
        default="/var/lib/bffgate-front",
        help="pid file, logs, temporary files, decision cache",
    )
    front.set_defaults(run=forward_auth_config_command)
    sessions = commands.add_parser(
        "sessions",
        parents=[config],
        help="list or end a user's sessions (BFF_SESSION_STORE=redis; settings as for serve)",
    )
    sessions.add_argument("action", choices=["list", "end"])
    who = sessions.add_mutually_exclusive_group(required=True)
    for claim in ("sub", "id", "email"):
        who.add_argument(f"--{claim}", help=f"the user, by the claim {claim!r} of the user data")
    sessions.add_argument(
        "--session", metavar="FINGERPRINT", help="end: only this session (as listed / as in the logs)"
    )
    sessions.set_defaults(run=sessions_command)

    keygen = commands.add_parser("keygen", help="print fresh ETLS_ACCESS and ETLS_REFRESH secrets")
    keygen.set_defaults(run=keygen_command)
    return parser


def serve_command(args: argparse.Namespace) -> int:
    settings = load_settings()  # fail here, once, with a clear message, before workers start
    server_settings()  # the server's bounds too (each worker reads them again)
    if settings.bff_provider == "oidc":  # discovery too: a wrong OIDC_ISSUER stops start-up here
        problems = asyncio.run(_reach_services(settings, api=False))  # the API may start later
        for problem in problems:
            print(f"bffgate: {problem}", file=sys.stderr)
        if problems:
            return 1
    if args.workers > 1 and not settings.redis_url:
        log.warning(
            "%d workers without REDIS_URL: each worker refreshes on its own, so two workers can refresh "
            "one session at once; set REDIS_URL for cluster-wide single-flight refresh",
            args.workers,
        )
    raise_descriptor_limit()  # before the workers start: they inherit it
    with _metrics_shared_by(args.workers):
        _run_server(args, settings)
    return 0


@contextlib.contextmanager
def _metrics_shared_by(workers: int) -> Iterator[None]:
    """With several workers, prometheus-client's multiprocess mode in a fresh directory (unless
    PROMETHEUS_MULTIPROC_DIR is set), so that each worker's /metrics answers for all of them."""
    if workers <= 1 or os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bffgate-metrics-") as directory:
        os.environ[MULTIPROCESS_DIR] = directory  # the workers, started next, inherit it
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR]


def _run_server(args: argparse.Namespace, settings: Settings) -> None:
    uvicorn.run(
        "bffgate.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http=HTTP_PROTOCOL,  # httptools with bounded request heads (see bffgate/server.py)
        ws=WS_PROTOCOL,
        ws_max_size=settings.bff_ws_max_message_bytes,
        access_log=args.access_log,
        # In every worker: BFF_LOG_FORMAT/BFF_LOG_LEVEL, and an access log that never records the
        # callback's code and state.
        log_config=logging_config(settings.bff_log_format, settings.bff_log_level, log_config()),
        proxy_headers=False,
        server_header=False,
        log_level=settings.bff_log_level.lower(),
        # Without a bound, one endless download would keep a stopping container alive until SIGKILL.
        timeout_graceful_shutdown=args.graceful_timeout,
    )


def demo_command(args: argparse.Namespace) -> int:
    from .demo import create_demo_app

    server_settings()  # BFF_MAX_HEAD_BYTES & co. apply to the demo too: check them before starting
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    app, _ = create_demo_app(args.host, args.port, bff_public_url=public_url, bff_login_page=args.login_page)
    url = f"http://{args.host}:{args.port}/"
    print(f"bffgate demo: open {url} and log in as demo / demo (access tokens live 20 s)", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=HTTP_PROTOCOL,
        ws=WS_PROTOCOL,
        log_config=log_config(),  # without the false alarm of refused WebSocket handshakes
        log_level="info",  # "Uvicorn running on ..." tells the user (and tests) it is listening
        access_log=False,
        server_header=False,
    )
    return 0


def check_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    load_server_settings()  # a config file may hold the server's bounds too: check them as serve would
    path = config_path(os.environ)
    source = f", file {path}" if path else ""
    print(f"ok: settings (provider {settings.bff_provider}, store {settings.bff_session_store}{source})")
    problems = asyncio.run(_reach_services(settings))
    if args.login is not None and not problems:
        problems += _trial_login(
            settings, {args.user_field: args.login, "password": _check_password(args.login)}
        )
    for problem in problems:
        print(f"bffgate: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _check_password(user: str) -> str:
    """BFF_CHECK_PASSWORD, else a prompt that does not echo (a password never goes in an argument)."""
    password = os.environ.get("BFF_CHECK_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {user}: ")
    return password


def _trial_login(settings: Settings, credentials: dict[str, str]) -> list[str]:
    """Run ``bffgate check --login``'s trial, print what fits, return the problems."""
    if settings.bff_provider != "rest":
        return ["--login: applies to BFF_PROVIDER=rest; an OpenID Connect login happens in the browser"]
    from .providers.http import create_http_client
    from .trial import trial_login

    async def run() -> list[str]:
        async with create_http_client(connect_timeout=5.0) as http:
            report = await trial_login(settings, http, credentials)
        for line in report.ok:
            print(f"ok: {line}")
        for line in report.advice:
            print(f"advice: {line}")
        return report.problems

    return asyncio.run(run())


async def _reach_services(settings: Settings, *, api: bool = True) -> list[str]:
    """What ``/readyz`` probes (see ``readiness``): the provider, the API (unless ``api`` is False),
    Redis."""
    from .providers import create_provider
    from .providers.http import create_http_client
    from .readiness import reachable

    problems = []
    async with create_http_client(connect_timeout=5.0) as http:
        try:
            await create_provider(settings, http).ready()
            endpoints = "login and refresh" if settings.bff_provider == "rest" else "discovery, JWKS, token"
            print(f"ok: provider reachable ({settings.bff_provider}: {endpoints} endpoints)")
        except BffError as exc:
            problems.append(f"provider: {exc.detail}")
        apis = [("REMOTE_API", settings.remote_api)] if api else []
        apis += [(f"route {route.prefix}", route.upstream) for route in settings.routes]
        for name, url in apis:
            try:
                await reachable(http, url)
                print(f"ok: {name} answers")
            except BffError as exc:
                problems.append(f"{name}: {exc.detail}")
    if settings.redis_url:
        problems += await _reach_redis(settings.redis_url, settings.bff_session_store == "redis")
    return problems


async def _reach_redis(url: str, store: bool) -> list[str]:
    from .redis_client import close, connect
    from .redis_errors import COORDINATION, redis_errors
    from .redis_url import parse_redis_url

    mode = parse_redis_url(url).mode  # single, sentinel or cluster
    client = connect(url)
    try:
        with redis_errors(COORDINATION):
            await client.ping()
    except ClusterUnavailable as exc:
        return [
            f"REDIS_URL: Redis does not answer ({mode}, {type(exc.__cause__).__name__}); "
            "check the URL and that Redis runs"
        ]
    finally:
        await close(client)  # with Sentinel, the connections to the sentinels too
    roles = "session store and refresh coordination" if store else "refresh coordination"
    print(f"ok: Redis answers ({mode}; {roles})")
    return []


def forward_auth_config_command(args: argparse.Namespace) -> int:
    prefix = "/" + args.prefix.strip("/") + "/"
    front = FrontProxy(listen=args.listen, bffgate=args.bffgate, prefix=prefix, state_dir=args.state_dir)
    print(render(args.kind, load_settings(), front), end="")
    return 0


def sessions_command(args: argparse.Namespace) -> int:
    """``bffgate sessions list|end``: what ``/admin/sessions`` does, straight on Redis."""
    import json

    from .admin import end_sessions, list_sessions, user_from
    from .runtime import Runtime

    settings = load_settings()
    user = user_from({claim: getattr(args, claim) or "" for claim in ("sub", "id", "email")})

    async def run() -> object:
        runtime = Runtime(settings)
        try:
            gateway = await runtime.gateway()
            if args.action == "list":
                return {"sessions": await list_sessions(gateway, user)}
            return {"endedSessions": await end_sessions(gateway, user, args.session)}
        finally:
            await runtime.close()

    try:
        print(json.dumps(asyncio.run(run()), indent=2))
    except BffError as exc:
        print(f"bffgate: {exc.detail}", file=sys.stderr)
        return 1
    return 0


def keygen_command(args: argparse.Namespace) -> int:
    for name in ("ETLS_ACCESS", "ETLS_REFRESH"):
        print(f"{name}={secrets.token_urlsafe(48)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:] if len(sys.argv) > 1 else None))

"""Readiness that tells the truth (issue 16, item 5): ``/readyz`` and ``bffgate check`` probe every
dependency the gateway uses — the provider's login and refresh endpoints, the API, Redis as the
session store and as refresh coordination — and a lost coordination shows as ``degraded``."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from bffgate.app import create_app

from .conftest import StackFactory
from .harness import SECRET_A, SECRET_R, closed_port, serve, settings_for
from .test_cli import run_cli
from .upstream import create_test_upstream

TOKEN = "metrics-token-0123456789abcdef"
OPERATOR = {"Authorization": "Bearer " + TOKEN}
REDIS_DB = "redis://127.0.0.1:6379/14"


def _closed(path: str = "") -> str:
    return f"http://127.0.0.1:{closed_port()}{path}"


async def test_readyz_is_unavailable_when_only_the_login_endpoint_is_down(make_stack: StackFactory) -> None:
    """The refresh endpoint answers, the login endpoint does not: nobody can sign in, so not ready."""
    async with make_stack(bff_login_url=_closed("/auth/login"), bff_metrics_token=TOKEN) as stack:
        public = await stack.browser().request("GET", "/readyz", csrf=False)
        operator = await stack.browser().request("GET", "/readyz", csrf=False, headers=OPERATOR)
    assert public.status == 503
    assert public.json()["checks"] == {"store": "ok", "provider": "unavailable", "api": "ok"}
    assert "could not be reached" in operator.json()["checks"]["provider"]


async def test_readyz_probes_the_api(http: aiohttp.ClientSession) -> None:
    """REMOTE_API refuses connections while the provider's endpoints answer: unavailable, "api" named."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        settings = settings_for(
            _closed(),
            bff_login_url=api_url + "/auth/login",
            bff_refresh_url=api_url + "/auth/refresh",
        )
        async with serve(create_app(settings)) as gateway_url, http.get(gateway_url + "/readyz") as answer:
            body = await answer.json()
    assert answer.status == 503
    assert body["checks"] == {"store": "ok", "provider": "ok", "api": "unavailable"}


async def test_readyz_and_check_probe_each_routes_api(http: aiohttp.ClientSession) -> None:
    """A route's upstream refuses connections while REMOTE_API and the provider answer: unavailable,
    the route's API named in /readyz and in ``bffgate check``; the route that answers is ok."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        routes = [
            {"prefix": "/api/catalogue/", "upstream": api_url, "token": "none"},
            {"prefix": "/api/billing/", "upstream": _closed(), "token": "user"},
        ]
        settings = settings_for(
            api_url,
            bff_login_url=api_url + "/auth/login",
            bff_refresh_url=api_url + "/auth/refresh",
            routes=routes,
        )
        async with serve(create_app(settings)) as gateway_url, http.get(gateway_url + "/readyz") as answer:
            body = await answer.json()
        checked = await asyncio.to_thread(
            run_cli,
            "check",
            env={
                "REMOTE_API": api_url,
                "ETLS_ACCESS": SECRET_A,
                "ETLS_REFRESH": SECRET_R,
                "BFF_LOGIN_URL": api_url + "/auth/login",
                "BFF_REFRESH_URL": api_url + "/auth/refresh",
                "BFF_ROUTES": json.dumps(routes),
            },
        )
    assert answer.status == 503
    assert body["checks"] == {
        "store": "ok",
        "provider": "ok",
        "api": "ok",
        "api /api/catalogue/": "ok",
        "api /api/billing/": "unavailable",
    }
    assert checked.returncode == 1
    assert "ok: route /api/catalogue/ answers" in checked.stdout
    assert "route /api/billing/:" in checked.stdout + checked.stderr


async def test_lost_coordination_is_degraded_in_readyz_the_metric_and_the_log(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Cookie store with an unreachable REDIS_URL: still serving (200) but ``degraded``, with
    ``bffgate_coordination_degraded 1`` and a log line — not "ready" as before."""
    with caplog.at_level(logging.INFO, logger="bffgate"):
        async with make_stack(redis_url=_closed().replace("http", "redis") + "/0") as stack:
            browser = stack.browser()
            answer = await browser.request("GET", "/readyz", csrf=False)
            metrics = await browser.request("GET", "/metrics", csrf=False)
    assert answer.status == 200
    assert answer.json() == {
        "status": "degraded",
        "checks": {"store": "ok", "provider": "ok", "api": "ok", "coordination": "degraded"},
    }
    assert "bffgate_coordination_degraded 1.0" in metrics.body.decode()
    assert any("coordination" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_redis_as_store_and_coordination_ready_when_it_answers(make_stack: StackFactory) -> None:
    async with make_stack(bff_session_store="redis", redis_url=REDIS_DB) as stack:
        browser = stack.browser()
        answer = await browser.request("GET", "/readyz", csrf=False)
        metrics = await browser.request("GET", "/metrics", csrf=False)
    assert (answer.status, answer.json()["status"]) == (200, "ready")
    assert answer.json()["checks"] == {"store": "ok", "provider": "ok", "api": "ok", "coordination": "ok"}
    assert "bffgate_coordination_degraded 0.0" in metrics.body.decode()


async def test_redis_store_down_is_unavailable_not_degraded(make_stack: StackFactory) -> None:
    """With the Redis store, Redis is required: no Redis, no sessions (503), coordination included."""
    async with make_stack(
        bff_session_store="redis", redis_url=_closed().replace("http", "redis") + "/0"
    ) as stack:
        answer = await stack.browser().request("GET", "/readyz", csrf=False)
    assert answer.status == 503
    assert answer.json()["checks"]["coordination"] == "unavailable"


async def test_check_fails_when_the_login_endpoint_is_down_and_probes_the_api() -> None:
    """`bffgate check` no longer says "provider reachable" when only the refresh URL answers; it also
    says whether REMOTE_API answers and what Redis is used for."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url:
        base = {"REMOTE_API": api_url, "ETLS_ACCESS": SECRET_A, "ETLS_REFRESH": SECRET_R}
        login_down = await asyncio.to_thread(
            run_cli, "check", env={**base, "BFF_LOGIN_URL": _closed("/auth/login")}
        )
        api_down = await asyncio.to_thread(
            run_cli,
            "check",
            env={
                **base,
                "REMOTE_API": _closed(),
                "BFF_LOGIN_URL": api_url + "/auth/login",
                "BFF_REFRESH_URL": api_url + "/auth/refresh",
            },
        )
        ok = await asyncio.to_thread(
            run_cli, "check", env={**base, "REDIS_URL": REDIS_DB, "BFF_SESSION_STORE": "redis"}
        )
    assert login_down.returncode == 1
    assert "bffgate: provider:" in login_down.stderr
    assert "ok: provider reachable" not in login_down.stdout
    assert api_down.returncode == 1
    assert "bffgate: REMOTE_API:" in api_down.stderr
    assert ok.returncode == 0, ok.stderr
    assert "ok: REMOTE_API answers" in ok.stdout
    assert "session store and refresh coordination" in ok.stdout

"""Issue 11, item 11c: ``/metrics`` and ``/readyz``'s details are for operators only."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bffgate.config import load_settings
from bffgate.errors import ConfigError

from .conftest import StackFactory
from .harness import SECRET_A, SECRET_R, Browser, Stack, closed_port
from .processes import free_port, gateway_process

TOKEN = "metrics-token-0123456789abcdef"


def _unreachable_provider() -> dict[str, str]:
    """Settings whose readiness check fails with an error detail (the refresh endpoint refuses TCP)."""
    return {"bff_refresh_url": f"http://127.0.0.1:{closed_port()}/auth/refresh"}


async def test_public_readiness_answer_carries_no_error_details(make_stack: StackFactory) -> None:
    """Without the token, a failing /readyz names the failing check, never what went wrong."""
    async with make_stack(**_unreachable_provider()) as stack:
        answer = await stack.browser().request("GET", "/readyz", csrf=False)
    assert answer.status == 503
    assert answer.json() == {
        "status": "unavailable",
        "checks": {"store": "ok", "provider": "unavailable", "api": "ok"},
    }
    assert "127.0.0.1" not in answer.body.decode()


async def test_readiness_details_need_the_metrics_token(make_stack: StackFactory) -> None:
    """With BFF_METRICS_TOKEN, the token (and only it) sees why a check fails."""
    async with make_stack(bff_metrics_token=TOKEN, **_unreachable_provider()) as stack:
        browser = stack.browser()
        public = await browser.request("GET", "/readyz", csrf=False)
        wrong = await browser.request(
            "GET", "/readyz", csrf=False, headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"}
        )
        operator = await browser.request(
            "GET", "/readyz", csrf=False, headers={"Authorization": "Bearer " + TOKEN}
        )
    assert public.json()["checks"]["provider"] == "unavailable"
    assert wrong.json()["checks"]["provider"] == "unavailable"
    assert operator.status == 503
    assert operator.json()["checks"]["provider"] not in ("ok", "unavailable")


async def test_metrics_need_the_token_when_one_is_set(make_stack: StackFactory) -> None:
    """/metrics answers 401 metrics_unauthorized (Bearer challenge) without the right token."""
    async with make_stack(bff_metrics_token=TOKEN) as stack:
        browser = stack.browser()
        missing = await browser.request("GET", "/metrics", csrf=False)
        wrong = await browser.request("GET", "/metrics", csrf=False, headers={"Authorization": "Bearer nope"})
        basic = await browser.request(
            "GET", "/metrics", csrf=False, headers={"Authorization": "Basic " + TOKEN}
        )
        right = await browser.request(
            "GET", "/metrics", csrf=False, headers={"Authorization": "Bearer " + TOKEN}
        )
    for refused in (missing, wrong, basic):
        assert (refused.status, refused.code) == (401, "metrics_unauthorized")
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert b"bffgate_" not in refused.body
    assert right.status == 200
    assert b"bffgate_proxied_requests" in right.body


async def test_metrics_stay_open_without_a_token(make_stack: StackFactory) -> None:
    """Control: without BFF_METRICS_TOKEN, /metrics answers as before (block it at the front proxy)."""
    async with make_stack() as stack:
        answer = await stack.browser().request("GET", "/metrics", csrf=False)
    assert answer.status == 200
    assert b"bffgate_proxied_requests" in answer.body


@pytest.mark.parametrize("token", ["short", "has a space in it, long enough"])
def test_weak_metrics_token_stops_start_up(token: str) -> None:
    """A guessable or malformed token is a configuration error naming the variable."""
    with pytest.raises(ConfigError, match="BFF_METRICS_TOKEN"):
        load_settings(
            remote_api="http://127.0.0.1:1",
            etls_access=SECRET_A,
            etls_refresh=SECRET_R,
            bff_metrics_token=token,
        )


async def test_metrics_address_serves_operations_apart_from_the_public_port(make_stack: StackFactory) -> None:
    """With BFF_METRICS_ADDRESS, /metrics and /readyz's details are on that address only."""
    address = f"127.0.0.1:{free_port()}"
    async with make_stack(bff_metrics_address=address, **_unreachable_provider()) as stack:
        public = stack.browser()
        operator = Browser(stack.http, f"http://{address}")
        public_metrics = await public.request("GET", "/metrics", csrf=False)
        public_ready = await public.request("GET", "/readyz", csrf=False)
        side_metrics = await operator.request("GET", "/metrics", csrf=False)
        side_ready = await operator.request("GET", "/readyz", csrf=False)
        side_health = await operator.request("GET", "/healthz", csrf=False)
    assert (public_metrics.status, public_metrics.code) == (404, "not_found")
    assert public_ready.json()["checks"]["provider"] == "unavailable"
    assert side_metrics.status == 200
    assert b"bffgate_proxied_requests" in side_metrics.body
    assert side_ready.status == 503
    assert side_ready.json()["checks"]["provider"] not in ("ok", "unavailable")
    assert side_health.status == 200


async def test_metrics_address_listens_only_while_the_app_runs(make_stack: StackFactory) -> None:
    """The operators' listener stops with the app (nothing left listening)."""
    port = free_port()
    async with make_stack(bff_metrics_address=f"127.0.0.1:{port}") as stack:
        assert (
            await Browser(stack.http, f"http://127.0.0.1:{port}").request("GET", "/healthz")
        ).status == 200
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.parametrize("address", ["9100", "127.0.0.1", ":9100", "127.0.0.1:http", "127.0.0.1:70000"])
def test_bad_metrics_address_stops_start_up(address: str) -> None:
    """BFF_METRICS_ADDRESS must be host:port."""
    with pytest.raises(ConfigError, match="BFF_METRICS_ADDRESS"):
        load_settings(
            remote_api="http://127.0.0.1:1",
            etls_access=SECRET_A,
            etls_refresh=SECRET_R,
            bff_metrics_address=address,
        )


async def test_metrics_address_with_two_workers_and_a_clean_shutdown(stack: Stack) -> None:
    """`bffgate serve --workers 2`: both workers share the operators' address; SIGTERM still ends all."""
    address = f"127.0.0.1:{free_port()}"
    async with gateway_process(stack.api_url, {"BFF_METRICS_ADDRESS": address}, workers=2) as gateway:
        operator = Browser(stack.http, f"http://{address}")
        answers = [await operator.request("GET", "/metrics", csrf=False) for _ in range(4)]
        public = await Browser(stack.http, gateway.url).request("GET", "/metrics", csrf=False)
    assert {a.status for a in answers} == {200}
    assert public.status == 404
    assert gateway.process.returncode == 0  # ended by SIGTERM, not killed after the 30 s wait


async def test_failing_checks_are_logged_once_per_change(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators keep the details: one warning when a check starts failing, not one per probe."""
    caplog.set_level(logging.INFO, logger="bffgate")
    async with make_stack(**_unreachable_provider()) as stack:
        for _ in range(3):
            assert (await stack.browser().request("GET", "/readyz", csrf=False)).status == 503
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("readiness:")]
    assert len(lines) == 1
    assert lines[0].startswith("readiness: provider: ")
    assert lines[0] != "readiness: provider: unavailable"  # the reason itself, not the public word

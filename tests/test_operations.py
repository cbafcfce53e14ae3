"""Issue 11, item 11c: ``/metrics`` and ``/readyz``'s details are for operators only."""

from __future__ import annotations

import pytest

from bffgate.config import load_settings
from bffgate.errors import ConfigError

from .conftest import StackFactory
from .harness import SECRET_A, SECRET_R, closed_port

TOKEN = "metrics-token-0123456789abcdef"


def _unreachable_provider() -> dict[str, str]:
    """Settings whose readiness check fails with an error detail (the refresh endpoint refuses TCP)."""
    return {"bff_refresh_url": f"http://127.0.0.1:{closed_port()}/auth/refresh"}


async def test_public_readiness_answer_carries_no_error_details(make_stack: StackFactory) -> None:
    """Without the token, a failing /readyz names the failing check, never what went wrong."""
    async with make_stack(**_unreachable_provider()) as stack:
        answer = await stack.browser().request("GET", "/readyz", csrf=False)
    assert answer.status == 503
    assert answer.json() == {"status": "unavailable", "checks": {"store": "ok", "provider": "unavailable"}}
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

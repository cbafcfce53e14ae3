"""Metrics worth a dashboard (issue 16, item 3): latency histograms of requests, API calls and provider
calls, and, with `bffgate serve --workers N`, every scrape answers for all workers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .conftest import StackFactory
from .harness import Browser, serve
from .processes import gateway_process, redis_process
from .upstream import create_test_upstream

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def scrape(browser: Browser) -> Samples:
    answer = await browser.request("GET", "/metrics", csrf=False)
    assert answer.status == 200
    return samples(answer.body.decode())


async def test_latency_histograms_by_route_status_class_and_call(make_stack: StackFactory) -> None:
    async with make_stack() as stack:
        browser = stack.browser()
        before = await scrape(browser)
        await browser.login()
        assert (await browser.request("GET", "/api/rest/proxy/echo/a")).status == 200
        assert (await browser.request("GET", "/api/rest/proxy/status/503")).status == 503
        assert (await browser.request("POST", "/api/rest/refreshresttokens")).status == 200
        after = await scrape(browser)
    count = "bffgate_request_duration_seconds_count"
    assert grew(before, after, count, route="proxy", status="2xx") == 1
    assert grew(before, after, count, route="proxy", status="5xx") == 1
    assert grew(before, after, count, route="login", status="2xx") == 1
    assert grew(before, after, "bffgate_upstream_duration_seconds_count", status="2xx") == 1
    assert grew(before, after, "bffgate_upstream_duration_seconds_count", status="5xx") == 1
    assert grew(before, after, "bffgate_provider_duration_seconds_count", call="login") == 1
    assert grew(before, after, "bffgate_provider_duration_seconds_count", call="refresh") == 1
    assert grew(before, after, "bffgate_refreshes_total", outcome="ok") == 1
    assert grew(before, after, "bffgate_request_duration_seconds_sum", route="proxy", status="2xx") > 0


async def test_every_scrape_of_several_workers_counts_all_of_them() -> None:
    """`--workers 2`: logins spread over both workers (a new connection each), and each scrape — read
    by whichever worker accepts it — reports all of them, not one worker's share."""
    upstream, _, _ = create_test_upstream()
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, hence any worker, each time
    async with (
        aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as http,
        serve(upstream, lifespan="off") as api_url,
        gateway_process(api_url, workers=2) as gateway,
    ):
        for _ in range(30):
            await Browser(http, gateway.url).login()
        scrapes = [await scrape(Browser(http, gateway.url)) for _ in range(6)]
    for scraped in scrapes:
        assert scraped[("bffgate_logins_total", ())] == 30
        assert (
            scraped[("bffgate_request_duration_seconds_count", (("route", "login"), ("status", "2xx")))] == 30
        )


async def test_the_grafana_dashboard_uses_only_metrics_the_gateway_exports(make_stack: StackFactory) -> None:
    """docs/grafana-dashboard.json: every bffgate_* series it queries is one /metrics exports."""
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"bffgate_[a-z_]+", target["expr"])
    }
    queried = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in queried}
    async with make_stack() as stack:
        answer = await stack.browser().request("GET", "/metrics", csrf=False)
        exported = {family.name for family in text_string_to_metric_families(answer.body.decode())}
    assert len(queried) >= 8
    assert queried <= exported, queried - exported


def _value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_open_connections_to_the_api_are_a_gauge(http: aiohttp.ClientSession) -> None:
    """A real `bffgate serve`: connections to the API are kept per session, so two sessions making
    three calls each hold two connections; the gauge counts connections, not calls."""
    upstream, _, _ = create_test_upstream()
    async with serve(upstream, lifespan="off") as api_url, gateway_process(api_url) as gateway:
        observer = Browser(http, gateway.url)
        before = _value(await scrape(observer), "bffgate_api_connections")
        browsers = [Browser(http, gateway.url) for _ in range(2)]
        for browser in browsers:
            await browser.login()
            for _ in range(3):
                assert (await browser.request("GET", "/api/rest/proxy/echo/x")).status == 200
        after = _value(await scrape(observer), "bffgate_api_connections")
    assert (before, after) == (0, 2)


async def test_redis_round_trips_and_store_failures_are_counted(http: aiohttp.ClientSession) -> None:
    """The Redis session store on a private redis-server: its round trips are counted under
    role="store"; while that server is down, a call fails with 503 store_unavailable and the store's
    failures are counted too (not only refresh coordination's); it recovers when Redis is back."""
    upstream, _, _ = create_test_upstream()
    async with redis_process() as redis_server, serve(upstream, lifespan="off") as api_url:
        env = {"BFF_SESSION_STORE": "redis", "REDIS_URL": redis_server.url}
        async with gateway_process(api_url, env) as gateway:
            browser, observer = Browser(http, gateway.url), Browser(http, gateway.url)
            await browser.login()
            before = await scrape(observer)
            assert (await browser.request("GET", "/api/rest/proxy/echo/a")).status == 200
            assert (await browser.request("GET", "/api/rest/proxy/echo/b")).status == 200
            working = await scrape(observer)
            await redis_server.stop()
            down = await browser.request("GET", "/api/rest/proxy/echo/c")
            failing = await scrape(observer)
            await redis_server.start()
            back = await browser.request("GET", "/api/rest/proxy/echo/d")
    trips, failures = "bffgate_redis_round_trips_total", "bffgate_redis_failures_total"
    assert grew(before, working, trips, role="store") >= 2  # one session read per call at least
    assert grew(before, working, failures, role="store") == 0
    assert (down.status, down.code) == (503, "store_unavailable")
    assert grew(working, failing, failures, role="store") >= 1
    assert back.status == 200
    assert _value(failing, "bffgate_redis_round_trips_total", role="login_limit") == 0  # limits off

"""OpenTelemetry tracing (issue 16, item 2), with the SDK's in-memory exporter: spans for the request,
the session load, the refresh (outcome; waiters linked to it), provider and API calls, and a W3C
``traceparent`` that the API and the provider receive, in the request's trace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bffgate import tracing
from bffgate.app import create_app

from .harness import Browser, serve, settings_for
from .test_restarts import HoldRefresh
from .upstream import Recorder, create_test_upstream

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on (OTEL_TRACES_EXPORTER=none: propagate, export nothing) over a test tracer provider."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setattr(tracing, "_tracer", None)  # configure() runs again, and tracing ends after
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


@contextlib.asynccontextmanager
async def _stack(
    http: aiohttp.ClientSession, **overrides: object
) -> AsyncIterator[tuple[Browser, Recorder, HoldRefresh]]:
    app, _, recorder = create_test_upstream()
    upstream = HoldRefresh(app)
    async with serve(upstream, lifespan="off") as api_url:
        app_under_test = create_app(settings_for(api_url, **overrides))
        async with serve(app_under_test) as gateway_url:
            yield Browser(http, gateway_url), recorder, upstream


def _trace_id(traceparent: str) -> int:
    return int(traceparent.split("-")[1], 16)


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_spans_and_traceparent_to_the_api_and_the_provider(
    traced: InMemorySpanExporter, http: aiohttp.ClientSession
) -> None:
    async with _stack(http) as (browser, recorder, _):
        await browser.login()
        assert (await browser.request("POST", "/api/rest/refreshresttokens")).status == 200
        assert (await browser.request("GET", "/api/rest/proxy/echo/traced?q=secret-query")).status == 200
    spans = traced.get_finished_spans()
    (request,) = _named(spans, "GET proxy")
    (upstream,) = _named(spans, "upstream GET")
    (refresh,) = _named(spans, "refresh")
    (refresh_request,) = _named(spans, "POST refresh")
    api_traceparent = recorder.to("/echo/traced")[-1].headers["traceparent"]
    provider_traceparent = recorder.to("/auth/refresh")[-1].headers["traceparent"]
    # The API's traceparent continues the browser request's trace, from the upstream call's span.
    assert _trace_id(api_traceparent) == request.context.trace_id == upstream.context.trace_id
    assert int(api_traceparent.split("-")[2], 16) == upstream.context.span_id
    assert upstream.parent is not None and upstream.parent.span_id == request.context.span_id
    assert _named(spans, "session load")
    # The refresh is a child of the request that started it, and so is the provider call.
    assert refresh.context.trace_id == refresh_request.context.trace_id == _trace_id(provider_traceparent)
    assert refresh.attributes is not None and refresh.attributes["bffgate.refresh.outcome"] == "ok"
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 200
    assert all("secret-query" not in str(s.attributes) for s in spans)


async def test_a_waiter_is_linked_to_the_single_refresh(
    traced: InMemorySpanExporter, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Two requests need a refresh at once: one flies it, the other's "refresh wait" span links to it."""
    joined = asyncio.Event()

    class OnJoin(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "fields", {}).get("event") == "refresh_joined":
                joined.set()

    handler = OnJoin()
    logging.getLogger("bffgate.refresh").addHandler(handler)
    try:
        async with _stack(http) as (browser, _, upstream):
            with caplog.at_level(logging.DEBUG, logger="bffgate.refresh"):
                await browser.login()
                upstream.reject_issued_before = time.time()  # the API answers 401: both refresh
                upstream.armed = True
                first = asyncio.create_task(browser.clone().request("GET", "/api/rest/proxy/echo/1"))
                await asyncio.wait_for(upstream.entered.wait(), 10)
                second = asyncio.create_task(browser.clone().request("GET", "/api/rest/proxy/echo/2"))
                await asyncio.wait_for(joined.wait(), 10)
                upstream.release.set()
                answers = await asyncio.gather(first, second)
    finally:
        logging.getLogger("bffgate.refresh").removeHandler(handler)
    assert [a.status for a in answers] == [200, 200]
    spans = traced.get_finished_spans()
    (refresh,) = _named(spans, "refresh")
    (wait,) = _named(spans, "refresh wait")
    assert [link.context.span_id for link in wait.links] == [refresh.context.span_id]


async def test_tracing_is_off_without_otel_traces_exporter(
    monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    """No OTEL_TRACES_EXPORTER: no span is made and no traceparent is sent (cost: one global read)."""
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setattr(tracing, "_tracer", None)
    async with _stack(http) as (browser, recorder, _):
        await browser.login()
        assert (await browser.request("GET", "/api/rest/proxy/echo/plain")).status == 200
    assert tracing.enabled() is False
    assert "traceparent" not in recorder.to("/echo/plain")[-1].headers

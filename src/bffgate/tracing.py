"""OpenTelemetry tracing, optional (``pip install bffgate[otel]``) and configured by ``OTEL_*`` variables.

Tracing is on when the OpenTelemetry SDK is installed and ``OTEL_TRACES_EXPORTER`` is set: ``otlp``
(OTLP over HTTP, ``OTEL_EXPORTER_OTLP_ENDPOINT`` & co.), ``console``, or ``none`` (spans are made and
W3C ``traceparent`` is propagated to the API and the provider, nothing is exported). An application
that mounts bffgate and has set up its own tracer provider keeps it.

Off, the request path holds no tracing code at all: the incoming request's span is a layer of its own
(``ServerSpans``), which the app installs only when tracing is on at start-up, and the two sites that
run on every proxied call (the session load, the API call) chose their traced or plain version then.
The other helpers are no-ops costing one global read; no OpenTelemetry module is even imported.

Spans: the incoming request (``requestlog``), the session load, the refresh (with its outcome; a
request that waits for another's refresh gets a span linked to it), each provider call and the API
call. No span attribute holds a token, a cookie or a query.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, MutableSequence
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span, SpanContext, Tracer

EXPORTERS = ("otlp", "console", "none")
_tracer: Tracer | None = None


def configure() -> bool:
    """Turn tracing on if ``OTEL_TRACES_EXPORTER`` asks for it and the SDK is there; idempotent."""
    global _tracer
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if _tracer is not None or not exporter:
        return _tracer is not None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:  # the otel extra is not installed: tracing stays off
        return False
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # nobody set one up yet
        provider = TracerProvider()  # resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
        _add_exporter(provider, exporter)
        trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("bffgate")
    return True


def _add_exporter(provider: Any, exporter: str) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))


def enabled() -> bool:
    return _tracer is not None


class _NoSpan:
    """The context manager ``span`` gives when tracing is off: one shared object, nothing done."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(
    name: str, *, kind: str = "internal", links: list[Link] | None = None, **attributes: Any
) -> contextlib.AbstractContextManager[Span | None]:
    """A span around the block (the current span's child), or nothing when tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    from opentelemetry.trace import SpanKind

    return _tracer.start_as_current_span(
        name, kind=SpanKind[kind.upper()], links=links, attributes=_clean(attributes)
    )


@contextlib.contextmanager
def server_span(name: str, headers: list[tuple[bytes, bytes]], **attributes: Any) -> Iterator[Span | None]:
    """The incoming request's span, continuing the caller's ``traceparent`` if it sent one."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import context, propagate

    carrier = {
        k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")
    }
    token = context.attach(propagate.extract(carrier))
    try:
        with span(name, kind="server", **attributes) as current:
            yield current
    finally:
        context.detach(token)


class ServerSpans:
    """ASGI layer: a server span per HTTP request (installed by the app only when tracing is on)."""

    def __init__(self, app: ASGIApp, *, route_of: Callable[[Scope], str], request_id_key: str) -> None:
        self.app = app
        self.route_of = route_of
        self.request_id_key = request_id_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        route = self.route_of(scope)
        request_id = scope.get(self.request_id_key)
        with server_span(
            f"{scope['method']} {route}",
            scope["headers"],
            http__request__method=scope["method"],
            http__route=route,
            url__path=scope["path"][:512],
            bffgate__request_id=request_id.decode() if isinstance(request_id, bytes) else None,
        ) as current:
            await self.app(scope, receive, send_noting_status)
            set_attributes(current, http__response__status_code=status or None)


def inject(headers: MutableSequence[tuple[str, str]]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing ``headers``."""
    if _tracer is None:
        return
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers.extend(carrier.items())


def inject_dict(headers: dict[str, str]) -> None:
    if _tracer is None:
        return
    from opentelemetry import propagate

    propagate.inject(headers)


def current_context() -> SpanContext | None:
    """The current span's context (to link to it later), or None when tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return trace.get_current_span().get_span_context()


def link_to(context: SpanContext | None) -> list[Link] | None:
    if context is None:
        return None
    from opentelemetry.trace import Link

    return [Link(context)]


def set_attributes(current: Span | None, **attributes: Any) -> None:
    if current is not None:
        current.set_attributes(_clean(attributes))


def note(**attributes: Any) -> None:
    """Attributes on the current span (no-op when tracing is off)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_clean(attributes))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    # OpenTelemetry takes str, bool, int, float; None means "not known": left out.
    return {key.replace("__", "."): value for key, value in attributes.items() if value is not None}

"""``ProxiedCall`` driven through the in-memory transport: no sockets, no server, no router."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from bffgate import logs
from bffgate.errors import BffError, CsrfFailed
from bffgate.gateway import Gateway
from bffgate.problems import problem_response
from bffgate.proxied_call import ProxiedCall
from bffgate.requestlog import REQUEST_ID_KEY, route_of
from bffgate.routes import origin_of
from bffgate.transport import SINGLE_USE, TransportError, TransportTimeout, UnsendableRequest

from ..harness import settings_for
from .fakes import MemoryStore, RotatingProvider, session_of
from .memory_transport import MemoryAnswer, MemoryTransport, SentRequest

API = "http://api.invalid/v1"


def gateway_with(
    transport: MemoryTransport, provider: RotatingProvider | None = None, store: MemoryStore | None = None
) -> Gateway:
    provider = provider or RotatingProvider()
    return Gateway(settings_for(API), store or MemoryStore(session_of()), provider, transport)


async def not_proxied(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("a proxied call went on to the router")


async def problem_answer(request: HTTPConnection, error: Exception) -> Response:
    return problem_response(error if isinstance(error, BffError) else BffError())


async def call(
    gateway: Gateway, method: str = "GET", body: list[bytes] | None = None
) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """``method /api/rest/proxy/items?q=1`` through ``ProxiedCall``, as an ASGI server would run it."""

    async def current() -> Gateway:
        return gateway

    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": "/api/rest/proxy/items",
        "raw_path": b"/api/rest/proxy/items",
        "query_string": b"q=1",
        "root_path": "",
        "headers": [(b"accept", b"application/json"), (b"x-csrf", b"1")]
        + ([(b"transfer-encoding", b"chunked")] if body else []),
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": True} for piece in body or []
    ]
    incoming.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await ProxiedCall(not_proxied, gateway=current, on_error=problem_answer)(scope, receive, send)
    heads: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        heads.setdefault(name, []).append(value)
    return sent[0]["status"], heads, b"".join(m.get("body", b"") for m in sent[1:])


def ok(_: SentRequest) -> MemoryAnswer:
    return MemoryAnswer(200, [(b"content-type", b"application/json"), (b"content-length", b"2")], [b"{}"])


async def test_the_call_carries_the_session_token_and_streams_the_answer() -> None:
    transport = MemoryTransport(ok)
    status, headers, body = await call(gateway_with(transport))
    assert (status, body) == (200, b"{}")
    [sent] = transport.sent
    assert (sent.method, sent.target, sent.partition) == ("GET", "/v1/items?q=1", "sid-1")
    assert sent.header("Authorization") == "Bearer at0"
    assert sent.header("Accept") == "application/json"
    assert headers[b"content-type"] == [b"application/json"]
    assert transport.answers[0].released


async def test_a_401_is_retried_once_with_refreshed_tokens_whose_cookies_reach_the_browser() -> None:
    def first_refused(request: SentRequest) -> MemoryAnswer:
        return MemoryAnswer(401) if request.header("Authorization") == "Bearer at0" else ok(request)

    transport = MemoryTransport(first_refused)
    provider = RotatingProvider()
    status, headers, _ = await call(gateway_with(transport, provider))
    assert status == 200
    assert [s.header("Authorization") for s in transport.sent] == ["Bearer at0", "Bearer at1"]
    assert provider.refreshes == 1
    assert headers[b"set-cookie"] == [b"token=at1"]
    assert headers[b"cache-control"] == [b"no-store"]
    assert transport.answers[0].released  # the refused answer's connection is not left open


async def test_a_401_to_a_streamed_body_is_not_retried() -> None:
    transport = MemoryTransport(lambda _: MemoryAnswer(401))
    gateway = gateway_with(transport)
    beyond_replay = gateway.settings.bff_replay_bytes + 1
    status, _, _ = await call(gateway, "POST", [b"x" * beyond_replay])
    assert status == 401
    assert len(transport.sent) == 1
    assert transport.sent[0].body == b"x" * beyond_replay


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (TransportError("refused"), 502, "upstream_unavailable"),
        (TransportTimeout("slow"), 504, "upstream_timeout"),
        (UnsendableRequest("line break"), 400, "invalid_request"),
    ],
)
async def test_transport_failures_become_problem_answers(
    failure: TransportError, status: int, code: str
) -> None:
    transport = MemoryTransport(lambda _: failure)
    answer_status, headers, body = await call(gateway_with(transport))
    assert (answer_status, json.loads(body)["code"]) == (status, code)
    assert headers[b"content-type"] == [b"application/problem+json"]


async def test_another_path_goes_on_to_the_next_app() -> None:
    reached: list[str] = []

    async def router(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    async def no_gateway() -> Gateway:
        raise AssertionError("the gateway is not needed")

    async def nothing_arrives() -> Message:
        raise AssertionError("nothing is read")

    async def nothing_leaves(message: Message) -> None:
        raise AssertionError("nothing is sent")

    scope = {"type": "http", "method": "GET", "path": "/api/auth/user", "root_path": "", "headers": []}
    proxied = ProxiedCall(router, gateway=no_gateway, on_error=problem_answer)
    await proxied(scope, nothing_arrives, nothing_leaves)
    assert reached == ["/api/auth/user"]


async def test_an_answer_that_breaks_off_mid_stream_is_closed_not_raised() -> None:
    def broken(_: SentRequest) -> MemoryAnswer:
        return MemoryAnswer(200, [], [b"a" * 10, b"b" * 10], broken_after=1)

    transport = MemoryTransport(broken)
    status, _, body = await call(gateway_with(transport))
    assert status == 200
    assert body == b"a" * 10  # what came before the break, then the connection is cut
    assert transport.answers[0].closed


async def test_a_refreshing_call_seals_the_new_session_once() -> None:
    """The cookies of a refreshed session are sealed before the API call (so that tokens which do not
    fit fail before an answer is held open) and that sealing is what the browser gets: not sealed
    again after the answer."""
    store = MemoryStore(session_of(expires_in=-1))
    status, headers, _ = await call(gateway_with(MemoryTransport(ok), store=store))
    assert status == 200
    assert headers[b"set-cookie"] == [b"token=at1"]
    assert [s.access_token for s in store.sealed] == ["at1"]


async def test_a_session_logged_out_during_the_call_gets_no_cookies() -> None:
    """The one check after the answer: a logout that came while the API answered drops the cookies
    sealed before the call (security requirement 21, here without Redis)."""
    store = MemoryStore(session_of(expires_in=-1))
    ended: list[str] = []

    def logged_out_meanwhile(_: SentRequest) -> MemoryAnswer:
        ended.append("sid-1")
        gateway.refresher._ended.add("sid-1", time.time() + 60)
        return ok(_)

    gateway = gateway_with(MemoryTransport(logged_out_meanwhile), store=store)
    status, headers, _ = await call(gateway)
    assert status == 200
    assert ended == ["sid-1"]  # the logout came during the API call
    assert b"set-cookie" not in headers


async def answer_of(proxied: ProxiedCall, method: str, path: str, root_path: str = "") -> tuple[int, bytes]:
    """Status and body of ``method path`` through ``proxied`` (no body, no headers)."""
    scope = {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": []}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await proxied(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_forward_auth_decisions_are_answered_here_and_their_errors_by_the_error_handler() -> None:
    """``/api/auth/forward`` never reaches the router; what the decision raises is a problem answer."""
    asked: list[str] = []

    async def decide(request: Request) -> Response:
        asked.append(request.method)
        if request.method == "POST":
            raise CsrfFailed("no X-CSRF")
        return Response(status_code=200)

    async def no_gateway() -> Gateway:
        raise AssertionError("a decision asks for the gateway itself")

    proxied = ProxiedCall(not_proxied, gateway=no_gateway, on_error=problem_answer, decide=decide)
    assert await answer_of(proxied, "GET", "/api/auth/forward") == (200, b"")
    assert await answer_of(proxied, "GET", "/bff/api/auth/forward", root_path="/bff") == (200, b"")
    status, body = await answer_of(proxied, "POST", "/api/auth/forward")
    assert (status, json.loads(body)["code"]) == (403, "csrf_failed")
    status, body = await answer_of(proxied, "TRACE", "/api/auth/forward")
    assert (status, json.loads(body)["code"]) == (405, "method_not_allowed")
    assert asked == ["GET", "GET", "POST"], "a method no decision takes is refused before deciding"


async def test_a_route_call_without_a_session_carries_the_request_id_and_is_timed() -> None:
    """A route of the table (its own upstream's pool, a ``SINGLE_USE`` connection without a session)
    sends the request's id to its API and reports the API's status and time to the request's log line,
    as the default route does."""
    api = MemoryTransport(ok)
    billing = MemoryTransport(ok)
    route = {"prefix": "/api/billing/", "upstream": "http://billing.invalid/v2", "token": "none"}
    gateway = Gateway(
        settings_for(API, routes=[route]),
        MemoryStore(None),
        RotatingProvider(),
        api,
        transports={origin_of("http://billing.invalid/v2"): billing},
    )

    async def current() -> Gateway:
        return gateway

    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/billing/invoices",
        "raw_path": b"/api/billing/invoices",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-csrf", b"1"), (b"x-request-id", b"from-the-browser")],
        REQUEST_ID_KEY: b"req-42",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    fields: dict[str, Any] = {"request_id": b"req-42"}
    token = logs.collect(fields)
    try:
        middleware = ProxiedCall(not_proxied, gateway=current, on_error=problem_answer, routes=gateway.routes)
        await middleware(scope, receive, send)
    finally:
        logs.stop_collecting(token)
    assert sent[0]["status"] == 200
    assert not api.sent
    [request] = billing.sent
    assert (request.target, request.partition) == ("/v2/invoices", SINGLE_USE)
    assert [v for n, v in request.headers if n.lower() == "x-request-id"] == ["req-42"]
    assert fields["upstream_status"] == 200
    assert fields["upstream_ns"] > 0
    assert route_of(scope) == "/api/billing/"  # its own name in the log line and the metrics

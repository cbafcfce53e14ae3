"""The upstream the integration tests talk to: the demo API plus recording and misbehaving endpoints.

Everything the gateway sends is recorded, so tests can assert what reached the API (and that nothing
did when nothing must). ``Recorder.refresh_answer`` / ``login_answer`` replace the demo API's answers
to simulate broken or failing providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from bffgate.demo.api import DemoState, create_demo_api


@dataclass
class Recorded:
    method: str
    raw_path: str
    query: str
    headers: dict[str, str]


@dataclass
class Recorder:
    """What reached the upstream, and switches that make it misbehave."""

    requests: list[Recorded] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    refresh_answer: Response | None = None
    login_answer: Response | None = None
    release_slow: asyncio.Event = field(default_factory=asyncio.Event)
    slow_entered: asyncio.Event = field(default_factory=asyncio.Event)  # /slow is waiting for release_slow
    endless_stopped: asyncio.Event = field(default_factory=asyncio.Event)  # /endless was hung up on
    end_endless: asyncio.Event = field(default_factory=asyncio.Event)  # a test ends /endless itself
    release_event: asyncio.Event = field(default_factory=asyncio.Event)  # /events?gated: send the next
    flood_sent: int = 0
    socket_rejections: int = (
        0  # handshakes /ws-401-once has seen  # bytes the /flood WebSocket got through its send() so far
    )

    def to(self, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.raw_path.startswith(path_prefix)]


def _recorded(method: str, scope: Scope) -> Recorded:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    return Recorded(method, raw_path, scope["query_string"].decode("latin-1"), headers)


class RecordingMiddleware:
    def __init__(self, app: Starlette, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # a handshake reached the API: recorded as method WEBSOCKET
            self.recorder.requests.append(_recorded("WEBSOCKET", scope))
        if scope["type"] == "http":
            self.recorder.requests.append(_recorded(scope["method"], scope))
            raw_path = self.recorder.requests[-1].raw_path
            override = self._override(raw_path)
            if override is not None:
                await override(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _override(self, raw_path: str) -> Response | None:
        if raw_path == "/auth/refresh":
            return self.recorder.refresh_answer
        if raw_path == "/auth/login":
            return self.recorder.login_answer
        return None


def create_test_upstream(*, access_ttl: float = 20.0) -> tuple[RecordingMiddleware, DemoState, Recorder]:
    demo, state = create_demo_api(access_ttl=access_ttl)
    recorder = Recorder()

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and state.verify_access_token(header[7:]) is not None

    async def echo(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "invalid_token"}, 401)
        body = await request.body()
        recorder.bodies.append(body)
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        return JSONResponse(
            {
                "method": request.method,
                "query": request.url.query,
                "headers": headers,
                "body": body.decode("latin-1"),
            },
            headers={"X-Upstream": "yes"},
        )

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return JSONResponse({"status": code, "from": "upstream"}, code)

    async def hop_headers(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.headers["Connection"] = "x-private"
        response.headers["X-Private"] = "secret-hop"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["X-End-To-End"] = "kept"
        response.set_cookie("upstream_session", "abc")
        return response

    async def cache_control(request: Request) -> Response:
        """An answer with one ``Cache-Control`` header per ``value`` in the query (none without)."""
        response = JSONResponse({"cached": "per-user"})
        for value in request.query_params.getlist("value"):
            response.raw_headers.append((b"cache-control", value.encode("latin-1")))
        return response

    async def split_connection(request: Request) -> Response:
        """Hop-by-hop headers named over several ``Connection`` headers (each one counts)."""
        response = JSONResponse({"ok": True})
        for name, value in [
            ("connection", "x-hop-a"),
            ("connection", "x-hop-b, x-hop-c"),
            ("x-hop-a", "secret-a"),
            ("x-hop-b", "secret-b"),
            ("x-hop-c", "secret-c"),
            ("x-end-to-end", "kept"),
        ]:
            response.raw_headers.append((name.encode(), value.encode()))
        return response

    async def slow(request: Request) -> Response:
        recorder.slow_entered.set()
        await recorder.release_slow.wait()
        return JSONResponse({"slow": True})

    async def upload(request: Request) -> Response:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"received": size})

    async def text(request: Request) -> Response:
        return Response(b"not json at all", media_type="text/plain")

    async def broken_stream(request: Request) -> Response:
        async def chunks() -> Any:
            yield b"x" * 100_000
            raise RuntimeError("upstream dies mid-stream")

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def endless(request: Request) -> Response:
        async def chunks() -> Any:
            try:
                while not recorder.end_endless.is_set():
                    yield b"e" * 65536
                    # uvicorn's send returns at once after a disconnect: give the loop a turn so
                    # Starlette's disconnect listener can end this generator.
                    await asyncio.sleep(0)
            finally:  # the gateway hung up on us
                recorder.endless_stopped.set()

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def events(request: Request) -> Response:
        """Server-sent events: ``count`` events (default 3), ``gap`` seconds apart (default 0); with
        ``gated``, each event after the first waits for ``release_event`` instead."""
        count = int(request.query_params.get("count", "3"))
        gap = float(request.query_params.get("gap", "0"))
        gated = "gated" in request.query_params

        async def stream() -> Any:
            for number in range(1, count + 1):
                if number > 1 and gated:
                    await recorder.release_event.wait()
                    recorder.release_event.clear()
                elif number > 1:
                    await asyncio.sleep(gap)
                yield f"id: {number}\ndata: event {number}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def socket_close(websocket: WebSocket) -> None:
        """Accept, then close with the code in the path and a reason."""
        await websocket.accept()
        await websocket.close(int(websocket.path_params["code"]), "closed by the API")

    async def reject_once(websocket: WebSocket) -> None:
        """The first handshake is refused with 401 (as an API whose key rotated would), then accepted."""
        recorder.socket_rejections += 1
        if recorder.socket_rejections == 1:
            await websocket.send_denial_response(JSONResponse({"error": "invalid_token"}, 401))
            return
        await websocket.accept()
        await websocket.send_text("accepted")
        await websocket.close()

    async def flood(websocket: WebSocket) -> None:
        """``count`` binary messages of ``size`` bytes (byte i of message n is (n + i) % 256) as fast
        as the reader takes them; ``flood_sent`` counts the bytes each ``send`` got rid of."""
        count = int(websocket.query_params.get("count", "64"))
        size = int(websocket.query_params.get("size", str(1024 * 1024)))
        pattern = bytes(range(256)) * (size // 256 + 2)
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):  # the reader may leave before the end
            for number in range(count):
                await websocket.send_bytes(pattern[number % 256 : number % 256 + size])
                recorder.flood_sent += size
            await websocket.close()

    app = Starlette(
        routes=[
            Route(
                "/echo/{path:path}",
                echo,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            ),
            Route("/status/{code:int}", status, methods=["GET", "POST"]),
            Route("/hop-headers", hop_headers),
            Route("/split-connection", split_connection),
            Route("/cache-control", cache_control, methods=["GET", "HEAD", "POST"]),
            Route("/slow", slow),
            Route("/upload", upload, methods=["POST", "PUT"]),
            Route("/text", text),
            Route("/broken-stream", broken_stream),
            Route("/endless", endless),
            Route("/events", events),
            WebSocketRoute("/ws-close/{code:int}", socket_close),
            WebSocketRoute("/flood", flood),
            WebSocketRoute("/ws-401-once", reject_once),
            Mount("/", app=demo),
        ]
    )
    return RecordingMiddleware(app, recorder), state, recorder


def create_socket_api(recorder: Recorder) -> RecordingMiddleware:
    """A Starlette WebSocket API that takes any caller (the gateway's route decides the credentials;
    the tests judge them from the recorded handshakes): ``/echo`` and ``/ticks``."""

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(await websocket.receive_text())

    async def ticks(websocket: WebSocket) -> None:
        every = float(websocket.query_params.get("every", "0.05"))
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            for count in itertools.count():
                await websocket.send_text(str(count))
                await asyncio.sleep(every)  # the API's own pace, not a synchronisation

    app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/ticks", ticks)])
    return RecordingMiddleware(app, recorder)

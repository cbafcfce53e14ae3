"""CPU µs per request of a refreshing storm, measured in process: ``python bench/refresh_cpu.py [N] [STORMS]``.

The refresh storm of ``run.py`` counts refresh calls and failures over real sockets; this one measures
what the gateway's own work costs on a request whose session changes (a refresh joined, or a grace
upgrade): ``ProxiedCall`` and ``Gateway`` with the real cookie store and sealing, an API that answers
at once in memory and a provider that answers at once. No sockets, so neither the server nor the
load generator is in the figure, and the machine's load barely moves it (it is process CPU time).

Each storm: a new session whose access cookie is gone (expired), ``N`` concurrent proxied calls with
its cookies (one refresh, the others join it), every answer carrying the new cookies. Prints the
median, lower quartile and minimum over ``STORMS`` storms. Run it from the repository's root with the
virtualenv's Python; ``PYTHONPATH=OTHER/src`` measures another checkout with the same script.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import AsyncIterator, Hashable
from http.cookies import SimpleCookie
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from bffgate.config import Settings
from bffgate.cookies import CookieJar
from bffgate.gateway import Gateway
from bffgate.proxied_call import ProxiedCall
from bffgate.session import Session
from bffgate.stores.cookie import CookieSessionStore
from bffgate.tokens import TokenSet
from bffgate.transport import RequestPayload

ANSWER_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]
_numbers = itertools.count()


class InstantProvider:
    """Rotates tokens at once (token sizes like a small JWT access token)."""

    revokes_with_access_token = False

    async def refresh(self, refresh_token: str) -> TokenSet:
        n = next(_numbers)
        return TokenSet(
            access_token=f"at-{n}-" + "a" * 600, refresh_token=f"rt-{n}-" + "r" * 40, expires_in=600
        )

    async def revoke(self, session: Session) -> None:
        return None

    async def ready(self) -> None:
        return None


class InstantAnswer:
    """``200 {}`` from the API, already complete."""

    status = 200
    raw_headers = ANSWER_HEADERS
    content_length = 2
    complete = True

    async def read(self) -> bytes:
        return b"{}"

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield b"{}"

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None


class InstantTransport:
    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: RequestPayload = None,
        *,
        content_length: int | None = None,
        partition: Hashable = None,
    ) -> InstantAnswer:
        return InstantAnswer()

    async def close(self) -> None:
        return None


async def not_proxied(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("every request here is a proxied call")


async def no_errors(request: HTTPConnection, exc: Exception) -> Response:
    raise exc


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def main(n: int, storms: int) -> None:
    values: dict[str, Any] = {
        "remote_api": "http://api.invalid/v1",
        "etls_access": "a" * 40,
        "etls_refresh": "r" * 40,
    }
    settings = Settings(**values)
    store = CookieSessionStore(settings, CookieJar(secure=True))
    gateway = Gateway(settings, store, InstantProvider(), InstantTransport())

    async def current() -> Gateway:
        return gateway

    app = ProxiedCall(not_proxied, gateway=current, on_error=no_errors)

    def expired_session_cookies() -> bytes:
        tokens = TokenSet(access_token="", refresh_token=f"rt-{next(_numbers)}-" + "r" * 40, expires_in=0)
        jar: SimpleCookie = SimpleCookie()
        for header in store.set_cookies(Session.start(tokens, {"sub": "u1", "name": "User"}), {}):
            jar.load(header)
        return "; ".join(f"{name}={m.value}" for name, m in jar.items() if m.value).encode()

    async def one(cookie: bytes, answers: list[tuple[int, int]]) -> None:
        scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": "/api/rest/proxy/items",
            "raw_path": b"/api/rest/proxy/items",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"cookie", cookie), (b"x-csrf", b"1"), (b"accept", b"application/json")],
        }

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookies = sum(1 for name, _ in message["headers"] if name == b"set-cookie")
                answers.append((message["status"], cookies))

        await app(scope, receive_nothing, send)

    per_request: list[float] = []
    for _ in range(storms):
        cookie = expired_session_cookies()
        answers: list[tuple[int, int]] = []
        started = time.process_time()
        await asyncio.gather(*(one(cookie, answers) for _ in range(n)))
        per_request.append((time.process_time() - started) / n * 1e6)
        if not all(status == 200 and cookies >= 3 for status, cookies in answers):
            raise SystemExit(f"a request was not answered 200 with the new cookies: {answers}")
    per_request.sort()
    print(
        f"refreshing storm, N={n}, {storms} storms: CPU µs/request median "
        f"{statistics.median(per_request):.1f}, p25 {per_request[len(per_request) // 4]:.1f}, "
        f"min {per_request[0]:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 50, int(sys.argv[2]) if len(sys.argv) > 2 else 200)
    )

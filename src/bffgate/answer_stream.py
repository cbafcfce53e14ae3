"""The API's answer as an ASGI response: read at once when small, else streamed with back-pressure.

Whatever happens (the browser leaves, stops reading, the API breaks off), the answer is released or
closed, so no connection to the API is ever pinned.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Receive, Scope, Send

from .transport import ApiAnswer, TransportError

log = logging.getLogger("bffgate.proxy")


class StreamedAnswer:
    """An ASGI response that streams the API's answer to the browser and always releases it."""

    SMALL_BODY = 64 * 1024  # read at once and sent in one ASGI message

    def __init__(
        self,
        upstream: ApiAnswer,
        headers: list[tuple[bytes, bytes]],
        browser_method: str,
        *,
        write_timeout: float | None = None,
    ) -> None:
        self.upstream = upstream
        self.status_code = upstream.status
        self.raw_headers = headers
        self._browser_method = browser_method
        self._write_timeout = write_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upstream = self.upstream
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if self._browser_method == "HEAD":
                upstream.release()
                await send({"type": "http.response.body", "body": b""})
                return
            length = upstream.content_length
            if (length is not None and length <= self.SMALL_BODY) or upstream.complete:
                body = await upstream.read()
                # The API's part is over: a browser that is slow to take the answer holds only its
                # own connection, never the API's.
                upstream.release()
                await send({"type": "http.response.body", "body": body})
                return
            await self._stream(receive, send)
        except TransportError as exc:
            # The status line is gone already: all we can do is cut the connection (the server
            # does, as the response is incomplete) so the browser sees a broken answer, not a
            # silently truncated one.
            log.warning("the remote API's answer broke off mid-stream (%s)", type(exc).__name__)
            upstream.close()
        finally:
            upstream.release()

    async def _stream(self, receive: Receive, send: Send) -> None:
        """A long answer, piece by piece, until its end or until the browser goes away.

        ASGI servers drop what we send after the browser has gone, so only ``receive`` tells: without
        this watch, a cancelled 1 GB download would still be pulled from the API to the last byte.
        A browser that stops reading (its window closed, the connection still open) gets each piece
        within the write timeout or is dropped, so the API's exchange is never pinned for ever.
        """
        upstream = self.upstream
        watch = asyncio.ensure_future(_until_disconnect(receive))

        def browser_left(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and not upstream.complete:
                upstream.close()  # wakes the read below with a TransportError

        watch.add_done_callback(browser_left)
        try:
            async for chunk in upstream.iter_chunks():
                async with asyncio.timeout(self._write_timeout):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except TimeoutError:
            log.info("the browser took no data for %g s; its answer was cut off", self._write_timeout)
            upstream.close()
        except TransportError:
            if not (watch.done() and not watch.cancelled()):
                raise
            log.debug("the browser went away mid-stream; the API's answer was dropped")
        finally:
            watch.cancel()


async def _until_disconnect(receive: Receive) -> None:
    # Whatever else arrives (the rest of a request body the API did not wait for) is dropped.
    while (await receive())["type"] != "http.disconnect":
        pass

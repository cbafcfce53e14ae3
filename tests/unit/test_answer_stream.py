"""``answer_stream.py``: the API's answer reaches the browser whole, in pieces or cut off, and the API's
connection is released or closed whatever happens (tests/test_streaming.py over real sockets)."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from bffgate.answer_stream import StreamedAnswer

from .memory_transport import MemoryAnswer

BIG = StreamedAnswer.SMALL_BODY + 1


async def play(answer: StreamedAnswer, *, browser_leaves: bool = False) -> list[Message]:
    sent: list[Message] = []
    gone = asyncio.Event()

    async def receive() -> Message:
        if not browser_leaves:
            await gone.wait()  # a browser that stays until the answer is over
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if browser_leaves:
            await asyncio.sleep(0)  # the disconnect is noticed between two pieces

    await answer({"type": "http", "headers": []}, receive, send)
    gone.set()
    return sent


async def test_a_small_answer_is_sent_at_once_and_released_before() -> None:
    upstream = MemoryAnswer(200, [(b"content-length", b"2")], [b"{}"])
    sent = await play(StreamedAnswer(upstream, [(b"x-a", b"1")], "GET"))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert (sent[0]["status"], sent[0]["headers"], sent[1]["body"]) == (200, [(b"x-a", b"1")], b"{}")
    assert upstream.released and not upstream.closed


class StillArriving(MemoryAnswer):
    """An answer of unknown length whose end has not arrived yet: it is streamed."""

    @property
    def complete(self) -> bool:
        return False


async def test_a_long_answer_is_streamed_piece_by_piece() -> None:
    pieces = [b"a" * BIG, b"b" * 10]
    upstream = StillArriving(200, [], pieces)
    sent = await play(StreamedAnswer(upstream, [], "GET"))
    assert [m["body"] for m in sent[1:]] == [*pieces, b""]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert upstream.released and not upstream.closed


async def test_a_browser_that_leaves_stops_the_stream_and_the_answer_is_closed() -> None:
    """A cancelled download is not pulled from the API to its last byte."""
    upstream = StillArriving(200, [], [b"a"] * 1000)
    sent = await play(StreamedAnswer(upstream, [], "GET"), browser_leaves=True)
    assert len(sent) < 1000
    assert upstream.closed


async def test_a_head_request_gets_no_body_and_the_answer_is_released() -> None:
    upstream = MemoryAnswer(200, [(b"content-length", b"5")], [b"hello"])
    sent = await play(StreamedAnswer(upstream, [], "HEAD"))
    assert sent[-1] == {"type": "http.response.body", "body": b""}
    assert upstream.released


async def test_an_answer_that_breaks_off_is_closed_not_reused() -> None:
    upstream = MemoryAnswer(200, [], [b"a" * 10, b"b"], broken_after=1)
    sent = await play(StreamedAnswer(upstream, [], "GET"))
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"a" * 10
    assert upstream.closed

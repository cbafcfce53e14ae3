"""Bodies stream through the gateway in both directions without being held in memory."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from .conftest import StackFactory
from .harness import Stack

MiB = 1024 * 1024


def expected_download(size: int) -> bytes:
    """The demo API's download content: byte i is i % 256."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@pytest.mark.slow
async def test_50_mib_download_streams_with_flat_memory(stack: Stack) -> None:
    """A 50 MiB download arrives complete while traced memory grows by only a few MiB."""
    browser = await stack.logged_in()
    size = 50 * MiB
    digest = hashlib.sha256()
    received = 0
    cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        async with stack.http.get(
            f"{stack.gateway_url}/api/rest/proxy/download?size={size}",
            headers={"X-CSRF": "1", "Cookie": cookies},
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(size)
            async for chunk in response.content.iter_chunked(256 * 1024):
                received += len(chunk)
                digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(expected_download(size)).hexdigest()
    assert peak - baseline < 8 * MiB, f"memory grew by {(peak - baseline) / MiB:.1f} MiB"


@pytest.mark.slow
async def test_large_upload_streams_to_the_api(make_stack: StackFactory) -> None:
    """A 20 MiB upload (over the replay buffer) reaches the API whole, without being buffered."""
    async with make_stack(bff_max_body_bytes=64 * MiB, bff_replay_bytes=MiB) as stack:
        browser = await stack.logged_in()
        size = 20 * MiB

        async def body() -> AsyncIterator[bytes]:
            block = b"u" * (256 * 1024)
            for _ in range(size // len(block)):
                yield block

        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            answer = await browser.request("POST", "/api/rest/proxy/upload", data=body())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert answer.status == 200
        assert answer.json() == {"received": size}
        assert peak - baseline < 8 * MiB, f"memory grew by {(peak - baseline) / MiB:.1f} MiB"


async def test_a_browser_that_leaves_mid_download_stops_the_api_download(stack: Stack) -> None:
    """Closing an endless download in the browser makes the gateway hang up on the API too."""
    browser = await stack.logged_in()
    cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    async with stack.http.get(
        f"{stack.gateway_url}/api/rest/proxy/endless", headers={"X-CSRF": "1", "Cookie": cookies}
    ) as response:
        assert response.status == 200
        assert len(await response.content.readexactly(256 * 1024)) == 256 * 1024
        response.close()  # the browser's tab goes away: its connection closes
    # Without the gateway noticing, it would pull from the API for ever; the guard only stops a hang.
    try:
        await asyncio.wait_for(stack.recorder.endless_stopped.wait(), timeout=10)
    finally:
        stack.recorder.end_endless.set()  # should the gateway still be pulling, let it finish
    # And the gateway still serves this session's next request.
    assert (await browser.request("GET", "/api/rest/proxy/items")).status == 200


async def test_small_bodies_and_content_length_pass_through(stack: Stack) -> None:
    """A body within the replay buffer is forwarded with its length and arrives byte for byte."""
    browser = await stack.logged_in()
    answer = await browser.request(
        "PUT",
        "/api/rest/proxy/echo/thing?x=1&y=%20z",
        data=b"\x00\x01binary\xff",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert answer.status == 200
    echoed = answer.json()
    assert echoed["method"] == "PUT"
    assert echoed["query"] == "x=1&y=%20z"
    assert echoed["body"] == b"\x00\x01binary\xff".decode("latin-1")
    assert echoed["headers"]["content-type"] == "application/octet-stream"
    assert echoed["headers"]["content-length"] == "9"


async def test_head_and_204_answers_have_no_body(stack: Stack) -> None:
    """HEAD requests and 204 answers pass through without a body."""
    browser = await stack.logged_in()
    head = await browser.request("HEAD", "/api/rest/proxy/download?size=1000")
    assert head.status == 200
    assert head.body == b""
    no_content = await browser.request("GET", "/api/rest/proxy/status/204")
    assert no_content.status == 204
    assert no_content.body == b""

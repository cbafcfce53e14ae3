"""``server.py``: the server's own 431 is a problem answer like the app's (tests/test_server.py drives
the protocol over real sockets)."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from bffgate.server import head_refusal


def counted(code: str) -> float:
    return REGISTRY.get_sample_value("bffgate_problems_total", {"code": code}) or 0.0


def test_the_431_is_rendered_and_counted_by_error_answer_not_stored_and_closes() -> None:
    before = counted("headers_too_large")
    head, _, body = head_refusal(8192).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    fields = dict(line.split(b": ", 1) for line in lines[1:])
    assert fields[b"content-type"] == b"application/problem+json"
    assert fields[b"cache-control"] == b"no-store"
    assert fields[b"connection"] == b"close"
    assert int(fields[b"content-length"]) == len(body)
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (431, "headers_too_large")
    assert "8192" in problem["detail"]
    assert counted("headers_too_large") == before + 1

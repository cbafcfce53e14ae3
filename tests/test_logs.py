"""Structured logs of a real `bffgate serve` (issue 16, item 1): BFF_LOG_FORMAT=json writes one JSON
object a line, one ``request`` line per request with what an operator needs, events for logins and
refreshes, and an X-Request-ID that the browser and the API both see; at DEBUG, across logins,
refreshes, errors and hostile input, no line holds a token, a cookie value, a password or a ``code``."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from starlette.responses import JSONResponse

from bffgate.header_filter import forwardable_request_headers
from bffgate.logs import JsonFormatter, TextFormatter, fields, fingerprint, logging_config

from .conftest import StackFactory
from .harness import CREDENTIALS, Browser, serve
from .processes import gateway_process
from .upstream import create_test_upstream

WRONG_PASSWORD = "Wrong-Pw-7d1e0c9b"
SECOND_FACTOR = "Otp-Secret-55aa91"
CODE = "Code-Secret-0b3f2e"
HOSTILE_COOKIE = "Hostile-Cookie-e81c4d7a"


def parse(log: list[bytes]) -> list[dict[str, Any]]:
    """Every line, as JSON (the test fails on any line that is not)."""
    return [json.loads(line) for line in log if line.strip()]


async def test_json_logs_of_a_real_serve_hold_no_secret_and_one_line_per_request(
    http: aiohttp.ClientSession,
) -> None:
    upstream, state, recorder = create_test_upstream()
    env = {"BFF_LOG_FORMAT": "json", "BFF_LOG_LEVEL": "DEBUG"}
    cookie_values: set[str] = set()
    async with (
        serve(upstream, lifespan="off") as api_url,
        gateway_process(api_url, env, args=["--access-log"], capture_log=True) as gateway,
    ):
        browser = Browser(http, gateway.url)
        refused = await browser.request(
            "POST", "/api/auth/login", json_body={"username": "demo", "password": WRONG_PASSWORD}
        )
        assert refused.status == 401
        await browser.request("POST", "/api/auth/login", json_body={**CREDENTIALS, "otp": SECOND_FACTOR})
        cookie_values |= set(browser.cookies.values())
        # A browser-sent id is not trusted by default: the gateway makes its own.
        proxied = await browser.request(
            "GET", "/api/rest/proxy/echo/items?token=x", headers={"X-Request-ID": "forged-id"}
        )
        assert proxied.status == 200
        request_id = proxied.headers["X-Request-ID"]
        assert request_id != "forged-id"
        assert recorder.to("/echo/items")[-1].headers["x-request-id"] == request_id
        refreshed = await browser.request("POST", "/api/rest/refreshresttokens")
        assert refreshed.status == 200
        cookie_values |= set(browser.cookies.values())
        assert (await browser.request("GET", "/api/rest/proxy/echo/again")).status == 200
        # Errors and hostile input.
        hostile = Browser(http, gateway.url, {name: HOSTILE_COOKIE for name in browser.cookies})
        assert (await hostile.request("GET", "/api/rest/proxy/echo/x")).status == 401
        assert (await browser.request("GET", f"/api/auth/callback?code={CODE}&state=s")).status == 404
        assert (await browser.request("GET", "/api/rest/proxy/%0d%0aforged: line")).status == 400
        await browser.request("POST", "/api/auth/login", csrf=False, json_body=CREDENTIALS)
        # A refresh the provider rejects ends the session.
        recorder.refresh_answer = JSONResponse({"error": "invalid_grant"}, 401)
        rejected = await browser.request("POST", "/api/rest/refreshresttokens")
        assert rejected.status == 401
        await browser.login()
        cookie_values |= set(browser.cookies.values())
        assert (await browser.request("POST", "/api/auth/logout")).status == 200
    lines = parse(gateway.log)
    text = b"".join(gateway.log).decode()

    tokens = {r.headers["authorization"][7:] for r in recorder.requests if "authorization" in r.headers}
    tokens |= set(state._refresh_owner)  # every refresh token the API issued
    secrets = tokens | {v for v in cookie_values if len(v) >= 16}
    secrets |= {WRONG_PASSWORD, SECOND_FACTOR, CODE, HOSTILE_COOKIE}
    assert len(tokens) >= 4  # two access and two refresh tokens at least: the check has teeth
    assert any(line["level"] == "DEBUG" for line in lines)
    for secret in secrets:
        assert secret not in text

    requests = [line for line in lines if line["message"] == "request"]
    proxied_line = next(line for line in requests if line.get("request_id") == request_id)
    assert proxied_line["route"] == "proxy"
    assert proxied_line["method"] == "GET"
    assert proxied_line["path"] == "/api/rest/proxy/echo/items"  # without the query
    assert proxied_line["status"] == 200
    assert proxied_line["upstream_status"] == 200
    assert isinstance(proxied_line["duration_ms"], float)
    assert isinstance(proxied_line["upstream_ms"], float)
    assert len(proxied_line["session"]) == 12 and len(proxied_line["user"]) == 16

    events = [line.get("event") for line in lines]
    assert {"login", "refresh", "refresh_rejected", "logout"} <= set(events)
    refresh_request = next(line for line in requests if line["route"] == "refresh" and line["status"] == 200)
    assert refresh_request["refresh"] == "ok"
    assert refresh_request["session"] == proxied_line["session"]


async def test_a_trusted_front_proxy_request_id_is_kept_and_a_malformed_one_replaced(
    http: aiohttp.ClientSession,
) -> None:
    """BFF_TRUST_REQUEST_ID=true: the front proxy's id goes to the API and back; a value that could
    forge log lines (or is too long) is replaced by a fresh one."""
    upstream, _, recorder = create_test_upstream()
    async with (
        serve(upstream, lifespan="off") as api_url,
        gateway_process(api_url, {"BFF_TRUST_REQUEST_ID": "true"}) as gateway,
    ):
        browser = Browser(http, gateway.url)
        await browser.login()
        kept = await browser.request("GET", "/api/rest/proxy/echo/a", headers={"X-Request-ID": "edge-42.a"})
        replaced = await browser.request("GET", "/api/rest/proxy/echo/b", headers={"X-Request-ID": "x" * 200})
    assert kept.headers["X-Request-ID"] == "edge-42.a"
    assert recorder.to("/echo/a")[-1].headers["x-request-id"] == "edge-42.a"
    assert replaced.headers["X-Request-ID"] not in ("x" * 200, "")
    assert recorder.to("/echo/b")[-1].headers["x-request-id"] == replaced.headers["X-Request-ID"]


async def test_customfetch_sends_the_request_id_and_never_the_envelopes_own(make_stack: StackFactory) -> None:
    """customfetch: the API receives the gateway's X-Request-ID, the one the browser gets back; one
    written into the envelope's headers (or the browser's) is not passed on."""
    async with make_stack() as stack:
        browser = stack.browser()
        await browser.login()
        envelope = {"url": "/echo/cf", "options": {"headers": {"X-Request-ID": "from-the-page"}}}
        answer = await browser.request(
            "POST", "/api/rest/customfetch", json_body=envelope, headers={"X-Request-ID": "from-the-browser"}
        )
    assert answer.status == 200
    received = stack.recorder.to("/echo/cf")[-1].headers["x-request-id"]
    assert received == answer.headers["X-Request-ID"]
    assert received not in ("from-the-page", "from-the-browser")
    # Not passed on at all (the recorder keeps one value per name): the filter drops any.
    assert forwardable_request_headers([(b"x-request-id", b"from-the-page"), (b"accept", b"*/*")]) == [
        ("accept", "*/*")
    ]


def test_text_format_keeps_hostile_values_on_one_line() -> None:
    """BFF_LOG_FORMAT=text (the default): fields follow as key=value, and a value with a line break
    or a space is quoted, so a request path cannot forge a second log line."""
    record = logging.LogRecord("bffgate.request", logging.INFO, __file__, 1, "request", None, None)
    record.__dict__.update(fields(path="/a\nforged INFO line", status=200))
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith('path="/a\\nforged INFO line" status=200')
    as_json = json.loads(JsonFormatter().format(record))
    assert (as_json["path"], as_json["level"]) == ("/a\nforged INFO line", "INFO")


def test_session_fingerprints_are_stable_and_not_the_session_id() -> None:
    sid = "a" * 43
    assert fingerprint(sid) == fingerprint(sid) != fingerprint("b" * 43)
    assert fingerprint(sid) not in sid


def test_the_line_per_request_is_json_only_unless_text_asks_for_debug() -> None:
    """Text (a terminal, the default) keeps the request path as cheap and quiet as before structured
    logs: its per-request line appears only at DEBUG; JSON writes it at INFO."""
    level = {
        (fmt, lvl): logging_config(fmt, lvl)["loggers"]["bffgate.request"]["level"]
        for fmt in ("text", "json")
        for lvl in ("DEBUG", "INFO", "WARNING")
    }
    assert level[("json", "INFO")] == "INFO"
    assert level[("text", "INFO")] == "WARNING"
    assert level[("text", "DEBUG")] == "DEBUG"
    assert level[("json", "WARNING")] == "WARNING"

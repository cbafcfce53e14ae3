"""The seed's envelope, ``POST /api/rest/customfetch {"url": "/path?q=1", "options": {...}}``.

Everything the browser chooses is validated: ``url`` must be a relative path under REMOTE_API,
``method`` one of the ordinary verbs, ``headers`` plain strings that pass the same filter as proxied
headers, and ``body`` a string or a JSON value. A missing ``options`` means a plain GET.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from yarl import URL

from .api_url import ApiUrls
from .errors import InvalidRequest, PayloadTooLarge
from .header_filter import forwardable_request_headers
from .request_body import RequestBody, refuse_body_on

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no CR, LF or other control characters


@dataclass(frozen=True, slots=True)
class ApiCall:
    """The call to the API, whichever way the browser asked for it (a proxy path or an envelope)."""

    method: str
    url: URL
    headers: list[tuple[str, str]]
    body: RequestBody


def parse_envelope(envelope: Any, api: ApiUrls, *, max_body_bytes: int) -> ApiCall:
    """The upstream call the envelope asks for; ``InvalidRequest`` / ``InvalidUrl`` when it is wrong."""
    if not isinstance(envelope, dict):
        raise InvalidRequest('the body must be a JSON object like {"url": "/path", "options": {}}')
    url = envelope.get("url")
    if not isinstance(url, str):
        raise InvalidRequest('"url" must be a string')
    options = envelope.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidRequest('"options" must be an object')
    method = options.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidRequest(f'"options.method" must be one of {", ".join(sorted(METHODS))}')
    headers = _headers(options.get("headers"))
    body, content_type = _body(options.get("body"))
    if body is not None:
        refuse_body_on(method.upper())
    if body is not None and len(body) > max_body_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_body_bytes} bytes")
    if content_type and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", content_type))
    return ApiCall(method.upper(), api.join_relative_url(url), headers, RequestBody(data=body))


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidRequest('"options.headers" must be an object of strings')
    raw: list[tuple[bytes, bytes]] = []
    for name, header_value in value.items():
        if (
            not isinstance(header_value, str)
            or not _TOKEN.fullmatch(name)
            or not _FIELD_VALUE.fullmatch(header_value)
        ):
            raise InvalidRequest(f"header {name[:40]!r} is not a valid HTTP header")
        raw.append((name.lower().encode("latin-1"), header_value.encode("latin-1", errors="replace")))
    return forwardable_request_headers(raw)


def _body(value: Any) -> tuple[bytes | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value.encode(), None
    try:
        return json.dumps(value).encode(), "application/json"
    except (ValueError, RecursionError):  # e.g. a huge nesting depth
        raise InvalidRequest('"options.body" cannot be sent as JSON') from None

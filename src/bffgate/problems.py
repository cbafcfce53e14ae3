"""RFC 9457 problem answers: the only place where errors become HTTP responses."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from starlette.responses import Response

from .errors import BffError, LoginFailed

PROBLEM_TYPE = "application/problem+json"


def problem_response(error: BffError, headers: Mapping[str, str] | None = None) -> Response:
    """Render ``error`` as ``application/problem+json`` with its stable ``code``."""
    if isinstance(error, LoginFailed):
        return _login_failed_response(error, headers)
    body = {
        "type": f"https://bffgate.dev/problems/{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    extra = error.answer_headers()
    if extra:
        headers = {**extra, **(headers or {})}
    return Response(json.dumps(body), status_code=error.status, headers=headers, media_type=PROBLEM_TYPE)


def _login_failed_response(error: LoginFailed, headers: Mapping[str, str] | None) -> Response:
    """Pass the upstream's refusal (status and JSON) through; it is the API's own message to its user."""
    return Response(
        json.dumps(error.body),
        status_code=error.upstream_status,
        headers=headers,
        media_type="application/json",
    )


def problem_page(error: BffError, headers: Mapping[str, str] | None = None) -> Response:
    """``error`` as a small HTML page, for page navigations (a failed OpenID Connect callback)."""
    title, detail = html.escape(error.title), html.escape(error.detail)
    body = (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><h1>{title}</h1><p>{detail}</p>"
        f'<p><code>{html.escape(error.code)}</code> · <a href="/">Back to the start page</a></p></html>'
    )
    return Response(body, status_code=error.status, headers=headers, media_type="text/html; charset=utf-8")

"""RFC 9457 problem answers: the only place where errors become HTTP responses.

``error_answer`` is the one function every path uses (endpoints, the proxied call, operations): it
counts the problem, renders it as problem JSON, as an HTML page (page navigations) or as a redirect
to the login page, and adds the cookies the answer must carry with the ``no-store`` that goes with
them (``session_cookie_headers``, shared with the proxied answers).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

from starlette.responses import RedirectResponse, Response

from .errors import BffError
from .metrics import PROBLEMS

PROBLEM_TYPE = "application/problem+json"
NO_STORE = {"Cache-Control": "no-store"}


def error_answer(
    error: BffError,
    *,
    page: bool = False,
    redirect_to: str | None = None,
    headers: Mapping[str, str] | None = None,
    set_cookies: Sequence[str] = (),
) -> Response:
    """The answer for ``error``, counted: a 302 to ``redirect_to``, an HTML page, or problem JSON."""
    PROBLEMS.labels(error.code).inc()
    if redirect_to is not None:
        response: Response = RedirectResponse(redirect_to, 302, headers=headers)
    elif page:
        response = problem_page(error, headers)
    else:
        response = problem_response(error, headers)
    return with_cookies(response, set_cookies)


def session_cookie_headers(set_cookies: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """Set-Cookie headers, with the ``no-store`` that must go with them: no cache keeps a session."""
    if not set_cookies:
        return []
    return [(b"cache-control", b"no-store"), *((b"set-cookie", c.encode("latin-1")) for c in set_cookies)]


def with_cookies(response: Response, set_cookies: Sequence[str]) -> Response:
    """``response`` with ``session_cookie_headers`` (its own Cache-Control replaced by them)."""
    if set_cookies:
        kept = [(name, value) for name, value in response.raw_headers if name != b"cache-control"]
        response.raw_headers[:] = kept + session_cookie_headers(set_cookies)
    return response


def problem_response(error: BffError, headers: Mapping[str, str] | None = None) -> Response:
    """Render ``error`` as ``application/problem+json`` with its stable ``code``."""
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


def refusal_answer(code: str, status: int, body: object) -> Response:
    """An API's own refusal (status and JSON) passed through, counted under ``code``: it is the API's
    message to its user, not a problem of ours."""
    PROBLEMS.labels(code).inc()
    return Response(json.dumps(body), status_code=status, media_type="application/json")


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

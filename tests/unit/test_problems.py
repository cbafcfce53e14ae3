"""``problems.py``: the one function errors become answers through."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from bffgate.errors import CsrfFailed, TooManyAttempts
from bffgate.problems import error_answer, refusal_answer


def counted(code: str) -> float:
    return REGISTRY.get_sample_value("bffgate_problems_total", {"code": code}) or 0.0


def test_a_problem_is_counted_and_rendered_as_problem_json() -> None:
    before = counted("csrf_failed")
    answer = error_answer(CsrfFailed())
    assert counted("csrf_failed") == before + 1
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert json.loads(bytes(answer.body))["code"] == "csrf_failed"


def test_cookies_on_a_problem_replace_its_cache_control_with_no_store() -> None:
    answer = error_answer(CsrfFailed(), headers={"Cache-Control": "max-age=60"}, set_cookies=["a=1", "b=2"])
    assert answer.headers.getlist("cache-control") == ["no-store"]
    assert answer.headers.getlist("set-cookie") == ["a=1", "b=2"]


def test_a_page_navigation_gets_a_page_or_a_redirect() -> None:
    page = error_answer(CsrfFailed(), page=True)
    assert page.headers["content-type"].startswith("text/html")
    redirect = error_answer(CsrfFailed(), redirect_to="/login?returnTo=%2F")
    assert (redirect.status_code, redirect.headers["location"]) == (302, "/login?returnTo=%2F")


def test_an_errors_own_headers_come_with_it() -> None:
    assert error_answer(TooManyAttempts(7)).headers["retry-after"] == "7"


def test_an_apis_login_refusal_passes_through_under_its_own_code() -> None:
    before = counted("login_refused")
    answer = refusal_answer("login_refused", 401, {"detail": "No active account"})
    assert counted("login_refused") == before + 1
    assert (answer.status_code, json.loads(bytes(answer.body))) == (401, {"detail": "No active account"})

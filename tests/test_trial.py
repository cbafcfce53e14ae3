"""`bffgate check --login`'s reading of login answers (the trial against real frameworks is in
tests/interop/test_check_login.py): advice names the setting, and no token ever shows."""

from __future__ import annotations

from bffgate.providers.http import create_http_client
from bffgate.trial import TrialReport, trial_login

from .harness import CREDENTIALS, settings_for
from .wire import WireAnswer, WireRequest, wire_api

ACCESS, REFRESH = "access-token-value-1", "refresh-token-value-1"


async def trial(answer: WireAnswer, **overrides: object) -> TrialReport:
    async with wire_api(lambda request: answer) as api, create_http_client(connect_timeout=5) as http:
        return await trial_login(settings_for(api.url, **overrides), http, CREDENTIALS)


def printed(report: TrialReport) -> str:
    return "\n".join(report.ok + report.advice + report.problems)


async def test_a_refresh_cookie_is_recognised_and_no_token_is_shown() -> None:
    """The API keeps the refresh token in its own cookie: the advice says how to configure that."""
    answer = WireAnswer(
        200, {"accessToken": ACCESS, "expiresIn": 300}, [("Set-Cookie", f"refresh_token={REFRESH}; HttpOnly")]
    )
    report = await trial(answer)
    assert not report.fits
    assert report.problems == [
        "BFF_REFRESH_TOKEN_IN: the refresh token comes as the API's cookie `refresh_token`; "
        "set BFF_REFRESH_TOKEN_IN=cookie and BFF_REFRESH_COOKIE_NAME=refresh_token"
    ]
    assert ACCESS not in printed(report) and REFRESH not in printed(report)


async def test_a_415_asks_for_the_other_body_type() -> None:
    report = await trial(WireAnswer(415, {"detail": 'Unsupported media type "" in request.'}))
    assert report.problems == [
        "BFF_LOGIN_BODY: the login endpoint refuses a json body (415); set BFF_LOGIN_BODY=form"
    ]


async def test_an_absolute_expiry_is_recognised() -> None:
    """An epoch-seconds expiry next to opaque tokens: the advice is BFF_EXPIRES_AT_FIELD."""
    body = {"accessToken": ACCESS, "refreshToken": REFRESH, "expires_at": 1_900_000_000}
    answers = iter([WireAnswer(200, body), WireAnswer(200, body)])

    def handler(request: WireRequest) -> WireAnswer:
        return next(answers)

    async with wire_api(handler) as api, create_http_client(connect_timeout=5) as http:
        report = await trial_login(settings_for(api.url), http, CREDENTIALS)
    assert report.fits
    assert "`expires_at` looks like an absolute expiry: set BFF_EXPIRES_AT_FIELD=expires_at" in report.advice
    assert ACCESS not in printed(report) and REFRESH not in printed(report)

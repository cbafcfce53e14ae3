"""``bffgate check --login USER``: a trial login and one refresh against the configured API.

It reports what the API answered, field names and types only, and which settings fit it ("the answer
has `access` and `refresh`; set BFF_ACCESS_TOKEN_FIELD=access"). No token, password or error text
of the API is ever printed: only statuses, field names, cookie names and redirect targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp

from .config import Settings
from .errors import BffError, RefreshFailed, RefreshRejected
from .providers.rest import RestProvider
from .session import Session
from .tokens import lifetime_from_jwt

ABSOLUTE_EXPIRY_AFTER = 1_000_000_000  # an expiry number this large is a time (epoch seconds), not a lifetime
MAX_DEPTH = 4


@dataclass
class TrialReport:
    """Lines for the user: ``ok`` lines (what works) and ``problems`` (each with its fix)."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # settings worth setting although nothing failed

    @property
    def fits(self) -> bool:
        return not self.problems


async def trial_login(
    settings: Settings, http: aiohttp.ClientSession, credentials: dict[str, str]
) -> TrialReport:
    """Log in with ``credentials``, read the answer as the settings say, refresh once, log out."""
    report = TrialReport()
    provider = RestProvider(settings, http)
    try:
        answer = await provider.login_answer(credentials)
    except BffError as exc:
        report.problems.append(f"BFF_LOGIN_URL: {exc.detail}")
        return report
    if not answer.ok:
        report.problems.append(_login_status_problem(settings, answer.status, answer.location))
        return report
    _read_login_answer(settings, answer.body, answer.cookies, report)
    if not report.fits:
        return report
    tokens = provider.parse_tokens(answer.body, answer.cookies)
    if tokens.refresh_token is None:
        return report  # reported by _read_login_answer: without a refresh token there is nothing to try
    try:
        refreshed = await provider.refresh(tokens.refresh_token)
    except (RefreshRejected, RefreshFailed) as exc:
        report.problems.append(_refresh_problem(settings, str(exc)))
        return report
    report.ok.append(f"refresh: {settings.refresh_url} gave a new access token")
    session = Session.start(tokens, {}).with_tokens(refreshed)
    await _try_logout(provider, settings, session, report)
    return report


def _login_status_problem(settings: Settings, status: int, location: str | None) -> str:
    url = settings.login_url
    if status in (301, 302, 303, 307, 308) and location:
        target = urljoin(url, location)
        return f"BFF_LOGIN_URL: {url} redirects ({status}) to {target}; set BFF_LOGIN_URL={target}"
    if status == 415:
        other = "form" if settings.bff_login_body == "json" else "json"
        return (
            f"BFF_LOGIN_BODY: the login endpoint refuses a {settings.bff_login_body} body (415); "
            f"set BFF_LOGIN_BODY={other}"
        )
    if status in (400, 422) and settings.bff_login_body == "json":
        return (
            f"BFF_LOGIN_BODY: the login endpoint refused the JSON credentials ({status}); if it takes a form "
            "(e.g. FastAPI's OAuth2PasswordRequestForm) set BFF_LOGIN_BODY=form, else check the field "
            "names (--user-field)"
        )
    if status in (401, 403, 400, 422):
        return f"login: refused ({status}): check the password and the credential field names (--user-field)"
    if status in (404, 405):
        return f"BFF_LOGIN_URL: {url} answered {status}; check the path (Django's URLs end with a slash)"
    return f"BFF_LOGIN_URL: {url} answered {status}"


def _read_login_answer(settings: Settings, body: Any, cookies: Any, report: TrialReport) -> None:
    if not isinstance(body, dict):
        report.problems.append("login: the answer is not a JSON object; BFF_PROVIDER=rest needs one")
        return
    leaves = dict(_leaves(body))
    described = ", ".join(f"`{path}` ({_kind(value)})" for path, value in leaves.items()) or "no fields"
    cookie_names = sorted(cookies)
    report.ok.append(
        f"login: {settings.login_url} answered with {described}"
        + (f" and cookies {', '.join(cookie_names)}" if cookie_names else "")
    )
    access = _check_access(settings, leaves, report)
    _check_refresh(settings, leaves, cookie_names, report)
    _check_expiry(settings, leaves, access, report)


def _check_access(settings: Settings, leaves: dict[str, Any], report: TrialReport) -> str | None:
    """The access token (where the settings say, else where it seems to be), for the expiry check."""
    configured = settings.bff_access_token_field
    if _is_token(leaves.get(configured)):
        report.ok.append(f"BFF_ACCESS_TOKEN_FIELD={configured} finds the access token")
        return str(leaves[configured])
    found = _named(leaves, ("access",)) or _named(leaves, ("token", "jwt"))
    if found:
        report.problems.append(
            f"BFF_ACCESS_TOKEN_FIELD: the answer has no `{configured}`; set BFF_ACCESS_TOKEN_FIELD={found[0]}"
        )
        return str(leaves[found[0]])
    report.problems.append(
        f"BFF_ACCESS_TOKEN_FIELD: no access token in the answer (looked for `{configured}`); "
        "set it to the field (dotted path) that holds it"
    )
    return None


def _check_refresh(
    settings: Settings, leaves: dict[str, Any], cookies: list[str], report: TrialReport
) -> None:
    if settings.bff_refresh_token_in == "cookie":
        name = settings.bff_refresh_cookie_name
        if name in cookies:
            report.ok.append(f"BFF_REFRESH_COOKIE_NAME={name}: the API sets it on login")
        else:
            report.problems.append(
                f"BFF_REFRESH_COOKIE_NAME: the login answer sets no cookie `{name}`"
                + (f" (it sets {', '.join(cookies)})" if cookies else " (it sets none)")
            )
        return
    configured = settings.bff_refresh_token_field
    if _is_token(leaves.get(configured)):
        report.ok.append(f"BFF_REFRESH_TOKEN_FIELD={configured} finds the refresh token")
        return
    found = _named(leaves, ("refresh",))
    cookie = next((c for c in cookies if "refresh" in c.lower()), None)
    if found:
        report.problems.append(
            f"BFF_REFRESH_TOKEN_FIELD: the answer has no `{configured}`; set BFF_REFRESH_TOKEN_FIELD={found[0]}"
        )
    elif cookie:
        report.problems.append(
            f"BFF_REFRESH_TOKEN_IN: the refresh token comes as the API's cookie `{cookie}`; "
            f"set BFF_REFRESH_TOKEN_IN=cookie and BFF_REFRESH_COOKIE_NAME={cookie}"
        )
    else:
        report.advice.append(
            f"no refresh token in the answer (looked for `{configured}`): each session will end when its "
            "access token expires"
        )


def _check_expiry(
    settings: Settings, leaves: dict[str, Any], access: str | None, report: TrialReport
) -> None:
    numbers = {path: value for path, value in leaves.items() if _kind(value) == "number"}
    expiring = {path: value for path, value in numbers.items() if "exp" in path.rsplit(".", 1)[-1].lower()}
    if settings.bff_expires_at_field:
        if settings.bff_expires_at_field in numbers:
            report.ok.append(f"BFF_EXPIRES_AT_FIELD={settings.bff_expires_at_field} gives the expiry")
        else:
            report.problems.append(
                f"BFF_EXPIRES_AT_FIELD: the answer has no number `{settings.bff_expires_at_field}`"
            )
        return
    if settings.bff_expires_in_field in numbers:
        report.ok.append(f"BFF_EXPIRES_IN_FIELD={settings.bff_expires_in_field} gives the lifetime")
        return
    for path, value in expiring.items():
        if value > ABSOLUTE_EXPIRY_AFTER:
            report.advice.append(f"`{path}` looks like an absolute expiry: set BFF_EXPIRES_AT_FIELD={path}")
        else:
            report.advice.append(
                f"`{path}` looks like a lifetime in seconds: set BFF_EXPIRES_IN_FIELD={path}"
            )
    if expiring:
        return
    if access is not None and lifetime_from_jwt(access) is not None:
        report.ok.append("expiry: read from the access token's `exp` claim (a JWT)")
    else:
        report.advice.append(
            "no expiry in the answer and the access token is not a JWT: 15 minutes are assumed"
        )


def _refresh_problem(settings: Settings, detail: str) -> str:
    where = settings.bff_refresh_token_in
    sent = (
        f"field `{settings.refresh_request_field}` of a {'JSON body' if where == 'body' else 'form'}"
        if where in ("body", "form")
        else {"header": "Authorization: Bearer", "cookie": f"cookie {settings.bff_refresh_cookie_name}"}[
            where
        ]
    )
    return (
        f"BFF_REFRESH_TOKEN_IN: {detail} (the refresh token was sent as {sent}); check BFF_REFRESH_URL, "
        "BFF_REFRESH_TOKEN_IN (body, form, header or cookie) and BFF_REFRESH_REQUEST_FIELD"
    )


async def _try_logout(
    provider: RestProvider, settings: Settings, session: Session, report: TrialReport
) -> None:
    """End the trial's session at the API (its refresh token would otherwise stay valid)."""
    try:
        answer = await provider.logout_answer(session)
    except BffError as exc:
        report.problems.append(f"BFF_LOGOUT_URL: {exc.detail}")
        return
    if answer is None:
        return
    if answer.ok:
        report.ok.append(f"logout: {settings.logout_url} answered {answer.status}")
    else:
        report.problems.append(
            f"BFF_LOGOUT_URL: {settings.logout_url} answered {answer.status}; check the URL, "
            "BFF_LOGOUT_METHOD and BFF_REFRESH_TOKEN_IN"
        )


def _leaves(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """(dotted path, value) of every non-object value of a JSON answer, a few levels deep."""
    if not isinstance(value, dict) or depth > MAX_DEPTH:
        return [(prefix, value)] if prefix else []
    found = []
    for key, child in value.items():
        found += _leaves(child, f"{prefix}.{key}" if prefix else str(key), depth + 1)
    return found


def _named(leaves: dict[str, Any], words: tuple[str, ...]) -> list[str]:
    """Paths of token-like strings whose last segment contains one of ``words``."""
    return [
        path
        for path, value in leaves.items()
        if _is_token(value) and any(word in path.rsplit(".", 1)[-1].lower() for word in words)
    ]


def _is_token(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= 8


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null" if value is None else "list"

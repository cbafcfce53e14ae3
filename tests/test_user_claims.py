"""The user object given to JavaScript is an allow-list of claims (security requirement 23), with a
login endpoint that answers tokens and provider internals among the user's fields."""

from __future__ import annotations

import pytest
from starlette.responses import JSONResponse

from bffgate.demo.api import DemoState

from .conftest import StackFactory

HOSTILE_USER = {
    "sub": "u-1",
    "name": "Demo User",
    "email": "demo@example.test",
    "session_state": "provider-internal",
    "_claim_names": {"credit": "src1"},
    "_claim_sources": {"src1": {"endpoint": "https://claims.example", "access_token": "distributed-secret"}},
    "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
    "upstreamAccessToken": "another-secret",
    "internal_flags": {"admin_override": True},
}


def hostile_login(api: DemoState) -> JSONResponse:
    """The demo API's own tokens, with a ``user`` object carrying everything the page must not see."""
    grant = api.login("demo")
    return JSONResponse({**grant.to_json(), "user": HOSTILE_USER})


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, {"sub": "u-1", "name": "Demo User", "email": "demo@example.test"}),
        (
            "sub,internal_flags,_claim_sources,session_state,id_token",
            {"sub": "u-1", "internal_flags": {"admin_override": True}},
        ),
    ],
    ids=["default", "configured"],
)
async def test_user_object_is_the_allow_list(
    make_stack: StackFactory, setting: str | None, expected: dict[str, object]
) -> None:
    """The login answer and /api/auth/user give the allow-listed claims only (BFF_USER_CLAIMS or the
    default); tokens, _claim_sources/_claim_names and session_state never, even when listed."""
    async with make_stack(bff_user_claims=setting) as stack:
        stack.recorder.login_answer = hostile_login(stack.api)
        browser = stack.browser()
        login = await browser.login()
        user = await browser.request("GET", "/api/auth/user")
    assert login.json()["user"] == expected
    assert user.json()["user"] == expected
    assert user.headers["Cache-Control"] == "no-store"
    for secret in (b"distributed-secret", b"another-secret", b"provider-internal", b"eyJhbGciOiJSUzI1NiJ9"):
        assert secret not in login.body
        assert secret not in user.body

"""``tokens.py``: what the page may see of the user, and whether a refreshed ID token is the same user."""

from __future__ import annotations

import base64
import json
from typing import Any

from bffgate.tokens import identity_of, same_user, visible_claims


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_the_page_never_sees_tokens_or_hidden_claims_even_when_allowed() -> None:
    user = {
        "sub": "u1",
        "name": "A",
        "id_token": "x",
        "accessToken": "y",
        "_internal": 1,
        "session_state": "s",
    }
    allowed = ("sub", "name", "id_token", "accessToken", "_internal", "session_state")
    assert visible_claims(user, allowed) == {"sub": "u1", "name": "A"}


def test_identity_is_iss_sub_aud_and_sid() -> None:
    token = unsigned_jwt({"iss": "https://op", "sub": "u1", "aud": "app", "sid": "s", "email": "e"})
    assert identity_of(token) == {"iss": "https://op", "sub": "u1", "aud": "app", "sid": "s"}
    assert identity_of(unsigned_jwt({"sub": "u1"})) is None  # no issuer: no identity


def test_same_user_ignores_sid_and_the_shape_of_aud() -> None:
    login = {"iss": "https://op", "sub": "u1", "aud": "app", "sid": "s1"}
    assert same_user(login, {"iss": "https://op", "sub": "u1", "aud": ["app"]})
    assert not same_user(login, {"iss": "https://op", "sub": "u2", "aud": "app"})
    assert not same_user(login, {"iss": "https://other", "sub": "u1", "aud": "app"})
    assert not same_user(login, {"iss": "https://op", "sub": "u1", "aud": ["app", "other"]})

"""``transaction.py``: the OpenID Connect login transaction is sealed, bound to its ``state``, taken once."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from bffgate.cookies import CookieJar
from bffgate.errors import LoginRejected
from bffgate.transaction import LoginTransactions

from ..harness import settings_for


def transactions() -> LoginTransactions:
    return LoginTransactions(settings_for("http://api.invalid"), CookieJar(secure=True))


def browser_cookies(set_cookie: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    jar.load(set_cookie)
    return {name: morsel.value for name, morsel in jar.items()}


def test_the_cookie_is_lax_sealed_and_taken_once() -> None:
    """Lax (the provider's redirect back is cross-site); a replayed callback is refused."""
    logins = transactions()
    header = logins.begin({"state": "s-1", "nonce": "n", "verifier": "secret-verifier"})
    assert "SameSite=Lax" in header and "secret-verifier" not in header
    cookies = browser_cookies(header)
    assert logins.take(cookies, "s-1")["verifier"] == "secret-verifier"
    with pytest.raises(LoginRejected):
        logins.take(cookies, "s-1")


@pytest.mark.parametrize("state", [None, "", "s-2"])
def test_another_state_is_refused(state: str | None) -> None:
    logins = transactions()
    cookies = browser_cookies(logins.begin({"state": "s-1"}))
    with pytest.raises(LoginRejected):
        logins.take(cookies, state)


def test_no_transaction_cookie_is_refused() -> None:
    with pytest.raises(LoginRejected):
        transactions().take({}, "s-1")

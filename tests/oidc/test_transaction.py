"""The login transaction cookie: sealed, Lax, short-lived and single-use."""

from __future__ import annotations

import time

import pytest
import time_machine

from bffgate.cookies import CookieJar
from bffgate.errors import LoginRejected
from bffgate.transaction import TRANSACTION_SECONDS, LoginTransactions

from ..harness import parse_set_cookie, settings_for

TRANSACTION = {"state": "s" * 43, "nonce": "n" * 43, "verifier": "v" * 86, "returnTo": "/x"}


def started(transactions: LoginTransactions) -> dict[str, str]:
    """The browser's cookies after the login started."""
    name, value, _ = parse_set_cookie(transactions.begin(TRANSACTION))
    return {name: value}


@pytest.fixture
def transactions() -> LoginTransactions:
    return LoginTransactions(settings_for("http://127.0.0.1:9"), CookieJar())


def test_the_matching_state_takes_the_transaction_once(transactions: LoginTransactions) -> None:
    """The callback with the right state gets the transaction; the same state again is refused."""
    cookies = started(transactions)
    assert transactions.take(cookies, TRANSACTION["state"]) == TRANSACTION
    with pytest.raises(LoginRejected, match="already used"):
        transactions.take(cookies, TRANSACTION["state"])


def test_an_expired_transaction_is_refused(transactions: LoginTransactions) -> None:
    """A transaction cookie older than TRANSACTION_SECONDS no longer opens, even if the browser kept it."""
    with time_machine.travel(time.time(), tick=False) as clock:
        cookies = started(transactions)
        clock.shift(TRANSACTION_SECONDS + 1)
        with pytest.raises(LoginRejected, match="no sign-in is in progress"):
            transactions.take(cookies, TRANSACTION["state"])


@pytest.mark.parametrize("state", [None, "", "s" * 42 + "t"])
def test_a_missing_or_other_state_is_refused(transactions: LoginTransactions, state: str | None) -> None:
    """A callback without the transaction's exact state is refused."""
    with pytest.raises(LoginRejected, match="state"):
        transactions.take(started(transactions), state)


def test_a_tampered_cookie_is_refused(transactions: LoginTransactions) -> None:
    """A transaction cookie changed by the browser does not open."""
    ((name, value),) = started(transactions).items()
    with pytest.raises(LoginRejected, match="no sign-in is in progress"):
        transactions.take({name: value[:-6] + "AAAAAA"}, TRANSACTION["state"])


def test_the_clearing_cookie_matches_the_transaction_cookie(transactions: LoginTransactions) -> None:
    """Clearing expires the same __Host- name with Max-Age=0 and the same attributes."""
    name, value, attributes = parse_set_cookie(transactions.clear())
    assert name == "__Host-oidcTxEtls"
    assert value == ""
    assert attributes["max-age"] == "0"
    assert attributes["samesite"] == "Lax"
    assert attributes["path"] == "/"

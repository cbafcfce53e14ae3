"""The OpenID Connect login transaction: state, PKCE verifier, nonce and returnTo, kept by the browser.

It travels in one sealed cookie (``__Host-oidcTxEtls``, JWE like the session cookies, purpose
``oidc-tx``) that lives ``TRANSACTION_SECONDS`` and is SameSite=Lax: the provider's redirect back to
the callback is a cross-site navigation, which would not carry a Strict cookie.

It is single-use: the callback clears the cookie, and the ``state`` values already taken are
remembered in process memory for the cookie's lifetime, so a replayed callback fails even when the
browser (or an attacker who copied it) still sends the cookie. With several gateway processes a replay
that lands on another process is still refused by the provider, for which a code is single-use too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from .bounded import ExpiringKeys
from .config import Settings
from .cookies import CookieJar
from .errors import LoginRejected
from .sealing import Sealer

TRANSACTION_COOKIE = "oidcTxEtls"
TRANSACTION_SECONDS = 600
MAX_REMEMBERED = 100_000  # taken states kept against replay; the oldest go first
MAX_RETURN_TO = 2000  # characters: a longer returnTo would not fit in the cookie, "/" is used instead


class LoginTransactions:
    """Seals login transactions into a cookie and takes each of them back at most once."""

    def __init__(self, settings: Settings, jar: CookieJar) -> None:
        self._jar = jar
        self._name = jar.name(TRANSACTION_COOKIE)
        self._sealer = Sealer(settings.access_secrets, "oidc-tx")
        self._taken = ExpiringKeys(MAX_REMEMBERED, clock=time.monotonic)  # used states' fingerprints

    def begin(self, transaction: Mapping[str, Any]) -> str:
        """The Set-Cookie header that keeps ``transaction`` until the callback."""
        sealed = self._sealer.seal(dict(transaction), time.time() + TRANSACTION_SECONDS)
        return self._jar.set(self._name, sealed, TRANSACTION_SECONDS, same_site="Lax")

    def clear(self) -> str:
        """The Set-Cookie header that removes the transaction cookie."""
        return self._jar.set(self._name, "", 0, same_site="Lax")

    def take(self, cookies: Mapping[str, str], state: str | None) -> dict[str, Any]:
        """The transaction the callback's ``state`` belongs to; ``LoginRejected`` when there is none.

        Taking consumes it, whether the rest of the login then succeeds or not.
        """
        sealed = cookies.get(self._name)
        transaction = self._sealer.unseal(sealed) if sealed else None
        if not isinstance(transaction, dict) or not isinstance(transaction.get("state"), str):
            raise LoginRejected("no sign-in is in progress in this browser, or it took too long")
        if not state or not hmac.compare_digest(state.encode(), transaction["state"].encode()):
            raise LoginRejected("the answer's state does not belong to this browser's sign-in")
        fingerprint = hashlib.sha256(state.encode()).hexdigest()
        if not self._taken.first_use(fingerprint, TRANSACTION_SECONDS):
            raise LoginRejected("this sign-in answer was already used")
        return transaction

"""``logout_redirect.py``: a reference to the ID token for the provider's logout, single use."""

from __future__ import annotations

from bffgate.logout_redirect import LogoutReferences

SECRETS = ["r" * 40]


async def test_a_reference_is_redeemed_once() -> None:
    references = LogoutReferences(SECRETS, None)
    reference = references.issue("the-id-token")
    assert "the-id-token" not in reference  # sealed: the page never reads the ID token
    assert await references.redeem(reference) == "the-id-token"
    assert await references.redeem(reference) is None


async def test_a_forged_or_foreign_reference_is_nothing() -> None:
    foreign = LogoutReferences(["o" * 40], None).issue("the-id-token")
    references = LogoutReferences(SECRETS, None)
    assert await references.redeem(foreign) is None
    assert await references.redeem("not.a.sealed.value.at-all") is None

"""Issue 11 (items 7, 15): the ``returnTo`` a login comes back to, judged as the browser resolves it."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from .conftest import OidcStack


@pytest.mark.parametrize(
    "return_to", ["/..//evil.example/x", "/.//evil.example", "/%2e%2e//evil.example", "/%2E//evil.example"]
)
async def test_return_to_that_resolves_to_another_origin_comes_back_to_root(
    oidc: OidcStack, return_to: str
) -> None:
    """After the real provider's sign-in, the callback redirects to ``/``, never to ``//evil.example``."""
    answer = await oidc.login(oidc.browser(), return_to=quote(return_to, safe=""))
    assert answer.headers["Location"] == "/"


async def test_ordinary_return_to_survives_the_login(oidc: OidcStack) -> None:
    """Control: a local path with a harmless dot segment comes back as it was sent."""
    answer = await oidc.login(oidc.browser(), return_to=quote("/reports/../dashboard?tab=2", safe=""))
    assert answer.headers["Location"] == "/reports/../dashboard?tab=2"

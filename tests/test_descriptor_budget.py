"""The idle API connections kept stay within the open-files limit (each session has its own)."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from bffgate.runtime import idle_connection_budget


@pytest.fixture
def soft_limit_of_1000() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connections_never_take_more_than_half_the_descriptors(
    soft_limit_of_1000: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert idle_connection_budget(2048) == 500
    assert "BFF_UPSTREAM_MAX_IDLE=2048 lowered to 500" in caplog.text
    assert idle_connection_budget(400) == 400

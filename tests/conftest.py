"""Fixtures: a running upstream and gateway per test, and a browser-like client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bffgate import create_app

from .harness import Stack, serve, settings_for
from .upstream import create_test_upstream

StackFactory = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


@pytest.fixture
def make_stack(http: aiohttp.ClientSession) -> StackFactory:
    """Start an upstream and a gateway with ``overrides`` applied to the settings."""

    @contextlib.asynccontextmanager
    async def factory(*, access_ttl: float = 20.0, **overrides: Any) -> AsyncIterator[Stack]:
        upstream, state, recorder = create_test_upstream(access_ttl=access_ttl)
        async with serve(upstream, lifespan="off") as api_url:
            settings = settings_for(api_url, **overrides)
            async with serve(create_app(settings)) as gateway_url:
                yield Stack(gateway_url, api_url, state, recorder, settings, http)

    return factory


@pytest.fixture
async def stack(make_stack: StackFactory) -> AsyncIterator[Stack]:
    async with make_stack() as running:
        yield running

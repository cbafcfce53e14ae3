"""The conformance matrix: ``scenario.py``'s one scenario against every peer in ``peers/``."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from .peer import Peer, discover_peers
from .scenario import StormFigures, run_scenario


@pytest.mark.slow
@pytest.mark.parametrize("peer", discover_peers(), ids=str)
async def test_scenario(peer: Peer, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Login, proxying, a 20-request storm after expiry (one refresh, none rejected), 401 → refresh +
    retry, logout and a refused refresh, each as the framework's own API does them."""
    figures = await run_scenario(peer, tmp_path, http)
    assert figures == StormFigures(refresh_calls=1, rejected=0)

"""``cache_control.py``: what a shared cache in front of the gateway may keep of a per-user answer."""

from __future__ import annotations

import pytest

from bffgate.cache_control import for_shared_caches


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], b"private"),
        ([b"s-maxage=600"], b"private"),
        ([b"max-age=1, S-MaxAge=9, must-revalidate"], b"private, max-age=1, must-revalidate"),
        ([b"Public"], b"Public"),
        ([b"PRIVATE"], b"PRIVATE"),
        ([b'private="x", s-maxage=5'], b'private, private="x", s-maxage=5'),
        ([b"max-age=5", b"no-store"], b"max-age=5, no-store"),
    ],
)
def test_for_shared_caches_rewrites_only_what_it_must(values: list[bytes], expected: bytes) -> None:
    """Case-insensitive directives; a quoted value is left whole (a bare ``private`` is enough)."""
    assert for_shared_caches(values) == expected

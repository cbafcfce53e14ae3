"""``bffgate/__init__.py``: the public surface, curated (httpx's habit) and kept from drifting."""

from __future__ import annotations

import types

import bffgate


def test_public_api_does_not_drift() -> None:
    """The package exports exactly its documented names, sorted."""
    assert bffgate.__all__ == sorted(bffgate.__all__)
    assert bffgate.__all__ == [
        "BffError",
        "ConfigError",
        "Settings",
        "__version__",
        "create_app",
        "load_settings",
    ]


def test_all_names_what_the_package_really_exposes() -> None:
    """Every name in ``__all__`` exists, and every public non-module attribute is in ``__all__``."""
    exposed = {
        name
        for name, value in vars(bffgate).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert all(hasattr(bffgate, name) for name in bffgate.__all__)
    assert exposed | {"__version__"} == set(bffgate.__all__)

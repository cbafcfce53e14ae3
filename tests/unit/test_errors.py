"""``errors.py``: one exception tree, whose branches say who handles an error."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import bffgate
from bffgate import errors
from bffgate.errors import BffError, BffgateError, ConfigError, InternalSignal


def defined_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in a bffgate module (the demo API, a separate app, aside)."""
    found: list[type[BaseException]] = []
    for module_info in pkgutil.walk_packages(bffgate.__path__, "bffgate."):
        if module_info.name.startswith("bffgate.demo"):
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_exception_of_bffgate_is_in_the_one_tree() -> None:
    """No module defines an exception outside ``BffgateError`` (so ``except BffgateError`` is complete)."""
    outside = [cls.__qualname__ for cls in defined_exceptions() if not issubclass(cls, BffgateError)]
    assert outside == []
    assert len(defined_exceptions()) > 25  # the walk did find the modules


def test_the_three_branches_are_apart() -> None:
    """A problem answer, a start-up failure and an internal signal are never mistaken for each other:
    ``except BffError`` (the answer handlers) catches neither a ``ConfigError`` nor a signal."""
    for branch in (ConfigError, InternalSignal):
        assert not issubclass(branch, BffError)
    assert not issubclass(ConfigError, InternalSignal)
    assert {cls.__name__ for cls in BffgateError.__subclasses__()} == {
        "BffError",
        "ConfigError",
        "InternalSignal",
    }


@pytest.mark.parametrize("name", ["RefreshRejected", "RefreshFailed", "ClusterUnavailable"])
def test_refresh_and_redis_outcomes_are_internal_signals(name: str) -> None:
    assert issubclass(getattr(errors, name), InternalSignal)


def test_every_problem_has_its_own_code_and_an_error_status() -> None:
    """Problem codes are stable and distinct: a client tells problems apart by ``code`` alone."""
    problems = [cls for cls in defined_exceptions() if issubclass(cls, BffError)]
    codes = [cls.code for cls in problems if "code" in vars(cls)]
    assert len(codes) == len(set(codes))
    assert all(400 <= cls.status <= 599 for cls in problems)


def test_the_docstring_draws_every_class_of_the_module() -> None:
    """The tree in ``errors.py``'s docstring names each class the module defines."""
    doc = errors.__doc__ or ""
    defined = [
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    ]
    assert [name for name in defined if name not in doc] == []

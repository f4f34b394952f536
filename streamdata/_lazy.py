"""Lazy public names for a package's ``__init__`` (PEP 562).

A package lists where each public name lives; the name is imported on first use and then
kept in the package, so ``import streamdata`` (and the pytest plugin, which imports
``streamdata.testing``) loads nothing heavy until a name is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: The package's ``__name__``.
        homes: Each lazily imported name and its module, relative to ``package``.
        public: The package's ``__all__``, which ``dir()`` lists.

    Returns:
        The two functions, to be bound to ``__getattr__`` and ``__dir__`` in the package.
    """
    names = sorted(public)

    def __getattr__(name: str) -> Any:
        """Import a public name from its module on first use, then keep it in the package.

        Raises:
            AttributeError: If ``name`` is not a public name of the package.
        """
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        """The public names, those not imported yet included."""
        return list(names)

    return __getattr__, __dir__

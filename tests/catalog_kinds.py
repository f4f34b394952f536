"""The kinds of catalog the contract tests run against: memory, a SQLite file, PostgreSQL.

The ``catalogs`` fixture (tests/conftest.py) gives a test one :class:`Catalogs` per kind;
:meth:`Catalogs.new` makes the ``catalog=`` argument of a new, empty catalog of that kind.
A test that needs a durable catalog narrows the kinds with :data:`DURABLE`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CATALOG_KINDS", "DURABLE", "Catalogs"]

CATALOG_KINDS = ("memory", "sqlite", "postgresql")
#: Run a test only against the kinds that outlive their manager (``catalogs`` fixture).
DURABLE = pytest.mark.parametrize("catalogs", ["sqlite", "postgresql"], indirect=True)


@dataclass(frozen=True)
class Catalogs:
    """Makes new, empty catalogs of one kind.

    Attributes:
        kind: ``"memory"``, ``"sqlite"`` or ``"postgresql"``.
        directory: Where SQLite files go (the test's own temporary directory).
        create_database: Creates a PostgreSQL database of that name, returns its URL
            (None for the other kinds).
    """

    kind: str
    directory: Path
    create_database: Callable[[str], str] | None = None

    def new(self) -> str | None:
        """The ``catalog=`` argument of a new, empty catalog (None: in memory)."""
        name = f"catalog_{uuid.uuid4().hex[:12]}"
        if self.kind == "memory":
            return None
        if self.kind == "sqlite":
            return str(self.directory / f"{name}.sqlite")
        assert self.create_database is not None
        return self.create_database(name)

    def durable(self) -> str:
        """The ``catalog=`` argument of a new, empty catalog that outlives its manager."""
        catalog = self.new()
        assert catalog is not None, "use DURABLE on a test that needs a durable catalog"
        return catalog

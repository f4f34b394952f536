"""Choosing the store named by the DataManager's ``catalog`` argument.

None keeps the catalog in memory (no store); a ``postgresql://`` (or ``postgres://``) URL
is a :class:`~.postgres.PostgresStore`, imported only then, so that the PostgreSQL driver
(the ``postgresql`` extra) is needed only by those who use it; anything else is the path
of a SQLite file (:class:`~.sqlite.SQLiteStore`).
"""

from __future__ import annotations

import os

from .._errors import ConfigurationError
from .sqlite import open_store as open_sqlite
from .store import CatalogStore

__all__ = ["POSTGRES_SCHEMES", "open_store"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(catalog: str | os.PathLike[str] | None) -> CatalogStore | None:
    """Open the store named by ``catalog`` (None: no store, the catalog stays in memory).

    Raises:
        ConfigurationError: If the catalog cannot be opened, or names PostgreSQL and its
            driver is not installed.
    """
    if isinstance(catalog, str) and catalog.startswith(POSTGRES_SCHEMES):
        try:
            from .postgres import PostgresStore  # here: the driver is optional
        except ImportError as exc:
            raise ConfigurationError(
                "a PostgreSQL catalog needs the psycopg driver: "
                "pip install 'streamdata[postgresql]'"
            ) from exc
        return PostgresStore(catalog)
    return open_sqlite(catalog)

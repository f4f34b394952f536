"""Which catalog the ``streamdata`` command uses: a SQLite file or a PostgreSQL database.

``--catalog`` (or ``STREAMDATA_CATALOG``) is the path of a SQLite file, or a
``postgresql://`` (``postgres://``) URL; either is given to
:class:`~streamdata.DataManager` as it is. A URL may hold a password: the command never
prints it. What it shows of the catalog (``sites``, ``ls``, their ``--json``, a bad
``--catalog``) is :attr:`Catalog.shown`, the URL with its password replaced by ``***``;
the errors of an unusable database come from the library, which names it the same way
(:meth:`Catalog.open` only puts them on one line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamdata import ConfigurationError, Connector, DataManager

__all__ = ["POSTGRES_SCHEMES", "Catalog", "CatalogError", "hide_password"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PASSWORD_PARAMETER = re.compile(r"((?:^|&)password=)[^&]*")
_KIND_NAMES = {"sqlite": "SQLite file", "postgresql": "PostgreSQL database"}


class CatalogError(Exception):
    """``--catalog`` names something that cannot be a catalog (a directory, another URL)."""


def hide_password(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@`` or ``?password=``) shown as ``***``."""
    head, question, query = url.partition("?")
    scheme, separator, rest = head.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{hosts}"
    return scheme + separator + rest + question + _PASSWORD_PARAMETER.sub(r"\1***", query)


@dataclass(frozen=True)
class Catalog:
    """The catalog of one invocation.

    Attributes:
        kind: ``"sqlite"`` or ``"postgresql"``.
        target: The file path or the URL, as given (a URL may hold a password: not shown
            by ``repr``, never printed).
        source: Where it came from: ``"--catalog"``, ``"STREAMDATA_CATALOG"`` or
            ``"default"``.
    """

    kind: str
    target: str = field(repr=False)
    source: str

    @classmethod
    def parse(cls, text: str, source: str) -> Catalog:
        """The catalog named by ``text``, a file path or a PostgreSQL URL.

        Raises:
            CatalogError: If ``text`` is another kind of URL, or an existing directory.
        """
        if text.startswith(POSTGRES_SCHEMES):
            return cls("postgresql", text, source)
        if _URL.match(text):
            raise CatalogError(
                f"{hide_password(text)!r} is not a catalog: give a file path (SQLite) "
                "or a postgresql:// URL"
            )
        if Path(text).is_dir():
            raise CatalogError(f"{text!r} is a directory: give the path of a catalog file")
        return cls("sqlite", text, source)

    @property
    def shown(self) -> str:
        """Where the catalog is, as the command prints it: the path, or the URL without
        its password."""
        return hide_password(self.target) if self.kind == "postgresql" else self.target

    def open(self, deployments: Mapping[str, Connector]) -> DataManager:
        """A manager on this catalog (for a file, its directory is made first).

        Raises:
            ConfigurationError: If the catalog cannot be opened; for a database, the
                driver's several lines (libpq adds hints on lines of their own) are
                joined into one.
            OSError: If the directory of a catalog file cannot be made.
        """
        if self.kind == "sqlite":
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            return DataManager(deployments, catalog=Path(self.target))
        try:
            return DataManager(deployments, catalog=self.target)
        except ConfigurationError as exc:
            lines = (line.strip() for line in str(exc).splitlines())
            raise ConfigurationError("; ".join(line for line in lines if line)) from exc

    def describe(self) -> str:
        """One line for people: ``catalog: PostgreSQL database postgresql://u:***@h/db``."""
        return f"catalog: {_KIND_NAMES[self.kind]} {self.shown} (from {self.source})"

    def record(self) -> dict[str, str]:
        """The catalog in ``--json`` output: its kind, location (no password) and source."""
        return {"kind": self.kind, "location": self.shown, "source": self.source}

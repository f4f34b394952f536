"""The global options of the ``streamdata`` command, valid before or after a subcommand."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console

from . import _ops as ops
from ._catalog import Catalog, CatalogError
from ._sites import Sites, default_sites_path, load_sites

__all__ = ["Settings", "default_catalog_path", "global_options", "stdout"]

_F = TypeVar("_F", bound=Callable[..., Any])


def default_catalog_path() -> Path:
    """``$XDG_DATA_HOME/streamdata/catalog.sqlite``, by default under ``~/.local/share``."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "streamdata" / "catalog.sqlite"


@dataclass(frozen=True)
class Settings:
    """The global options of one invocation."""

    sites: Path | None
    catalog: tuple[str, str] | None = field(repr=False)  # as given, and where it came from
    json: bool
    debug: bool

    @classmethod
    def of(cls, ctx: click.Context) -> Settings:
        """Collect the options given to the group or to the subcommand."""
        meta = ctx.meta
        return cls(
            meta.get("streamdata.sites"),
            meta.get("streamdata.catalog"),
            bool(meta.get("streamdata.json")),
            bool(meta.get("streamdata.debug")),
        )

    def load_sites(self) -> Sites:
        """The sites file given, or the default one, or only the built-in ``local``."""
        return load_sites(self.sites if self.sites is not None else default_sites_path())

    def catalog_in_use(self) -> Catalog:
        """The catalog given (``--catalog``, ``STREAMDATA_CATALOG``), else the default file.

        Raises:
            click.UsageError: If what was given names no catalog (a password in it is not
                shown).
        """
        if self.catalog is None:
            return Catalog("sqlite", str(default_catalog_path()), "default")
        text, source = self.catalog
        try:
            return Catalog.parse(text, source)
        except CatalogError as exc:
            raise click.UsageError(f"invalid catalog: {exc} (from {source})") from None

    def session(self, sites: Sites) -> ops.Session:
        """A session on the catalog, drawing progress on standard error's terminal."""
        err = Console(stderr=True)
        catalog = self.catalog_in_use()
        return ops.Session(sites, catalog, err, show_progress=err.is_terminal and not self.json)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Keep an option's value in the context shared by the group and its subcommand.

    Given before and after the subcommand, the later one wins; but a value the subcommand
    only read from the environment never replaces one given on the command line before it.
    """

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value in (None, False):
            return value
        from_environment = ctx.get_parameter_source(param.name or "") is ParameterSource.ENVIRONMENT
        if not from_environment or key not in ctx.meta:
            ctx.meta[key] = value
        return value

    return callback


def _remember_catalog(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep ``--catalog`` with where it came from (see :func:`_remember`).

    It is read as a catalog when a command needs it (:meth:`Settings.catalog_in_use`), so
    that a bad ``STREAMDATA_CATALOG`` does not matter when ``--catalog`` replaces it.
    """
    if value:
        from_environment = ctx.get_parameter_source(param.name or "") is ParameterSource.ENVIRONMENT
        source = "STREAMDATA_CATALOG" if from_environment else "--catalog"
        _remember("streamdata.catalog")(ctx, param, (value, source))


def global_options(function: _F) -> _F:
    """The options accepted before or after the subcommand name."""
    options = [
        click.option(
            "--sites",
            type=click.Path(path_type=Path, dir_okay=False),
            envvar="STREAMDATA_SITES",
            expose_value=False,
            callback=_remember("streamdata.sites"),
            help="Sites file (TOML). Default: ./streamdata.toml, else "
            "~/.config/streamdata/sites.toml.",
        ),
        click.option(
            "--catalog",
            metavar="FILE|URL",
            envvar="STREAMDATA_CATALOG",
            expose_value=False,
            callback=_remember_catalog,
            help="Catalog: a SQLite file, or a PostgreSQL database "
            "(postgresql://USER@HOST:PORT/DB; its password is never printed). "
            "Default: $XDG_DATA_HOME/streamdata/catalog.sqlite.",
        ),
        click.option(
            "--json",
            "json_output",
            is_flag=True,
            expose_value=False,
            callback=_remember("streamdata.json"),
            help="Print the result as JSON (for scripts).",
        ),
        click.option(
            "--debug",
            is_flag=True,
            expose_value=False,
            callback=_remember("streamdata.debug"),
            help="Log what happens and show tracebacks.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def stdout() -> Console:
    """Standard output, as rich writes it (no wrapping of long lines)."""
    return Console(soft_wrap=True)

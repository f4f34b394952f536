"""The global options of the ``streamdata`` command, valid before or after a subcommand."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from . import _ops as ops
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
    catalog: Path | None
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

    def session(self, sites: Sites) -> ops.Session:
        """A session on the catalog, drawing progress on standard error's terminal."""
        err = Console(stderr=True)
        catalog = self.catalog if self.catalog is not None else default_catalog_path()
        return ops.Session(sites, catalog, err, show_progress=err.is_terminal and not self.json)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            ctx.meta[key] = value
        return value

    return callback


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
            type=click.Path(path_type=Path, dir_okay=False),
            envvar="STREAMDATA_CATALOG",
            expose_value=False,
            callback=_remember("streamdata.catalog"),
            help="Catalog file (SQLite). Default: $XDG_DATA_HOME/streamdata/catalog.sqlite.",
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

"""The ``streamdata`` command (see :mod:`._main` for its subcommands)."""

from ._main import main

__all__ = ["main"]

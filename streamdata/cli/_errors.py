"""Errors, signals and logging of the ``streamdata`` command: one line per error, exit codes.

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error (also when
a destination failed because of the configuration, e.g. a missing client key file), 130
interrupted (Ctrl-C, SIGINT), 143 terminated (SIGTERM). Both signals cancel the running
operation, so its cleanup runs (temporaries are removed, helper processes killed) before
the command exits; a second SIGTERM during that cleanup ends the command at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import click

from streamdata import ConfigurationError, ConnectorError, StreamDataError, TransferError

from ._output import printable
from ._sites import SitesError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "Terminated",
    "exit_code",
    "first_leaf",
    "logging_to_stderr",
    "message",
    "run",
    "tool_output",
    "wants_debug",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM

_T = TypeVar("_T")


class Terminated(Exception):
    """SIGTERM stopped the operation; it was cancelled and its cleanup has run."""


def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run an operation to completion; SIGTERM cancels it as Ctrl-C does.

    Raises:
        Terminated: If SIGTERM arrived (after the operation's cleanup ran).
        KeyboardInterrupt: If Ctrl-C arrived (likewise, by :func:`asyncio.run`).
    """
    return asyncio.run(_cancelled_on_sigterm(coroutine))


async def _cancelled_on_sigterm(coroutine: Coroutine[Any, Any, _T]) -> _T:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    received: list[bool] = []

    def on_sigterm() -> None:
        received.append(True)
        loop.remove_signal_handler(signal.SIGTERM)  # a second one ends the process at once
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not main thread)
        return await coroutine
    try:
        return await coroutine
    except asyncio.CancelledError:
        if not received or task is None:
            raise
        task.uncancel()
        raise Terminated from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def exit_code(error: BaseException) -> int:
    """2 for usage and configuration errors, also when they made destinations fail; else 1."""
    if isinstance(error, click.ClickException):
        return EXIT_USAGE if isinstance(error, click.UsageError) else error.exit_code
    if isinstance(error, SitesError | ConfigurationError | ValueError | TypeError):
        return EXIT_USAGE
    if isinstance(error, TransferError) and any(
        isinstance(cause, ConfigurationError) for cause in error.failures.values()
    ):
        return EXIT_USAGE  # e.g. a missing client key made a destination fail
    return EXIT_FAILED


def message(error: BaseException) -> str:
    """The one-line text of ``error``, names escaped (:func:`~._output.printable`)."""
    error = first_leaf(error)
    if isinstance(error, click.UsageError):
        text = error.format_message()
        if error.ctx is not None:
            text += f" (see '{error.ctx.command_path} --help')"
    elif isinstance(error, click.ClickException):
        text = error.format_message()
    elif isinstance(error, StreamDataError | SitesError | ValueError | TypeError):
        text = str(error)
    elif isinstance(error, OSError):
        text = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    else:
        text = f"internal error: {type(error).__name__}: {error}"
    return printable(text.strip(), backslashes=False)


def tool_output(error: BaseException) -> list[str]:
    """The whole standard error of every failed tool behind ``error``, for ``--debug``.

    One-line messages quote only the most telling line of it
    (:attr:`~streamdata.ConnectorError.details`); this looks through exception groups,
    the causes of a :class:`~streamdata.TransferError` and chained exceptions. Each line
    is escaped (:func:`~._output.printable`): the tool may quote file names.
    """
    found: list[str] = []
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectorError) and current.details:
            where = f" ({current.host})" if current.host else ""
            lines = (printable(line, backslashes=False) for line in current.details.splitlines())
            found.append(f"standard error of the failed command{where}:\n" + "\n".join(lines))
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if isinstance(current, TransferError):
            pending.extend(current.failures.values())
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


def wants_debug(args: Sequence[str]) -> bool:
    options = args[: args.index("--")] if "--" in args else args
    return "--debug" in options or bool(os.environ.get("STREAMDATA_DEBUG"))


@contextlib.contextmanager
def logging_to_stderr(debug: bool) -> Iterator[None]:
    """Log to standard error with ``--debug``; else keep library log lines quiet.

    Without a handler, Python prints warnings of the library to standard error, and an
    error must be reported once, as one line, by :func:`streamdata.cli.main`. Restored on exit.
    """
    root = logging.getLogger()
    level = root.level
    if debug:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error

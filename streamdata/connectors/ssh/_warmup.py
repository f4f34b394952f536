"""Starting a host's SFTP session in the background, and learning meanwhile how far it is.

A transfer's first step on a host (:mod:`._prepare`) should not wait for the SFTP
session when the host is far: :class:`WarmUp` starts it in a task of its own (the pool
owns it: :meth:`WarmUp.close` cancels it), and :meth:`WarmUp.is_far` answers as soon as
the first round trip is measured (the standby channel, opened with the session, is
confirmed a round trip after the connection is up). A warm-up that fails before any
measurement is raised there, so the caller does not try to connect all over again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..._errors import ConfigurationError, ConnectorError
from ._connect import again
from ._parallel import NEAR, RoundTrips

__all__ = ["WarmUp"]


class WarmUp:
    """One background start of a host's SFTP session at a time.

    Args:
        start: Starts the session (or returns it, already started).
        round_trips: The host's round-trip samples.
    """

    def __init__(self, start: Callable[[], Awaitable[object]], round_trips: RoundTrips) -> None:
        self._start = start
        self._round_trips = round_trips
        self._task: asyncio.Task[object] | None = None

    def start(self) -> None:
        """Start the session in the background, unless a start is under way."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._start())
            self._task.add_done_callback(_retrieved)

    async def is_far(self) -> bool:
        """Whether the host is :data:`~._parallel.NEAR` or more away.

        Waits for the first round-trip sample, or for the warm-up to end; False if
        neither gave a sample.

        Raises:
            ConnectorError: If the warm-up failed before any sample (a fresh error,
                chained to it).
            ConfigurationError: Likewise, for a configuration the host refused.
        """
        task = self._task
        if self._round_trips.best is None and task is not None:
            measured = asyncio.ensure_future(self._round_trips.measured.wait())
            try:
                await asyncio.wait((measured, task), return_when=asyncio.FIRST_COMPLETED)
            finally:
                measured.cancel()
            failed = _failure(task)
            if self._round_trips.best is None and failed is not None:
                raise again(failed) from failed
        best = self._round_trips.best
        return best is not None and best >= NEAR

    async def close(self) -> None:
        """Cancel a start under way and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: it is raised where it matters (:meth:`WarmUp.is_far`)."""
    if not task.cancelled():
        task.exception()


def _failure(task: asyncio.Future[Any]) -> ConnectorError | ConfigurationError | None:
    """The failure a finished task ended with, if it is one to raise again."""
    if not task.done() or task.cancelled():
        return None
    error = task.exception()
    return error if isinstance(error, ConnectorError | ConfigurationError) else None

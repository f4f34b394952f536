"""Extra channels for one transfer, opened in the background on slots free right now.

A transfer split over several channels starts on one (opened like any command, waiting
for a slot if need be) and adds the others as they open, so its data flows from the first
round trip. :func:`start_spares` starts one task per wanted extra channel in the
transfer's task group; each opens its channel only if a slot is free at that moment
(:meth:`~._pool.HostPool.spare_command`, which takes the slot without yielding to the
event loop, so spares started together never wait for a slot another transfer holds),
hands it to ``serve`` and closes it when ``serve`` returns. A failure in ``serve`` fails
the task group, hence the transfer; so does a failure to open, unless the connection was
lost (:func:`._ranges.resumable`): the transfer then goes on without that channel, and
its other channels meet the same loss (and resume, or fail).

:func:`first_error` turns the exception group of a failed transfer back into the one
error to raise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from ..._errors import ConnectorError, StreamDataError
from ._channel import RemoteCommand
from ._pool import HostPool
from ._ranges import resumable

__all__ = ["first_error", "start_spares"]


def start_spares(
    group: asyncio.TaskGroup,
    pool: HostPool,
    command: str,
    what: str,
    count: int,
    serve: Callable[[RemoteCommand], Awaitable[None]],
) -> None:
    """Start ``count`` tasks in ``group``, each opening one extra channel for ``serve``."""
    for _ in range(count):
        group.create_task(_spare(pool, command, what, serve))


async def _spare(
    pool: HostPool, command: str, what: str, serve: Callable[[RemoteCommand], Awaitable[None]]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        try:
            remote = await stack.enter_async_context(pool.spare_command(command, what=what))
        except ConnectorError as error:
            if resumable(error):
                return  # the transfer goes on without it; its own channels will tell
            raise
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # cancelled while connecting, but the cancellation was lost on the way (the
            # race of asyncio.wait_for in Python 3.11): serving would wait for blocks the
            # failed transfer will never deal
            raise asyncio.CancelledError
        if remote is not None:
            await serve(remote)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a failed group of channel tasks stands for.

    The first :class:`~streamdata.StreamDataError` found (depth first), which says what
    failed on which host; else the first exception.
    """
    leaves = list(_leaves(group))
    return next((exc for exc in leaves if isinstance(exc, StreamDataError)), leaves[0])


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found

"""Blocking file work from the event loop: worker threads that are waited for, and writes
paced by how fast the disk takes them.

Writing a downloaded file through a worker thread costs a GIL hand-over per chunk while
the event loop thread is busy decrypting SSH packets, and on 2 cores the extra runnable
thread takes CPU from ``sshd``. Measured on this project's machine (1 GiB from loopback
OpenSSH, medians of 3): 1 MiB writes in a thread 3.06 s, through one long-lived writer
thread 2.49 s, straight from the event loop 1.38 s (reading alone: 1.17-1.44 s). A write
into the page cache takes well under a millisecond, so :class:`WritePacing` writes from
the event loop; once a write takes longer (the kernel is throttling dirty pages to the
disk's speed), it writes from a worker thread for a while, as the disk, not the hand-over,
is then the limit, and the event loop must not stall behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WritePacing", "in_thread", "write_all"]

_T = TypeVar("_T")

#: A write slower than this (seconds) went to the disk, not to the page cache.
SLOW_WRITE = 0.02
#: After a slow write, writes go through a worker thread for this long (seconds).
SLOW_SPELL = 5.0


async def in_thread(work: Callable[[threading.Event], _T]) -> _T:
    """Run blocking ``work`` in a thread; on cancellation, tell it to stop and wait for it.

    Raises:
        BaseException: Whatever ``work`` raises.
    """
    cancelled = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, cancelled))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancelled.set()
        with contextlib.suppress(BaseException):
            await task  # the thread must be done before the caller cleans up
        raise


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, however many calls it takes.

    Raises:
        OSError: If a write fails (e.g. ``ENOSPC``).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class WritePacing:
    """Writes chunks to files from the event loop while the disk keeps up, else in a thread.

    Args:
        clock: Monotonic seconds (injectable for tests).
        slow: A write taking longer than this many seconds starts a slow spell.
        spell: How long a slow spell lasts, in seconds.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        slow: float = SLOW_WRITE,
        spell: float = SLOW_SPELL,
    ) -> None:
        self._clock = clock
        self._slow = slow
        self._spell = spell
        self._threaded_until = float("-inf")

    @property
    def threaded(self) -> bool:
        """True while writes go through a worker thread."""
        return self._clock() < self._threaded_until

    async def write(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` to ``fd``; a cancelled write has stopped when this returns.

        Raises:
            OSError: If the write fails.
        """
        if self.threaded:
            await in_thread(lambda _: write_all(fd, data))
            return
        start = self._clock()
        write_all(fd, data)
        self.record(self._clock() - start)

    def record(self, seconds: float) -> None:
        """Note that a write from the event loop took ``seconds``."""
        if seconds > self._slow:
            self._threaded_until = self._clock() + self._spell

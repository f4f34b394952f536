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
is then the limit, and the event loop must not stall behind it. Only files on local disk
or memory filesystems (ext4, XFS, Btrfs, tmpfs, ...) are written from the event loop: a
write to NFS, CIFS or FUSE can hang on the network, so there every write goes through a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "LOCAL_FILESYSTEMS",
    "WritePacing",
    "copy_file",
    "filesystem_type",
    "in_thread",
    "write_all",
]

_T = TypeVar("_T")
#: Bytes copied in the kernel between two looks at a cancellation.
_COPY_SLICE = 1 << 26

#: A write slower than this (seconds) went to the disk, not to the page cache.
SLOW_WRITE = 0.02
#: After a slow write, writes go through a worker thread for this long (seconds).
SLOW_SPELL = 5.0
#: Filesystem types whose writes cannot wait on a network: written from the event loop.
LOCAL_FILESYSTEMS = frozenset(
    {
        "bcachefs",
        "btrfs",
        "exfat",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "jfs",
        "overlay",
        "ramfs",
        "reiserfs",
        "tmpfs",
        "vfat",
        "xfs",
        "zfs",
    }
)
_MOUNTINFO = "/proc/self/mountinfo"


def filesystem_type(device: int, mountinfo: str = _MOUNTINFO) -> str | None:
    """The type of the mounted filesystem with device number ``device``, if listed.

    Args:
        device: An ``st_dev`` value.
        mountinfo: The mount table to read (Linux's format).

    Returns:
        The type (``"ext4"``, ``"nfs4"``, ...), or None if the table cannot be read or
        does not list the device.
    """
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 2 and fields[2] == wanted and "-" in fields[6:]:
                    separator = fields.index("-", 6)
                    if separator + 1 < len(fields):
                        return fields[separator + 1]
    except OSError:
        return None
    return None


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
        while not task.done():  # the thread must be done before the caller cleans up,
            with contextlib.suppress(asyncio.CancelledError):  # however often cancelled
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
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
        self._local: dict[int, bool] = {}  # st_dev -> written from the event loop?

    @property
    def threaded(self) -> bool:
        """True while writes go through a worker thread."""
        return self._clock() < self._threaded_until

    async def write(self, fd: int, data: bytes, *, local: bool | None = None) -> None:
        """Write all of ``data`` to ``fd``; a cancelled write has stopped when this returns.

        Args:
            fd: The file to write to.
            data: The bytes.
            local: :meth:`on_local_disk` of ``fd``, when the caller asked it once for the
                whole file; None to ask it here.

        Raises:
            OSError: If the write fails.
        """
        if local is None:
            local = self.on_local_disk(fd)
        if not local or self.threaded:
            await in_thread(lambda _: write_all(fd, data))
            return
        start = self._clock()
        write_all(fd, data)
        self.record(self._clock() - start)

    def on_local_disk(self, fd: int) -> bool:
        """Whether ``fd`` is on a local disk or memory filesystem (else always threaded).

        Raises:
            OSError: If ``fd`` cannot be examined.
        """
        device = os.fstat(fd).st_dev
        local = self._local.get(device)
        if local is None:
            local = self._local[device] = filesystem_type(device) in LOCAL_FILESYSTEMS
        return local

    def record(self, seconds: float) -> None:
        """Note that a write from the event loop took ``seconds``."""
        if seconds > self._slow:
            self._threaded_until = self._clock() + self._spell


def copy_file(source: str, target: str, cancelled: threading.Event) -> None:
    """Copy the file ``source`` to the new file ``target`` in the kernel, mode and times too.

    Raises:
        OSError: If the copy fails.
        InterruptedError: If ``cancelled`` is set before it ends.
    """
    with open(source, "rb") as src, open(target, "xb") as dst:
        info = os.fstat(src.fileno())
        _copy_bytes(src.fileno(), dst.fileno(), info.st_size, cancelled)
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _copy_bytes(src: int, dst: int, size: int, cancelled: threading.Event) -> None:
    """Copy in the kernel, a slice at a time so a cancellation is noticed."""
    copy: Callable[[int, int, int], int] = _copy_file_range
    while not cancelled.is_set():
        try:
            done = copy(src, dst, _COPY_SLICE)
        except OSError as exc:
            if copy is _sendfile or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL):
                raise
            copy = _sendfile
            continue
        if done == 0:
            return
    raise InterruptedError("copy cancelled")


def _copy_file_range(src: int, dst: int, count: int) -> int:
    return os.copy_file_range(src, dst, count)


def _sendfile(src: int, dst: int, count: int) -> int:
    return os.sendfile(dst, src, None, count)

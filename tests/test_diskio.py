"""Paced file writes: from the event loop while the disk keeps up, from a thread after a
slow write, and a cancelled threaded write has stopped before the caller goes on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdata.connectors._diskio import (
    LOCAL_FILESYSTEMS,
    WritePacing,
    filesystem_type,
    in_thread,
    write_all,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_write_starts_a_threaded_spell_that_ends() -> None:
    clock = Clock()
    pacing = WritePacing(clock, slow=0.02, spell=5.0)
    pacing.record(0.001)
    assert not pacing.threaded
    pacing.record(0.05)
    assert pacing.threaded
    clock.now += 4.9
    assert pacing.threaded
    clock.now += 0.2
    assert not pacing.threaded


@contextlib.contextmanager
def writing_threads() -> Iterator[set[int]]:
    """The ids of the threads that call ``os.write`` inside the block."""
    writers: set[int] = set()
    real_write = os.write

    def spy(target: int, data: bytes | memoryview) -> int:
        writers.add(threading.get_ident())
        return real_write(target, data)

    os.write = spy  # type: ignore[assignment]
    try:
        yield writers
    finally:
        os.write = real_write


@pytest.mark.parametrize("slow_spell", [False, True])
async def test_writes_are_complete_in_both_modes(tmp_path: Path, slow_spell: bool) -> None:
    """Every byte lands in order, from the loop or from a thread."""
    clock = Clock()
    pacing = WritePacing(clock)
    if slow_spell:
        pacing.record(1.0)
    chunks = [os.urandom(size) for size in (1, 65_536, 1 << 20, 3, 300_000)]
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with writing_threads() as writers:
            for chunk in chunks:
                await pacing.write(fd, chunk)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)
    assert (threading.get_ident() in writers) is not slow_spell
    assert pacing.threaded is slow_spell


async def test_a_full_disk_is_an_oserror_in_both_modes() -> None:
    """ENOSPC from /dev/full comes back as OSError, not swallowed by the thread."""
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError, match="No space left"):
            write_all(fd, b"x")
        threaded = WritePacing()
        threaded.record(1.0)
        with pytest.raises(OSError, match="No space left"):
            await threaded.write(fd, b"x" * 4096)
    finally:
        os.close(fd)


async def test_cancelled_thread_work_has_ended_when_the_caller_resumes() -> None:
    """in_thread waits for its thread after a cancellation (a file descriptor it
    writes to may be closed and reused by the caller right after)."""
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def work(cancelled: threading.Event) -> None:
        started.set()
        release.wait(5)
        finished.append(cancelled.is_set())

    task = asyncio.create_task(in_thread(work))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]


async def test_a_slow_write_from_the_loop_is_noticed(tmp_path: Path) -> None:
    """write() times its own writes: one that takes 50 ms starts a threaded spell."""
    clock = Clock()

    def ticking() -> float:
        clock.now += 0.05  # every reading 50 ms later: each write looks slow
        return clock.now

    pacing = WritePacing(ticking, slow=0.02, spell=5.0)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        await pacing.write(fd, b"abc")
    finally:
        os.close(fd)
    assert pacing.threaded


async def test_cancelled_twice_still_waits_for_the_thread() -> None:
    """A second cancellation while waiting for the thread does not let the caller go."""
    started, release = threading.Event(), threading.Event()
    running = threading.Event()

    def work(cancelled: threading.Event) -> None:
        running.set()
        started.set()
        release.wait(5)
        running.clear()

    task = asyncio.create_task(in_thread(work))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.sleep(0.02)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not running.is_set()


def test_filesystem_type_reads_the_mount_table(tmp_path: Path) -> None:
    """The type comes from the line of the device; unknown or unreadable: None."""
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "90 27 0:53 / /mnt/share rw,relatime shared:40 master:3 - nfs4 srv:/x rw,vers=4.2\n"
    )
    assert filesystem_type(os.makedev(254, 0), str(table)) == "ext4"
    assert filesystem_type(os.makedev(0, 53), str(table)) == "nfs4"
    assert filesystem_type(os.makedev(9, 9), str(table)) is None
    assert filesystem_type(os.makedev(254, 0), str(tmp_path / "missing")) is None
    assert filesystem_type(os.stat(tmp_path).st_dev) in LOCAL_FILESYSTEMS


async def test_writes_off_local_disks_always_go_through_a_thread() -> None:
    """A file on a filesystem not known to be local (here devtmpfs) is never written
    from the event loop, however fast its writes are."""
    pacing = WritePacing()
    fd = os.open("/dev/null", os.O_WRONLY)
    try:
        with writing_threads() as writers:
            for _ in range(3):
                await pacing.write(fd, b"x" * 1000)
    finally:
        os.close(fd)
    assert writers and threading.get_ident() not in writers
    assert not pacing.threaded  # not a slow spell: the filesystem decides

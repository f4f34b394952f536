"""Paced file writes: from the event loop while the disk keeps up, from a thread after a
slow write, and a cancelled threaded write has stopped before the caller goes on."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from streamdata.connectors._diskio import WritePacing, in_thread, write_all


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
        loop_thread = threading.get_ident()
        writers: set[int] = set()
        real_write = os.write

        def spy(target: int, data: bytes | memoryview) -> int:
            writers.add(threading.get_ident())
            return real_write(target, data)

        os.write = spy  # type: ignore[assignment]
        try:
            for chunk in chunks:
                await pacing.write(fd, chunk)
        finally:
            os.write = real_write
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"".join(chunks)
    assert (loop_thread in writers) is not slow_spell
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

"""Local helper processes (``cp``, ``tar``) run without a shell, with checked exit status.

Arguments go to ``execve`` as a list, so no file name is ever interpreted. A process is
killed and reaped when its caller is cancelled or leaves early: nothing outlives a call.
Nor does it outlive this process: on Linux each one asks the kernel (``prctl`` with
``PR_SET_PDEATHSIG``) for SIGKILL when its parent dies, so a ``cp -a`` does not go on
writing, orphaned, after this process was killed with SIGKILL (or crashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

from .._errors import ConnectorError
from ._stderr import StderrBuffer, summarize

__all__ = ["feed_process", "read_process", "run_process"]

_READ_SIZE = 1 << 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


async def _spawn(
    command: Sequence[str], *, stdin: int | None, stdout: int | None, what: str
) -> asyncio.subprocess.Process:
    """Start ``command``; cancelled meanwhile, a child already started is killed and reaped.

    (A cancellation can reach the caller after the child started, when the start itself
    had completed: the process would be lost, running and unwaited.)
    """
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *command,
            stdin=stdin,
            stdout=stdout,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_dying_with_parent(),
        )
    )
    try:
        return await asyncio.shield(starting)
    except OSError as exc:
        raise ConnectorError(f"cannot {what}: cannot run {command[0]!r}: {exc.strerror}") from exc
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):  # cancelled either way
            await _wait_out(starting)
        if not starting.cancelled() and starting.exception() is None:
            await _reap(starting.result())
        raise


async def _wait_out(work: asyncio.Future[Any]) -> None:
    """Wait until ``work`` is done, however often this task is cancelled meanwhile; the
    cancellation, if any, is raised once it is."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _dying_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux).

    The kernel sends the signal when the *thread* that started the child ends: here the
    event loop's, which outlives every child (each is reaped before its call returns).
    If this process died between the fork and the ``prctl``, the child exits at once.
    Elsewhere, None: nothing to do before ``exec``.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    arguments = [ctypes.c_ulong(value) for value in (signal.SIGKILL, 0, 0, 0)]

    def arrange() -> None:  # in the child, between fork and exec: system calls only
        prctl(_PR_SET_PDEATHSIG, *arguments)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """The C library's ``prctl``, on Linux; None elsewhere or when it cannot be found."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs and wait for it, even while being cancelled
    (again and again: the cancellation is raised once the process was waited for).

    Whatever is left of its standard output is read and dropped: asyncio's ``wait`` also
    waits for every pipe to close, and it stops watching a pipe whose buffer is full, so a
    reader that left early would otherwise wait for ever.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    reaping = asyncio.ensure_future(_drain_and_wait(process))
    try:
        await _wait_out(reaping)  # a second cancel must not leave the killed process unwaited
    except asyncio.CancelledError:
        if not reaping.cancelled():
            reaping.exception()  # retrieved: the cancellation is what the caller sees
        raise
    reaping.result()


async def _drain_and_wait(process: asyncio.subprocess.Process) -> None:
    if process.stdout is not None:
        while await process.stdout.read(_READ_SIZE):
            pass
    await process.wait()


def _check(process: asyncio.subprocess.Process, stderr: str, what: str) -> None:
    """Raise if ``process`` failed, quoting the most telling line of ``stderr``.

    Raises:
        ConnectorError: If it exited non-zero or was killed; ``details`` holds ``stderr``.
    """
    code = process.returncode
    if code is None or code == 0:
        return
    if code < 0:  # killed, e.g. SIGXFSZ past a file size limit
        try:
            name = signal.Signals(-code)
            status = f"killed by {name.name} ({signal.strsignal(name) or 'signal'})"
        except ValueError:
            status = f"killed by signal {-code}"
    else:
        status = f"exit status {code}"
    summary = summarize(stderr)
    raise ConnectorError(
        f"cannot {what}: {status}" + (f": {summary}" if summary else ""), details=stderr or None
    )


def _kept(stderr: bytes) -> str:
    """The start and end of ``stderr`` (see :class:`StderrBuffer`), decoded."""
    buffer = StderrBuffer()
    buffer.feed(stderr)
    return buffer.text()


async def run_process(command: Sequence[str], *, what: str) -> None:
    """Run ``command`` to completion.

    Raises:
        ConnectorError: If it cannot start or exits with a non-zero status.
    """
    process = await _spawn(
        command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, what=what
    )
    try:
        _, stderr = await process.communicate()
    finally:
        await _reap(process)
    _check(process, _kept(stderr), what)


@contextlib.asynccontextmanager
async def read_process(command: Sequence[str], *, what: str) -> AsyncIterator[AsyncIterator[bytes]]:
    """Run ``command`` and expose its standard output as chunks.

    Its standard error is read at the same time (its start and end kept for the error), so
    a command that complains a lot cannot stall on a full pipe. Leaving the context early
    kills the command and waits for it.

    Yields:
        The chunks of its standard output.

    Raises:
        ConnectorError: If it cannot start; from the iterator, after the last chunk, if the
            command failed.
    """
    process = await _spawn(
        command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, what=what
    )
    assert process.stderr is not None
    stderr_task = asyncio.ensure_future(_tail(process.stderr))
    try:
        yield _stdout_chunks(process, stderr_task, what)
    finally:
        try:
            await _reap(process)  # stderr still drained meanwhile: the pipes can close
        finally:
            stderr_task.cancel()
            await asyncio.wait([stderr_task])  # done at once after the cancel
            if not stderr_task.cancelled():
                stderr_task.exception()  # retrieved: a failure shows in the exit status


async def _tail(stream: asyncio.StreamReader) -> str:
    """Everything ``stream`` says, its first and last few KiB kept."""
    kept = StderrBuffer()
    while chunk := await stream.read(_READ_SIZE):
        kept.feed(chunk)
    return kept.text()


async def _stdout_chunks(
    process: asyncio.subprocess.Process, stderr_task: asyncio.Future[str], what: str
) -> AsyncIterator[bytes]:
    assert process.stdout is not None
    while chunk := await process.stdout.read(_READ_SIZE):
        yield chunk
    stderr = await stderr_task
    await process.wait()
    _check(process, stderr, what)


async def feed_process(command: Sequence[str], chunks: AsyncIterable[bytes], *, what: str) -> None:
    """Run ``command`` with ``chunks`` as its standard input.

    Raises:
        ConnectorError: If it cannot start, stops reading early or exits non-zero.
    """
    process = await _spawn(
        command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, what=what
    )
    assert process.stdin is not None
    assert process.stderr is not None
    try:
        stderr_task = asyncio.ensure_future(_tail(process.stderr))
        try:
            async for chunk in chunks:
                process.stdin.write(chunk)
                await process.stdin.drain()
            process.stdin.close()
            await process.wait()
        except (BrokenPipeError, ConnectionResetError):
            await process.wait()
        finally:
            stderr = await _finish(stderr_task, process)
    finally:
        await _reap(process)
    _check(process, stderr, what)


async def _finish(stderr_task: asyncio.Future[str], process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    try:
        return await asyncio.shield(stderr_task)
    except asyncio.CancelledError:
        stderr_task.cancel()
        raise

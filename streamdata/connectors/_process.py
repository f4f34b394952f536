"""Local helper processes (``cp``, ``tar``) run without a shell, with checked exit status.

Arguments go to ``execve`` as a list, so no file name is ever interpreted. A process is
killed and reaped when its caller is cancelled or leaves early: nothing outlives a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from .._errors import ConnectorError
from ._stderr import StderrBuffer, summarize

__all__ = ["feed_process", "read_process", "run_process"]

_READ_SIZE = 1 << 20


async def _spawn(
    command: Sequence[str], *, stdin: int | None, stdout: int | None, what: str
) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *command, stdin=stdin, stdout=stdout, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise ConnectorError(f"cannot {what}: cannot run {command[0]!r}: {exc.strerror}") from exc


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs and wait for it, even while being cancelled.

    Whatever is left of its standard output is read and dropped: asyncio's ``wait`` also
    waits for every pipe to close, and it stops watching a pipe whose buffer is full, so a
    reader that left early would otherwise wait for ever.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await asyncio.shield(_drain_and_wait(process))


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

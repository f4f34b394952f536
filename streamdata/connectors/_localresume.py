"""Resuming file copies on this host: block digests, reads and writes of spans of a file.

:class:`LocalResume` gives :class:`~.local.LocalConnector` the optional resume methods of
:class:`~._base.Connector` (the engine's side is :mod:`streamdata._engine.resume`).
Hashing and writing run in worker threads (:func:`._diskio.in_thread`, which stops them
when cancelled); a resumed write goes at explicit offsets (``pwrite``), never appended,
and the file is then cut to its size.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Sequence

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedReader

from .._errors import ConnectorError
from .._models import ExecutionLocation
from ._base import Entry, Span
from ._diskio import in_thread
from ._localerrors import mapped

__all__ = ["LocalResume"]

_CHUNK = 1 << 20


class LocalResume:
    """The resume methods of a connector whose locations see this process's filesystem."""

    def can_resume(self, location: ExecutionLocation) -> bool:
        """True: a local file can be hashed, read and written at any offset."""
        return True

    async def block_digests(
        self, location: ExecutionLocation, path: str, size: int, block: int
    ) -> list[str]:
        """SHA-256 digests of the first ``size`` bytes of ``path`` by blocks (hashlib).

        Raises:
            ConnectorError: If the file cannot be read.
        """
        with mapped("hash", path, location):
            return await in_thread(functools.partial(_digests, path, size, block))

    @contextlib.asynccontextmanager
    async def read_spans(
        self, location: ExecutionLocation, entry: Entry, spans: Sequence[Span]
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream the bytes of ``spans`` of the file ``entry``, one after another.

        Raises:
            ConnectorError: If the file cannot be read or ends before a span does.
        """
        path = entry.path
        with mapped("read", path, location):
            handle = await aiofiles.open(path, "rb")
        try:
            yield _chunks(handle, path, location, spans)
        finally:
            await handle.close()

    async def write_spans(
        self,
        location: ExecutionLocation,
        path: str,
        entry: Entry,
        chunks: AsyncIterable[bytes],
        spans: Sequence[Span],
    ) -> None:
        """Write ``chunks`` at the offsets of ``spans`` (``pwrite``), cut, set mode and mtime.

        Raises:
            ConnectorError: If the file cannot be written, or ``chunks`` do not hold
                exactly the spans' bytes.
        """
        with mapped("write", path, location):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                await _write_spans(fd, chunks, spans, path, location)
                os.ftruncate(fd, entry.size)
            finally:
                os.close(fd)  # no thread writes to it any more: in_thread waits for it
            os.chmod(path, entry.mode)
            os.utime(path, (entry.mtime, entry.mtime))


async def _write_spans(
    fd: int,
    chunks: AsyncIterable[bytes],
    spans: Sequence[Span],
    path: str,
    location: ExecutionLocation,
) -> None:
    """Write the stream ``chunks`` into ``fd``, span after span.

    Raises:
        ConnectorError: If the stream does not hold exactly the spans' bytes.
    """
    places = iter(spans)
    position, left = next(places, (0, 0))
    async for chunk in chunks:
        view = memoryview(chunk)
        while view:
            if not left:
                position, left = next(places, (0, -1))
                if left < 0:
                    raise ConnectorError(
                        f"cannot write {path!r} on {location}: data past its spans"
                    )
                continue
            piece = view[:left]
            await in_thread(functools.partial(_write_at, fd, piece, position))
            position, left, view = position + len(piece), left - len(piece), view[len(piece) :]
    if left or next(places, None) is not None:
        raise ConnectorError(f"cannot write {path!r} on {location}: the data ended early")


def _digests(path: str, size: int, block: int, cancelled: threading.Event) -> list[str]:
    """The digests of the blocks of the first ``size`` bytes (see :meth:`block_digests`)."""
    digests: list[str] = []
    buffer = memoryview(bytearray(min(_CHUNK, block)))
    try:
        file = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed below, read in a loop
    except FileNotFoundError:
        return digests
    with file:
        left = size
        while left > 0 and not cancelled.is_set():
            hasher, want = hashlib.sha256(), min(block, left)
            got = 0
            while got < want and (count := file.readinto(buffer[: min(len(buffer), want - got)])):
                hasher.update(buffer[:count])
                got += count
            if got:
                digests.append(hasher.hexdigest())
            if got < want:
                break
            left -= got
    return digests


def _write_at(fd: int, data: memoryview, position: int, cancelled: threading.Event) -> None:
    """Write all of ``data`` at ``position`` of ``fd``."""
    view = memoryview(data)
    while view and not cancelled.is_set():
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written


async def _chunks(
    handle: AsyncBufferedReader, path: str, location: ExecutionLocation, spans: Sequence[Span]
) -> AsyncIterator[bytes]:
    for offset, length in spans:
        with mapped("read", path, location):
            await handle.seek(offset)
        while length:
            with mapped("read", path, location):
                chunk = await handle.read(min(_CHUNK, length))
            if not chunk:
                raise ConnectorError(f"cannot read {path!r} on {location}: it ends early")
            length -= len(chunk)
            yield chunk

"""Reading a file as ranges over several SSH channels, resumed after a lost connection.

See :mod:`._ranges` for the design. A :class:`_Reader` owns the channels of one read:
the first (opened by the reader itself, so that it can open another) and the spares
(opened in the read's task group, :mod:`._spares`), the requests each has outstanding,
and how far the stream got. A lost connection makes it drop every channel of that
generation (their spare tasks end without checking them), open new ones and ask again
from the first byte not delivered. With ``spans`` (a resumed copy, :mod:`._resume`) it
reads only those, in order; bytes are then counted across the spans.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence

from ..._errors import ConnectorError
from .._base import Entry, Span
from . import _commands as commands
from ._channel import RemoteCommand
from ._pool import HostPool
from ._ranges import (
    LOG,
    READ_BLOCK,
    READ_DEPTH,
    RESUME_DELAY,
    RESUMES,
    after,
    blocks_of,
    resumable,
)
from ._spares import first_error, start_spares

__all__ = ["read_ranges"]

#: The largest piece a split read yields: one SSH packet as it came, never joined.
_PIECE = 256 << 10


class _Reader:
    """The channels, requests and progress of one split read."""

    def __init__(
        self, pool: HostPool, entry: Entry, streams: int, spans: Sequence[Span] | None
    ) -> None:
        self._pool = pool
        self._entry = entry
        self._streams = streams
        self._what = f"read {entry.path!r}"
        self._command = commands.read_ranges(entry.path)
        self._channels: dict[RemoteCommand, int] = {}  # channel -> requests outstanding
        self._asked: deque[tuple[RemoteCommand, int]] = deque()  # (channel, bytes), in order
        self._current: tuple[RemoteCommand, int] | None = None  # block being read, bytes left
        self._spans = [(0, entry.size)] if spans is None else list(spans)  # what to read
        self._total = sum(length for _, length in self._spans)
        self._blocks = deque(blocks_of(self._spans, READ_BLOCK))  # the blocks to ask for
        self._first: contextlib.AsyncExitStack | None = None
        self._first_remote: RemoteCommand | None = None
        self._retired = asyncio.Event()  # set when this generation's channels are dropped
        self.delivered = 0
        self.ended = False

    @property
    def complete(self) -> bool:
        """True once every byte was delivered."""
        return self.delivered >= self._total

    async def open(self, group: asyncio.TaskGroup) -> None:
        """Open the first channel, and start the spares in ``group``.

        Raises:
            ConnectorError: If the first channel cannot be opened.
        """
        stack = contextlib.AsyncExitStack()
        remote = await stack.enter_async_context(
            self._pool.command(self._command, what=self._what, bulk=True)
        )
        self._first, self._first_remote = stack, remote
        self._channels[remote] = 0
        retired = self._retired
        count = self._streams - 1

        async def serve(spare: RemoteCommand) -> None:
            if retired.is_set() or self.ended:
                return
            self._channels[spare] = 0
            await retired.wait()
            if self.complete and self.ended:
                await _end(spare)

        start_spares(group, self._pool, self._command, self._what, count, serve)

    async def close(self) -> None:
        """Close the first channel (checked if the read is complete) and end the spares."""
        self.ended = True
        self._retired.set()
        first, remote, self._first = self._first, self._first_remote, None
        if first is None:
            return
        async with first:
            if self.complete and remote is not None:
                await _end(remote)

    async def chunks(self, group: asyncio.TaskGroup) -> AsyncIterator[bytes]:
        """The file's bytes (its spans'), in order; channels opened again after a lost
        connection."""
        resumes = 0
        while not self.complete:
            try:
                piece = await self._piece()
            except ConnectorError as error:
                if resumes == RESUMES or not resumable(error):
                    raise
                resumes += 1
                LOG.info("resuming the read of %r at byte %d: %s", self._entry.path,
                         self.delivered, error)  # fmt: skip
                await self._restart(group)
                continue
            yield piece

    async def _piece(self) -> bytes:
        """The next piece of the stream (at most one packet).

        Raises:
            ConnectorError: If a channel fails or ends early.
        """
        if self._current is None or not self._current[1]:
            if self._current is not None:
                self._channels[self._current[0]] -= 1
            await self._ask()
            self._current = self._asked.popleft()
        remote, left = self._current
        piece = await remote.read(min(left, _PIECE))
        if not piece:
            await remote.finish()  # raises, with the host's reason
            raise self._pool.error(f"cannot read {self._entry.path!r}: it ended early")
        self._current = (remote, left - len(piece))
        self.delivered += len(piece)
        return piece

    async def _ask(self) -> None:
        """Ask for blocks until every channel has :data:`READ_DEPTH` outstanding."""
        while self._blocks:
            remote = min(self._channels, key=self._channels.__getitem__)
            if self._channels[remote] >= READ_DEPTH:
                return
            offset, length = self._blocks.popleft()
            await remote.write(b"%d %d\n" % (offset, length))
            self._channels[remote] += 1
            self._asked.append((remote, length))

    async def _restart(self, group: asyncio.TaskGroup) -> None:
        """Drop this generation's channels; open new ones; ask from the first byte missing."""
        self._retired.set()
        self._retired = asyncio.Event()
        first, self._first = self._first, None
        if first is not None:
            await first.aclose()
        self._channels.clear()
        self._asked.clear()
        self._current = None
        self._blocks = deque(blocks_of(after(self._spans, self.delivered), READ_BLOCK))
        await asyncio.sleep(RESUME_DELAY)
        await self.open(group)


async def _end(remote: RemoteCommand) -> None:
    """Close the input of a read channel whose blocks were all delivered; check it."""
    remote.write_eof()
    await remote.finish()


@contextlib.asynccontextmanager
async def read_ranges(
    pool: HostPool, entry: Entry, streams: int, spans: Sequence[Span] | None = None
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream the file ``entry`` (only ``spans`` of it if given) over up to ``streams``
    channels.

    Raises:
        ConnectorError: If a channel fails (a lost connection more than
            :data:`~._ranges.RESUMES` times), or the file no longer holds
            ``entry.size`` bytes.
    """
    reader = _Reader(pool, entry, streams, spans)
    try:
        async with asyncio.TaskGroup() as group:
            try:
                await reader.open(group)
                yield reader.chunks(group)
            finally:
                await reader.close()
    except BaseExceptionGroup as failed:
        error = first_error(failed)
        raise error from error.__cause__

"""A large file over several SSH channels at once, as ranges of one remote file.

Used when one channel's window caps the transfer (a far host, :mod:`._parallel`); the
first channel opens like any command, the others in the background on free slots
(:mod:`._spares`), so data flows from the first round trip.

**Writing** (:func:`write_ranges`) keeps the source a sequential stream: it is cut into
blocks of about :data:`WRITE_BLOCK` bytes, queued in file order (a queue of
:data:`_QUEUED` blocks), and each channel takes the next block once SSH has sent nearly
all of its last one (its send buffer's low-water mark): it never runs dry, holds one
block at most, and the channels finish together. Each channel runs one remote loop
(:func:`._commands.write_blocks`) that writes each block it receives into the file at
its offset with ``dd`` and acknowledges it. The first channel's command
(:func:`._commands.write_ranges`) also finishes the file: its input is closed last,
once every other channel has exited (all blocks are written), and it then sets the
mode and mtime. The engine checks and renames the file as after any write; a failure
anywhere fails the write, the other channels are cancelled, and the engine removes the
temporary file.

**Reading** (:func:`read_ranges`) requests blocks of :data:`READ_BLOCK` bytes in file
order, each from the channel with the fewest requests outstanding (at most
:data:`READ_DEPTH` each, which bounds the memory held whatever the consumer's pace), and
yields each block's bytes in order from its channel. The entry's size says how much to
read; a block the file no longer holds (it shrank) fails the read
(:func:`._commands.read_ranges`).

**Resuming** (designed for, not done yet): blocks are taken in file order and each
channel writes the blocks it took in that order, acknowledging each once written. The
:class:`Ledger` of a write records the acknowledged blocks; :attr:`Ledger.high_water`
is the end of the longest prefix of the file known to be written, whatever channel
failed. A resumed transfer keeps that prefix (after comparing its hash on both sides),
and sends the rest from there, into the same temporary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator

from .._base import Entry
from . import _commands as commands
from ._channel import RemoteCommand
from ._pool import HostPool
from ._spares import first_error, start_spares

__all__ = [
    "READ_BLOCK",
    "READ_DEPTH",
    "READ_WINDOW",
    "WRITE_BLOCK",
    "Ledger",
    "read_ranges",
    "write_ranges",
]

#: Bytes per block written (a ``dd`` on the host each; about one server window).
WRITE_BLOCK = 2 << 20
#: Bytes per block read.
READ_BLOCK = 4 << 20
#: Read requests outstanding per channel at most: with :data:`READ_BLOCK`, what one
#: channel may have in flight (:data:`READ_WINDOW`), below the client's SSH window.
READ_DEPTH = 3
#: The most one read channel has in flight: its cap is this much per round trip.
READ_WINDOW = READ_BLOCK * READ_DEPTH
#: The largest piece a split read yields: one SSH packet as it came, never joined.
_PIECE = 256 << 10
#: Blocks waiting for a channel to take them (beyond the one each channel is sending).
_QUEUED = 2

_Block = tuple[int, int, list[bytes]] | None  # (offset, size, parts), or None: the end


class Ledger:
    """What a split write is known to have written: the blocks its channels acknowledged."""

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}  # offset -> end, sent but not acknowledged
        self._done: dict[int, int] = {}  # offset -> end, acknowledged past the high water
        #: The end of the longest prefix of the file known to be written.
        self.high_water = 0

    def sent(self, offset: int, length: int) -> None:
        """A block was handed to a channel."""
        self._sent[offset] = offset + length

    def acknowledge(self, offset: int) -> None:
        """The host wrote the block at ``offset``."""
        self._done[offset] = self._sent.pop(offset)
        while self.high_water in self._done:
            self.high_water = self._done.pop(self.high_water)


async def write_ranges(
    pool: HostPool, path: str, entry: Entry, chunks: AsyncIterable[bytes], streams: int
) -> Ledger:
    """Write the stream ``chunks`` to the new file ``path`` over up to ``streams`` channels.

    Returns:
        The ledger of the blocks written (all of them, on success).

    Raises:
        ConnectorError: If a channel fails or a ``dd`` on the host does.
    """
    what = f"write {path!r}"
    queue: asyncio.Queue[_Block] = asyncio.Queue(_QUEUED)
    ledger = Ledger()
    command = commands.write_ranges(path, entry.mode, entry.mtime)
    try:
        first_command = pool.command(command, what=what, bulk=True)
        async with first_command as first, asyncio.TaskGroup() as outer:
            outer.create_task(_acknowledge(pool, first, ledger))
            async with asyncio.TaskGroup() as group:
                group.create_task(_deal(chunks, queue))
                group.create_task(_send(first, queue, ledger))

                async def serve(remote: RemoteCommand) -> None:
                    async with asyncio.TaskGroup() as own:
                        own.create_task(_acknowledge(pool, remote, ledger))
                        await _send(remote, queue, ledger)
                        remote.write_eof()

                spare = commands.write_blocks(path)
                start_spares(group, pool, spare, what, streams - 1, serve)
            first.write_eof()  # every other channel has exited: the last step may run
    except BaseExceptionGroup as failed:
        error = first_error(failed)
        raise error from error.__cause__
    return ledger


async def _deal(chunks: AsyncIterable[bytes], queue: asyncio.Queue[_Block]) -> None:
    """Cut the stream into blocks of about :data:`WRITE_BLOCK` bytes, queued in order.

    A block is the list of the chunks it is made of (not joined: SSH copies them anyway).
    """
    offset, parts, size = 0, list[bytes](), 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size >= WRITE_BLOCK:
            await queue.put((offset, size, parts))
            offset, parts, size = offset + size, [], 0
    if parts:
        await queue.put((offset, size, parts))
    await queue.put(None)


async def _send(remote: RemoteCommand, queue: asyncio.Queue[_Block], ledger: Ledger) -> None:
    """Send blocks from ``queue`` on ``remote`` until the end, which is passed on."""
    while (block := await queue.get()) is not None:
        offset, size, parts = block
        ledger.sent(offset, size)
        await remote.write(b"%d %d\n" % (offset, size))
        for part in parts:
            await remote.write(part)
    queue.put_nowait(None)  # for the next channel: there is room, this one took the end


async def _acknowledge(pool: HostPool, remote: RemoteCommand, ledger: Ledger) -> None:
    """Record the host's acknowledgements until the command ends; check its status.

    Raises:
        ConnectorError: If the command fails or acknowledges a block it was not sent.
    """
    pending = b""
    while chunk := await remote.read():
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            try:
                ledger.acknowledge(int(line))
            except (ValueError, KeyError) as exc:
                raise pool.error(f"unexpected acknowledgement {line[:40]!r}", exc) from exc
    await remote.finish()


class _Requests:
    """The blocks of a split read: asked in file order, delivered in file order."""

    def __init__(self, pool: HostPool, entry: Entry) -> None:
        self._pool = pool
        self._entry = entry
        self._channels: dict[RemoteCommand, int] = {}  # channel -> requests outstanding
        self._asked: deque[tuple[RemoteCommand, int]] = deque()
        self._next = 0  # offset of the next block to ask for
        self.delivered = 0
        self.ended = asyncio.Event()

    def add(self, remote: RemoteCommand) -> None:
        """A channel is ready to take requests."""
        self._channels[remote] = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, in order."""
        size = self._entry.size
        while self.delivered < size:
            await self._ask()
            remote, length = self._asked.popleft()
            while length:
                piece = await remote.read(min(length, _PIECE))
                if not piece:
                    await remote.finish()  # raises, with the host's reason
                    raise self._pool.error(f"cannot read {self._entry.path!r}: it ended early")
                length -= len(piece)
                self.delivered += len(piece)
                yield piece
            self._channels[remote] -= 1

    async def _ask(self) -> None:
        """Ask for blocks until every channel has :data:`READ_DEPTH` outstanding."""
        size = self._entry.size
        while self._next < size:
            remote = min(self._channels, key=self._channels.__getitem__)
            if self._channels[remote] >= READ_DEPTH:
                return
            length = min(READ_BLOCK, size - self._next)
            await remote.write(b"%d %d\n" % (self._next, length))
            self._channels[remote] += 1
            self._asked.append((remote, length))
            self._next += length

    @property
    def complete(self) -> bool:
        """True once every byte was delivered."""
        return self.delivered >= self._entry.size


async def _end(remote: RemoteCommand) -> None:
    """Close the input of a read channel whose blocks were all delivered; check it."""
    remote.write_eof()
    await remote.finish()


@contextlib.asynccontextmanager
async def read_ranges(
    pool: HostPool, entry: Entry, streams: int
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream the file ``entry`` over up to ``streams`` channels.

    Raises:
        ConnectorError: If a channel fails, or the file no longer holds ``entry.size``
            bytes.
    """
    what = f"read {entry.path!r}"
    command = commands.read_ranges(entry.path)
    requests = _Requests(pool, entry)

    async def serve(remote: RemoteCommand) -> None:
        if requests.ended.is_set():
            return
        requests.add(remote)
        await requests.ended.wait()
        if requests.complete:
            await _end(remote)

    try:
        async with pool.command(command, what=what, bulk=True) as first:
            requests.add(first)
            async with asyncio.TaskGroup() as group:
                start_spares(group, pool, command, what, streams - 1, serve)
                try:
                    yield requests.chunks()
                finally:
                    requests.ended.set()
                if requests.complete:  # every channel's input is closed at once
                    group.create_task(_end(first))
    except BaseExceptionGroup as failed:
        error = first_error(failed)
        raise error from error.__cause__

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

**Resuming**: blocks are taken in file order and each channel writes the blocks it
took in that order, acknowledging each once written. The :class:`Ledger` of a write
records the acknowledged blocks; :attr:`Ledger.high_water` is the end of the longest
prefix of the file known to be written, whatever channel failed. But a channel that
starts late (a slow login shell) leaves gaps far behind the others' blocks, so a
resumed copy (:mod:`._resume`) does not trust a prefix: it compares every block of the
temporary with the source's by their digests and sends only the *spans* that differ,
and the rest: both functions take ``spans``, the (offset, length) pieces of the file
to move, in order (a write into an existing file, then cut to the entry's size).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence

from .._base import Entry, Span
from . import _commands as commands
from ._channel import RemoteCommand
from ._pool import HostPool
from ._spares import first_error, start_spares

__all__ = [
    "READ_BLOCK",
    "READ_DEPTH",
    "WRITE_BLOCK",
    "Ledger",
    "blocks_of",
    "read_ranges",
    "write_ranges",
]

#: Bytes per block written (a ``dd`` on the host each; about one server window).
WRITE_BLOCK = 2 << 20
#: Bytes per block read.
READ_BLOCK = 8 << 20
#: Read requests outstanding per channel at most.
READ_DEPTH = 2
#: Blocks waiting for a channel to take them (beyond the one each channel is sending).
_QUEUED = 2

_Block = tuple[int, bytes] | None  # (offset, data), or None: no more blocks


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
    pool: HostPool,
    path: str,
    entry: Entry,
    chunks: AsyncIterable[bytes],
    streams: int,
    spans: Sequence[Span] | None = None,
) -> Ledger:
    """Write the stream ``chunks`` to the new file ``path`` over up to ``streams`` channels.

    With ``spans``, the file exists and ``chunks`` are the bytes of those spans, in
    order; the file is then cut to the entry's size.

    Returns:
        The ledger of the blocks written (all of them, on success).

    Raises:
        ConnectorError: If a channel fails or a ``dd`` on the host does.
    """
    what = f"write {path!r}"
    queue: asyncio.Queue[_Block] = asyncio.Queue(_QUEUED)
    ledger = Ledger()
    size = None if spans is None else entry.size
    command = commands.write_ranges(path, entry.mode, entry.mtime, size)
    deal = _deal(chunks, queue) if spans is None else _deal_spans(pool, chunks, queue, spans)
    try:
        first_command = pool.command(command, what=what, bulk=True)
        async with first_command as first, asyncio.TaskGroup() as outer:
            outer.create_task(_acknowledge(pool, first, ledger))
            async with asyncio.TaskGroup() as group:
                group.create_task(deal)
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
    """Cut the stream into blocks of about :data:`WRITE_BLOCK` bytes, queued in order."""
    offset, parts, size = 0, list[bytes](), 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size >= WRITE_BLOCK:
            await queue.put((offset, b"".join(parts)))
            offset, parts, size = offset + size, [], 0
    if parts:
        await queue.put((offset, b"".join(parts)))
    await queue.put(None)


async def _deal_spans(
    pool: HostPool,
    chunks: AsyncIterable[bytes],
    queue: asyncio.Queue[_Block],
    spans: Sequence[Span],
) -> None:
    """Cut the stream into the blocks of ``spans`` (:func:`blocks_of`), queued in order.

    Raises:
        ConnectorError: If the stream does not hold exactly the spans' bytes.
    """
    blocks = deque(blocks_of(spans, WRITE_BLOCK))
    held = bytearray()
    async for chunk in chunks:
        held += chunk
        while blocks and len(held) >= blocks[0][1]:
            offset, length = blocks.popleft()
            await queue.put((offset, bytes(held[:length])))
            del held[:length]
        if held and not blocks:
            break
    if blocks or held:
        raise pool.error("the data to write does not match its spans")
    await queue.put(None)


def blocks_of(spans: Sequence[Span], block: int) -> Iterator[Span]:
    """The spans cut into blocks of at most ``block`` bytes, in order."""
    for offset, length in spans:
        for start in range(offset, offset + length, block):
            yield start, min(block, offset + length - start)


async def _send(remote: RemoteCommand, queue: asyncio.Queue[_Block], ledger: Ledger) -> None:
    """Send blocks from ``queue`` on ``remote`` until the end, which is passed on."""
    while (block := await queue.get()) is not None:
        offset, data = block
        ledger.sent(offset, len(data))
        await remote.write(b"%d %d\n" % (offset, len(data)))
        await remote.write(data)
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

    def __init__(self, pool: HostPool, entry: Entry, spans: Sequence[Span] | None) -> None:
        self._pool = pool
        self._entry = entry
        self._channels: dict[RemoteCommand, int] = {}  # channel -> requests outstanding
        self._asked: deque[tuple[RemoteCommand, int]] = deque()
        spans = [(0, entry.size)] if spans is None else spans
        self._blocks = deque(blocks_of(spans, READ_BLOCK))  # the blocks to ask for
        self._total = sum(length for _, length in spans)
        self.delivered = 0
        self.ended = asyncio.Event()

    def add(self, remote: RemoteCommand) -> None:
        """A channel is ready to take requests."""
        self._channels[remote] = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes (those of its spans), in order."""
        while self.delivered < self._total:
            await self._ask()
            remote, length = self._asked.popleft()
            while length:
                piece = await remote.read(length)
                if not piece:
                    await remote.finish()  # raises, with the host's reason
                    raise self._pool.error(f"cannot read {self._entry.path!r}: it ended early")
                length -= len(piece)
                self.delivered += len(piece)
                yield piece
            self._channels[remote] -= 1

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

    @property
    def complete(self) -> bool:
        """True once every byte was delivered."""
        return self.delivered >= self._total


async def _end(remote: RemoteCommand) -> None:
    """Close the input of a read channel whose blocks were all delivered; check it."""
    remote.write_eof()
    await remote.finish()


@contextlib.asynccontextmanager
async def read_ranges(
    pool: HostPool, entry: Entry, streams: int, spans: Sequence[Span] | None = None
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream the file ``entry`` (only ``spans`` of it if given) over up to ``streams`` channels.

    Raises:
        ConnectorError: If a channel fails, or the file no longer holds ``entry.size``
            bytes.
    """
    what = f"read {entry.path!r}"
    command = commands.read_ranges(entry.path)
    requests = _Requests(pool, entry, spans)

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

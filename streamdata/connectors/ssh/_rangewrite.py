"""Writing a file as ranges over several SSH channels, resumed after a lost connection.

See :mod:`._ranges` for the design. :class:`_Blocks` owns the blocks between the
dealer (which cuts the source stream) and the channels: queued, out on a channel, or
acknowledged. An attempt opens the channels and sends blocks until the end; if it
fails for a lost connection, the blocks still out are queued again, ahead of the rest,
and a new attempt starts, while the dealer keeps its place in the source. With
``spans`` (a resumed copy, :mod:`._resume`) the dealer cuts the source into the blocks
of those spans, and the first channel's command cuts the file to the entry's size.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Sequence

from .._base import Entry, Span
from . import _commands as commands
from ._channel import RemoteCommand
from ._pool import HostPool
from ._ranges import LOG, RESUME_DELAY, RESUMES, WRITE_BLOCK, Ledger, blocks_of, resumable
from ._spares import first_error, start_spares

__all__ = ["write_ranges"]

#: Blocks waiting for a channel to take them (beyond the one each channel is sending).
_QUEUED = 2

_Block = tuple[int, int, list[bytes]] | None  # (offset, size, parts), or None: the end


class _Blocks:
    """The blocks of one split write: queued, out on a channel, acknowledged."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[_Block] = asyncio.Queue(_QUEUED)
        self.ledger = Ledger()
        self._again: deque[_Block] = deque()  # out when a connection was lost
        self._out: dict[int, tuple[int, list[bytes]]] = {}  # offset -> (size, parts)

    async def next(self) -> _Block:
        """The next block to send: one to send again first, then the dealer's."""
        return self._again.popleft() if self._again else await self.queue.get()

    def sent(self, offset: int, size: int, parts: list[bytes]) -> None:
        """A block was handed to a channel: it is kept until acknowledged."""
        self._out[offset] = (size, parts)
        self.ledger.sent(offset, size)

    def acknowledge(self, offset: int) -> None:
        """The host wrote the block at ``offset``.

        Raises:
            KeyError: If no block at ``offset`` is out.
        """
        self.ledger.acknowledge(offset)
        del self._out[offset]

    def send_again(self) -> int:
        """Queue every block still out again, in file order; return their bytes."""
        blocks = sorted(self._out.items())
        self._out.clear()
        self._again.extend((offset, size, parts) for offset, (size, parts) in blocks)
        return sum(size for _, (size, _) in blocks)


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
        ConnectorError: If a channel or a ``dd`` on the host fails, or the connection is
            lost more than :data:`~._ranges.RESUMES` times, or ``chunks`` do not hold
            exactly the bytes of ``spans``.
    """
    blocks = _Blocks()
    size = None if spans is None else entry.size
    command = commands.write_ranges(path, entry.mode, entry.mtime, size)
    deal = (
        _deal(chunks, blocks.queue) if spans is None else _deal_spans(pool, chunks, blocks, spans)
    )
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(deal)
            for attempt in range(RESUMES + 1):
                try:
                    await _attempt(pool, path, command, blocks, streams)
                    break
                except BaseExceptionGroup as failed:
                    error = first_error(failed)
                    if attempt == RESUMES or not resumable(error):
                        raise
                    again = blocks.send_again()
                    LOG.info("resuming the write of %r (%d bytes again): %s", path, again, error)
                    await asyncio.sleep(RESUME_DELAY)
    except BaseExceptionGroup as failed:
        error = first_error(failed)
        raise error from error.__cause__
    return blocks.ledger


async def _attempt(pool: HostPool, path: str, command: str, blocks: _Blocks, streams: int) -> None:
    """Open the channels and send every block; the first channel runs ``command``, which
    finishes the file."""
    what = f"write {path!r}"
    first_command = pool.command(command, what=what, bulk=True)
    async with first_command as first, asyncio.TaskGroup() as outer:
        outer.create_task(_acknowledge(pool, first, blocks))
        async with asyncio.TaskGroup() as group:
            group.create_task(_send(first, blocks))

            async def serve(remote: RemoteCommand) -> None:
                async with asyncio.TaskGroup() as own:
                    own.create_task(_acknowledge(pool, remote, blocks))
                    await _send(remote, blocks)
                    remote.write_eof()

            start_spares(group, pool, commands.write_blocks(path), what, streams - 1, serve)
        first.write_eof()  # every other channel has exited: the last step may run


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


async def _deal_spans(
    pool: HostPool, chunks: AsyncIterable[bytes], blocks: _Blocks, spans: Sequence[Span]
) -> None:
    """Cut the stream into the blocks of ``spans`` (:func:`~._ranges.blocks_of`), queued.

    Raises:
        ConnectorError: If the stream does not hold exactly the spans' bytes.
    """
    wanted = deque(blocks_of(spans, WRITE_BLOCK))
    held = bytearray()
    async for chunk in chunks:
        held += chunk
        while wanted and len(held) >= wanted[0][1]:
            offset, length = wanted.popleft()
            await blocks.queue.put((offset, length, [bytes(held[:length])]))
            del held[:length]
        if held and not wanted:
            break
    if wanted or held:
        raise pool.error("the data to write does not match its spans")
    await blocks.queue.put(None)


async def _send(remote: RemoteCommand, blocks: _Blocks) -> None:
    """Send blocks on ``remote`` until the end, which is passed on to the next channel."""
    while (block := await blocks.next()) is not None:
        offset, size, parts = block
        blocks.sent(offset, size, parts)
        await remote.write(b"%d %d\n" % (offset, size))
        for part in parts:
            await remote.write(part)
    blocks.queue.put_nowait(None)  # there is room: this channel took the end from it


async def _acknowledge(pool: HostPool, remote: RemoteCommand, blocks: _Blocks) -> None:
    """Record the host's acknowledgements until the command ends; check its status.

    Raises:
        ConnectorError: If the command fails or acknowledges a block it was not sent.
    """
    pending = b""
    while chunk := await remote.read():
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            try:
                blocks.acknowledge(int(line))
            except (ValueError, KeyError) as exc:
                raise pool.error(f"unexpected acknowledgement {line[:40]!r}", exc) from exc
    await remote.finish()

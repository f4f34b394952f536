"""Resuming a file copy from what its temporary file already holds.

A copy that broke on a transient error (a dropped connection), or a temporary file a
process that died left for the same destination (journalled in a durable catalog: the
engine adopts it, :mod:`.plan`), need not start again from zero when both ends can
resume (:meth:`~streamdata.connectors.Connector.can_resume`) and the file is big enough
to be worth it (:data:`RESUME_MIN`):

1. the temporary's size bounds what arrived; that many first bytes are hashed by blocks
   of :data:`BLOCK` (SHA-256) on both sides at once, each side where its file is, so
   only digests cross a network. Every block that differs is sent again, and all that
   lies beyond the temporary's end: a write over several channels may have left gaps
   behind the blocks other channels wrote, so the kept part need not be one prefix;
2. those spans are read from the source and written into the temporary at their
   offsets (:meth:`~streamdata.connectors.Connector.read_spans`,
   :meth:`~streamdata.connectors.Connector.write_spans`), which is cut to the source's
   size and given its mode and mtime;
3. the temporary must then hold exactly the source's size, else the destination fails;
   it is verified (if asked) and renamed like any copy (:mod:`.move`).

Nothing kept, or no digests to compare (a host without GNU ``split``; but a connection
still down fails the copy): the temporary is removed and the caller copies the file from
zero. The
digest recorded for the copy is of the whole file when an end of the copy is local (its
file is read once more here, one XXH3 pass), else None, as for a copy nothing streamed
through (a later ``check`` or ``verify`` reads it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TypeVar

from .._errors import ConnectorError, StreamDataError, TransferError
from .._integrity import digest_of
from ..connectors._base import Entry, EntryKind, Span
from .transfer import Endpoint, remove_quietly

__all__ = ["BLOCK", "RESUME_MIN", "Resumed", "missing_spans", "resumable", "resume_copy"]

#: Files smaller than this are copied again whole: a resume costs a few round trips.
RESUME_MIN = 8 << 20
#: Bytes per block compared (at least; see :func:`block_size`): a block that differs is
#: sent again whole. One write block of a split write (:mod:`..connectors.ssh._ranges`).
BLOCK = 2 << 20
#: Blocks compared at most (each costs a small process on an SSH host).
MAX_BLOCKS = 1024

logger = logging.getLogger("streamdata")

#: Told the bytes sent (see :func:`.transfer.copy_to_all`).
OnProgress = Callable[[int, int | None], None]
#: Told each error of the source's side of a resumed copy.
OnSourceError = Callable[[BaseException], None]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Resumed:
    """How a resumed copy ended.

    Attributes:
        error: None if the temporary now holds the whole file, else why not.
        digest: The whole file's XXH3-128 digest, when it could be computed here.
        kept: Bytes kept from the temporary.
    """

    error: BaseException | None
    digest: str | None
    kept: int


def resumable(source: Endpoint, target: Endpoint, entry: Entry) -> bool:
    """True when a broken copy of ``entry`` to ``target`` is resumed rather than redone.

    Only files of at least :data:`RESUME_MIN` bytes streamed between two filesystems
    whose connectors can both resume.
    """
    return (
        entry.kind is EntryKind.FILE
        and entry.size >= RESUME_MIN
        and target.filesystem != source.filesystem
        and source.connector.can_resume(source.location)
        and target.connector.can_resume(target.location)
    )


async def resume_copy(
    source: Endpoint,
    entry: Entry,
    target: Endpoint,
    on_progress: OnProgress,
    *,
    report: bool,
    on_source_error: OnSourceError = lambda error: None,
) -> Resumed | None:
    """Complete the temporary ``target`` from what it holds (see the module docstring).

    ``report``: tell ``on_progress`` about the kept bytes too (they were not counted in
    this process yet). ``on_source_error`` is told each error of the source's side (its
    digests, its read, its digest afterwards), so that a copy its source failed can go
    on from another replica (:mod:`.failover`) rather than fail.

    Returns:
        None when nothing could be kept (the temporary is removed: copy from zero),
        else how the copy ended.
    """
    try:
        try:
            spans = await missing_spans(source, entry, target, on_source_error)
        except StreamDataError as exc:
            if isinstance(exc, ConnectorError) and exc.transient:
                raise  # still unreachable
            logger.info("cannot resume %r (%s): copying it from zero", target.path, exc)
            spans = [(0, entry.size)]  # e.g. a host without GNU split
        kept = entry.size - sum(length for _, length in spans)
        if kept == 0:
            if await remove_quietly(target):
                return None
            raise TransferError(f"cannot remove {target.path!r} on {target.location}")
        if report:
            on_progress(kept, 0)
        await _send(source, entry, target, spans, on_progress, on_source_error)
        await _check_size(target, entry.size)
        digest = await _local_digest(source, target, entry, on_source_error)
    except StreamDataError as exc:
        return Resumed(exc, None, 0)
    return Resumed(None, digest, kept)


async def missing_spans(
    source: Endpoint,
    entry: Entry,
    target: Endpoint,
    on_source_error: OnSourceError = lambda error: None,
) -> list[Span]:
    """The spans of the file the temporary ``target`` lacks (block digests compared).

    ``on_source_error`` is told if the source's digests fail.

    Raises:
        StreamDataError: If either side cannot be examined.
    """
    found = await target.connector.stat(target.location, target.path)
    held = 0 if found is None or found.kind is not EntryKind.FILE else min(found.size, entry.size)
    spans: list[Span] = []
    if held:
        block = block_size(held)
        theirs, ours = await _both(
            _reported(
                source.connector.block_digests(source.location, source.path, held, block),
                on_source_error,
            ),
            target.connector.block_digests(target.location, target.path, held, block),
        )
        for index, offset in enumerate(range(0, held, block)):
            same = index < len(ours) and index < len(theirs) and ours[index] == theirs[index]
            if not same:
                _add(spans, offset, min(block, held - offset))
    if held < entry.size:
        _add(spans, held, entry.size - held)
    return spans


def block_size(size: int) -> int:
    """The block by which ``size`` bytes are compared: :data:`BLOCK`, or more (whole MiB)
    to keep to :data:`MAX_BLOCKS` blocks."""
    mib = 1 << 20
    return max(BLOCK, -(-size // MAX_BLOCKS // mib) * mib)


def _add(spans: list[Span], offset: int, length: int) -> None:
    """Append a span, joined to the last one if they touch."""
    if spans and sum(spans[-1]) == offset:
        spans[-1] = (spans[-1][0], spans[-1][1] + length)
    else:
        spans.append((offset, length))


async def _both(
    first: Coroutine[None, None, list[str]], second: Coroutine[None, None, list[str]]
) -> tuple[list[str], list[str]]:
    """Await both at once; the first :class:`StreamDataError` if either fails.

    Raises:
        StreamDataError: What failed first.
    """
    try:
        async with asyncio.TaskGroup() as group:
            one, two = group.create_task(first), group.create_task(second)
    except BaseExceptionGroup as failed:
        error = next((e for e in failed.exceptions if isinstance(e, StreamDataError)), None)
        if error is None:
            raise
        raise error from error.__cause__
    return one.result(), two.result()


async def _send(
    source: Endpoint,
    entry: Entry,
    target: Endpoint,
    spans: list[Span],
    on_progress: OnProgress,
    on_source_error: OnSourceError,
) -> None:
    """Send the ``spans`` of the source into the temporary (just cut and stamp it if none).

    ``on_source_error`` is told what the source's read raised (opening it, a chunk, or
    closing it), not what the write raised.

    Raises:
        StreamDataError: If reading or writing fails.
    """

    async def counted(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                on_progress(len(chunk), 0)
                yield chunk
        except StreamDataError as exc:
            on_source_error(exc)
            raise

    write = target.connector.write_spans
    if not spans:
        await write(target.location, target.path, entry, _nothing(), spans)
        return
    written: BaseException | None = None  # what the write raised: not the source's
    try:
        async with source.connector.read_spans(source.location, entry, spans) as chunks:
            try:
                await write(target.location, target.path, entry, counted(chunks), spans)
            except BaseException as exc:
                written = exc
                raise
    except StreamDataError as exc:
        if exc is not written:
            on_source_error(exc)
        raise


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


async def _check_size(target: Endpoint, expected: int) -> None:
    """Fail unless the temporary holds exactly ``expected`` bytes.

    Raises:
        TransferError: If it does not.
        StreamDataError: If it cannot be examined.
    """
    found = await target.connector.stat(target.location, target.path)
    held = None if found is None else found.size
    if held != expected:
        raise TransferError(
            f"the resumed copy {target.path!r} on {target.location} holds {held} bytes, "
            f"not {expected}"
        )


async def _local_digest(
    source: Endpoint, target: Endpoint, entry: Entry, on_source_error: OnSourceError
) -> str | None:
    """The XXH3-128 digest of the copy, read at its local end (None: neither is local).

    ``on_source_error`` is told if that end is the source and reading it fails.

    Raises:
        StreamDataError: If the file cannot be read.
    """
    if source.connector.is_local:
        digest = digest_of(source.connector, source.location, source.path, entry.size)
        return await _reported(digest, on_source_error)
    if not target.connector.is_local:
        return None
    return await digest_of(target.connector, target.location, target.path, entry.size)


async def _reported(work: Awaitable[_T], on_source_error: OnSourceError) -> _T:
    """Await ``work`` (the source's), telling ``on_source_error`` what it raises.

    Raises:
        StreamDataError: What ``work`` raised.
    """
    try:
        return await work
    except StreamDataError as exc:
        on_source_error(exc)
        raise

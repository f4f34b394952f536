"""Unpacking a tar stream on an SSH host, with more ``tar -x`` at once where one is slow.

Most trees unpack fastest through one ``tar -x``: on this project's machine 10,000 files
of 4 KiB reach a tmpfs through one in 0.6-0.75 s and through four in 1.3 s, since every
channel starts a login shell and four ``tar`` share two cores. Where creating files is
slow (a busy disk, a network filesystem, here ext4 without a journal after many
deletions: 0.5-1 ms per file) four get through more, about 1.5x as many files a second
as one ``tar | ssh tar`` (case (b) on the disk in benchmarks/RESULTS.md).

So a tree whose first MiB holds at least :data:`PARALLEL_FILES` files goes through a
:class:`~.._tar.split.TarSplitter` with one worker, and the time spent waiting for that
``tar`` to take more is watched. Once it has waited :data:`SPLIT_AFTER` seconds, if it
took under :data:`SLOW_FILES` files a second while it was behind, up to
:data:`WORKERS` - 1 more ``tar`` are started on channels free right now, and the rest of
the stream is cut between them all. A last ``tar -x`` then gives directories their modes
and mtimes and makes hard links (:attr:`~.._tar.split.TarSplitter.needs_last_pass`).
Smaller trees, and few big files, go through one plain ``tar``. Either way the exit
status of every ``tar`` is checked.

Waiting for the SSH window cannot tell a slow ``tar`` from a slow network: on a link
slower than the ``tar``, small files also get the extra ``tar`` (three more channels and a
last pass, which do not help there but cost little next to the link's own time).

A far host is told apart up front, by its round-trip time (:mod:`._parallel`): there one
channel's window (2 MiB per round trip) is the cap, whatever the files, so any tree
bigger than the first MiB is split from its first member over as many ``tar`` as the
round trip calls for (one channel less than a file gets), each joining as soon as its
channel is open; each member goes to the channel with the fewest bytes waiting for its
window (not the fewest routed: a channel that joined late, or whose window comes back
slower, would hold back the others); the channel of the last pass opens while the
workers end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterable, AsyncIterator

from .._tar.count import TarFileCounter
from .._tar.split import END, EVERY, TarSplitter
from . import _commands as commands
from ._asyncssh import asyncssh
from ._channel import RemoteCommand
from ._parallel import SERVER_WINDOW, stream_count
from ._pool import HostPool
from ._spares import first_error, start_spares

__all__ = [
    "PARALLEL_FILES",
    "SLOW_FILES",
    "SPLIT_AFTER",
    "WORKERS",
    "Backlog",
    "peek",
    "pipe",
    "unpack_tree",
]

#: ``tar -x`` processes at most for one tree (plus the last pass); fewer when the host has
#: fewer channels free when they are wanted.
WORKERS = 4
#: Files within the first :data:`_PEEK_BYTES` of the stream that make it "many files".
PARALLEL_FILES = 32
#: Seconds spent waiting for the one ``tar`` to take more before deciding whether it is
#: slow (taking under :data:`SLOW_FILES` files per second), and more are started.
SPLIT_AFTER = 0.3
#: Files per second below which one ``tar`` counts as slow.
SLOW_FILES = 5000.0
_WAIT = 0.001  # a write taking longer waited for the remote side
#: Bytes a worker of a wide unpack may hold unsent before a write to it waits: the
#: splitter deals members evenly, so the others keep sending meanwhile.
_SEND_BUFFER = 4 << 20
_PEEK_BYTES = 1 << 20
#: ``tar -x`` at most for a far host's tree (one channel is left for the last pass):
#: the five the WAN benchmark's tree cases were measured with, not a file's
#: :data:`~._parallel.MAX_STREAMS` (each ``tar`` costs a start and CPU on the host).
_WIDE = 5


async def unpack_tree(pool: HostPool, path: str, chunks: AsyncIterable[bytes]) -> None:
    """Create the new directory ``path`` and unpack the tar stream ``chunks`` into it.

    Raises:
        ConnectorError: If ``path`` exists, or a ``tar`` fails or the stream is broken.
    """
    what = f"unpack into {path!r}"
    iterator = aiter(chunks)
    head, ended = await peek(iterator, _PEEK_BYTES)
    counter = TarFileCounter()
    # one channel less than a file would get: the last pass opens on it meanwhile
    streams = min(stream_count(sys.maxsize, 1, SERVER_WINDOW, pool.round_trips.best), _WIDE)
    if not ended and streams > 1:
        await _unpack_wide(pool, path, _chunks(head, iterator), streams)
        return
    if ended or sum(counter.feed(chunk) for chunk in head) < PARALLEL_FILES:
        await pipe(pool, commands.unpack(path), what, head, iterator)
        return
    await _make_directory(pool, path)
    extract = commands.extract(path)
    splitter = TarSplitter(WORKERS, active=1)
    async with contextlib.AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(pool.command(extract, what=what, bulk=True))]
        try:
            await _split(pool, stack, splitter, workers, _chunks(head, iterator), extract, what)
            splitter.close()
        except ValueError as exc:
            raise pool.error(f"cannot unpack into {path!r}", exc) from exc
        await _end_workers(workers)
    if splitter.needs_last_pass:  # opened once the workers' channels are free again
        await pool.run(extract, what=what, data=bytes(splitter.deferred) + END, bulk=True)


async def _make_directory(pool: HostPool, path: str) -> None:
    mode = asyncssh.SFTPAttrs(permissions=0o700)
    await pool.sftp(lambda c: c.mkdir(path, mode), what=f"create {path!r}")


async def _unpack_wide(
    pool: HostPool, path: str, chunks: AsyncIterator[bytes], streams: int
) -> None:
    """Unpack over up to ``streams`` channels from the start: one channel's window is the
    cap (a far host, :mod:`._parallel`), not the ``tar``. Extra channels join as they open.

    Raises:
        ConnectorError: If a ``tar`` or channel fails, or the stream is broken.
    """
    what, extract = f"unpack into {path!r}", commands.extract(path, make=True)
    splitter = TarSplitter(streams, active=1)
    arrivals: list[RemoteCommand] = []
    finished = asyncio.Event()

    async def serve(remote: RemoteCommand) -> None:
        arrivals.append(remote)
        await finished.wait()

    last = _LastPass(splitter)
    try:
        async with pool.command(extract, what=what, bulk=True) as first:
            first.buffer_writes(_SEND_BUFFER)
            workers = [first]
            async with asyncio.TaskGroup() as group:
                start_spares(group, pool, extract, what, streams - 1, serve)
                try:
                    async for chunk in chunks:
                        await _join(splitter, workers, arrivals, streams)
                        # members go to the channels with the most room in their window
                        splitter.rebalance([worker.backlog for worker in workers])
                        await _write(splitter, workers, chunk)
                    splitter.close()
                except ValueError as exc:
                    raise pool.error(f"cannot unpack into {path!r}", exc) from exc
                if splitter.needs_last_pass:  # its channel opens while the workers end
                    start_spares(group, pool, extract, what, 1, last.run)
                await _end_workers(workers)
                finished.set()
                last.ready.set()
    except BaseExceptionGroup as failed:
        error = first_error(failed)
        raise error from error.__cause__
    if splitter.needs_last_pass and not last.done:  # no channel was free for it early
        await pool.run(extract, what=what, data=bytes(splitter.deferred) + END, bulk=True)


class _LastPass:
    """The last ``tar -x`` of a wide unpack, on a channel opened early if one is free."""

    def __init__(self, splitter: TarSplitter) -> None:
        self._splitter = splitter
        self.ready = asyncio.Event()  # set once every worker has finished
        self.done = False

    async def run(self, remote: RemoteCommand) -> None:
        """Wait for the workers, then unpack the deferred members on ``remote``."""
        await self.ready.wait()
        await remote.write(bytes(self._splitter.deferred) + END)
        remote.write_eof()
        await remote.finish()
        self.done = True


async def _join(
    splitter: TarSplitter, workers: list[RemoteCommand], arrivals: list[RemoteCommand], most: int
) -> None:
    """Make the channels opened since the last chunk workers (up to ``most`` in all), each
    first sent the replay; channels left over are not used."""
    if arrivals and splitter.can_grow:
        joining = arrivals[: most - splitter.active]
        replay = splitter.grow(len(joining))
        for remote in joining:
            remote.buffer_writes(_SEND_BUFFER)
            if replay:
                await remote.write(replay)
            workers.append(remote)
    arrivals.clear()


async def _write(
    splitter: TarSplitter, workers: list[RemoteCommand], chunk: bytes, watch: Backlog | None = None
) -> None:
    """Route one chunk to the workers: one write per worker (a write per member would be
    a packet each)."""
    batches: list[list[bytes]] = [[] for _ in workers]
    for route, data in splitter.feed(chunk):
        for index in range(len(workers)) if route == EVERY else (route,):
            batches[index].append(data)
    clock = asyncio.get_running_loop().time
    for worker, batch in zip(workers, batches, strict=True):
        if batch:
            before = clock()
            await worker.write(b"".join(batch))
            if watch is not None:
                watch.wrote(before, clock(), splitter.members)


async def _end_workers(workers: list[RemoteCommand]) -> None:
    """End every worker's archive; they unpack at once, their ends are collected in turn."""
    for worker in workers:
        await worker.write(END)
        worker.write_eof()
    for worker in workers:
        await worker.finish()


async def _split(
    pool: HostPool,
    stack: contextlib.AsyncExitStack,
    splitter: TarSplitter,
    workers: list[RemoteCommand],
    chunks: AsyncIterator[bytes],
    extract: str,
    what: str,
) -> None:
    """Feed the stream to ``workers``, adding some when the first one is slow."""
    clock = asyncio.get_running_loop().time
    watch = Backlog(clock())
    async for chunk in chunks:
        await _write(splitter, workers, chunk, watch)
        if splitter.can_grow:
            slow = watch.slow(clock(), splitter.members)
            if slow:
                await _grow(pool, stack, splitter, workers, extract, what)
            elif slow is not None:
                splitter.freeze()  # one tar keeps up: stay with it


class Backlog:
    """Tells, from how long writes to one ``tar`` took, whether it creates files slowly.

    A write that took over a millisecond waited for the SSH window: the ``tar`` is
    behind, and from then on members go out only as fast as it takes them in. Their rate
    since the first such wait is how fast it creates files.

    Args:
        start: The clock when feeding began.
    """

    def __init__(self, start: float) -> None:
        self._start = start
        self._behind: tuple[float, int] | None = None  # (clock, members) at the first wait
        #: Seconds spent in writes that waited.
        self.waited = 0.0

    def wrote(self, before: float, after: float, members: int) -> None:
        """A write began at ``before`` and returned at ``after``; ``members`` routed so far."""
        if after - before > _WAIT:
            self.waited += after - before
            if self._behind is None:
                self._behind = (before, members)

    def slow(self, now: float, members: int) -> bool | None:
        """None until :data:`SPLIT_AFTER` seconds were waited; then whether it is slow."""
        if self.waited < SPLIT_AFTER:
            return None
        since, before = self._behind or (self._start, 0)
        return (members - before) / max(now - since, 1e-9) < SLOW_FILES


async def _grow(
    pool: HostPool,
    stack: contextlib.AsyncExitStack,
    splitter: TarSplitter,
    workers: list[RemoteCommand],
    extract: str,
    what: str,
) -> None:
    """Start more workers on the channels free now; each first gets the replay."""
    added: list[RemoteCommand] = []
    for _ in range(WORKERS - len(workers)):
        remote = await stack.enter_async_context(pool.spare_command(extract, what=what))
        if remote is None:
            break
        added.append(remote)
    if not added:
        splitter.freeze()
        return
    replay = splitter.grow(len(added))
    for remote in added:
        if replay:
            await remote.write(replay)
    workers.extend(added)


async def _chunks(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while head:
        yield head.pop(0)
    async for chunk in rest:
        yield chunk


async def pipe(
    pool: HostPool, command: str, what: str, head: list[bytes], rest: AsyncIterator[bytes]
) -> None:
    """Run ``command`` with ``head`` then ``rest`` on its standard input; check its status.

    Raises:
        ConnectorError: If it cannot run, stops reading or exits non-zero.
    """
    async with pool.command(command, what=what, bulk=True) as remote:
        await _feed(remote, head, rest)


async def _feed(remote: RemoteCommand, head: list[bytes], rest: AsyncIterator[bytes]) -> None:
    for chunk in head:
        await remote.write(chunk)
    head.clear()
    async for chunk in rest:
        await remote.write(chunk)
    remote.write_eof()
    await remote.finish()


async def peek(chunks: AsyncIterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Take chunks until more than ``limit`` bytes are held; True if the stream ended."""
    head: list[bytes] = []
    size = 0
    async for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            return head, False
    return head, True

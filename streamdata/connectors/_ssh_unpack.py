"""Unpacking a tar stream on an SSH host, with several ``tar -x`` at once for many files.

A tree of many small files is bound by the remote host creating them, and several
processes creating files at once get through more than one (measured on this project's
machine, 10,000 files of 4 KiB over loopback OpenSSH: one ``tar | ssh tar`` 10.4 s,
streamdata with two workers 8.3 s, with four 7.3 s). So when the first MiB of the stream
holds at least :data:`PARALLEL_FILES` files and the host has channels free right now, the
tree is created by SFTP ``mkdir`` and the stream is cut by
:class:`~._tarsplit.TarSplitter` into up to :data:`WORKERS` streams unpacked at once,
then a last ``tar -x`` (opened with them, fed after them) for directories and hard links.
Otherwise one ``tar`` unpacks everything, as before. Either way the exit status of every
``tar`` is checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator

import asyncssh

from .._tarcount import TarFileCounter
from . import _ssh_commands as commands
from ._ssh_channel import RemoteCommand
from ._ssh_pool import HostPool
from ._tarsplit import END, EVERY, TarSplitter

__all__ = ["PARALLEL_FILES", "WORKERS", "peek", "pipe", "unpack_tree"]

#: Parallel ``tar -x`` processes at most for a tree of many files (plus one last pass);
#: fewer when the host has fewer channels free (one stream when it has none).
WORKERS = 4
#: Files within the first :data:`_PEEK_BYTES` of the stream that make it "many files".
PARALLEL_FILES = 32
_PEEK_BYTES = 1 << 20


async def unpack_tree(pool: HostPool, path: str, chunks: AsyncIterable[bytes]) -> None:
    """Create the new directory ``path`` and unpack the tar stream ``chunks`` into it.

    Raises:
        ConnectorError: If ``path`` exists, or a ``tar`` fails or the stream is broken.
    """
    what = f"unpack into {path!r}"
    iterator = aiter(chunks)
    head, ended = await peek(iterator, _PEEK_BYTES)
    counter = TarFileCounter()
    if ended or sum(counter.feed(chunk) for chunk in head) < PARALLEL_FILES:
        await pipe(pool, commands.unpack(path), what, head, iterator)
        return
    try:
        await pool.sftp(lambda c: c.mkdir(path, asyncssh.SFTPAttrs(permissions=0o700)), what=what)
    except asyncssh.SFTPError as exc:
        raise pool.error(f"cannot create {path!r}", exc) from exc
    extract = commands.extract(path)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(pool.command(extract, what=what, bulk=True))
        spares: list[RemoteCommand] = []
        for _ in range(WORKERS):  # up to WORKERS - 1 more workers, and the last pass
            remote = await stack.enter_async_context(pool.spare_command(extract, what=what))
            if remote is None:
                break
            spares.append(remote)
        if len(spares) < 2:  # the host is busy: one stream after all
            await _feed(first, head, iterator)
            return
        await _parallel(pool, [first, *spares[:-1]], spares[-1], head, iterator, path)


async def _parallel(
    pool: HostPool,
    workers: list[RemoteCommand],
    last: RemoteCommand,
    head: list[bytes],
    rest: AsyncIterator[bytes],
    path: str,
) -> None:
    splitter = TarSplitter(len(workers))
    try:
        async for chunk in _chunks(head, rest):
            for route, data in splitter.feed(chunk):
                for worker in workers if route == EVERY else (workers[route],):
                    await worker.write(data)
        splitter.close()
    except ValueError as exc:
        raise pool.error(f"cannot unpack into {path!r}", exc) from exc
    for worker in workers:  # they unpack at once; their ends are only collected in turn
        await _end(worker, END)
    await _end(last, bytes(splitter.deferred) + END)


async def _chunks(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while head:
        yield head.pop(0)
    async for chunk in rest:
        yield chunk


async def _end(remote: RemoteCommand, data: bytes) -> None:
    await remote.write(data)
    remote.write_eof()
    await remote.finish()


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

"""Streams to and from an SSH host: SFTP for small files, a command for the rest.

A new command costs a channel and a remote shell start (3 ms on a lean server, 100 ms
and more when the login shell reads a heavy ``~/.bashrc``), while a small file goes over
the host's open SFTP session in a few round trips. Bulk data is faster through ``cat`` or
``tar`` on an exec channel (AES-GCM, large window) than through asyncssh's SFTP. The
source's :class:`~streamdata.connectors.Entry` says which a file is, so nobody asks again:

* reading a file of at most :data:`SMALL_FILE` bytes goes over SFTP; a bigger one is
  streamed by ``cat`` at once, with no SFTP request before its first byte;
* writing a file the entry says is bigger pipes it into ``cat`` from its first byte;
  one said to be small is buffered up to :data:`SMALL_FILE` bytes, and a stream that
  ends within that goes over SFTP, unless its mtime has a fractional part (SFTP v3
  carries whole seconds only); the rest is piped into ``cat``. Mode and mtime are set by
  the same command line;
* directories always travel as ``tar`` streams (unpacked by several ``tar`` at once when
  they hold many files or the host is far: :mod:`._unpack`), read through the tree
  filter (:mod:`.._tar.filter`), which needs the tree's real path (one SFTP request);
* a big file to or from a far host, where one channel's window caps the transfer, goes
  as ranges over several channels (:mod:`._ranges`; how many: :mod:`._parallel`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator

from .._base import Entry, EntryKind
from .._tar.filter import filter_tree
from . import _commands as commands
from ._channel import RemoteCommand
from ._parallel import SERVER_WINDOW, stream_count
from ._pool import HostPool
from ._rangeread import read_ranges
from ._ranges import READ_BLOCK, READ_WINDOW, WRITE_BLOCK
from ._rangewrite import write_ranges
from ._sftp import read_small, real_path, write_small
from ._unpack import peek, pipe, unpack_tree

__all__ = ["SMALL_FILE", "open_read", "write_stream"]

#: Files up to this size travel over SFTP (measured: below it, a command's start-up costs
#: more than SFTP's lower throughput).
SMALL_FILE = 1 << 20


@contextlib.asynccontextmanager
async def open_read(pool: HostPool, entry: Entry) -> AsyncIterator[AsyncIterator[bytes]]:
    """Open a stream of ``entry``: raw bytes for a file, a tar stream for a directory.

    Raises:
        ConnectorError: If the source cannot be read completely.
    """
    path = entry.path
    if entry.kind is EntryKind.DIRECTORY:
        roots = await real_path(pool, path)
        command = commands.archive(path)
        async with pool.command(command, what=f"archive {path!r}", bulk=True) as remote:
            remote.write_eof()
            yield filter_tree(_output(remote), roots)
    elif entry.size <= SMALL_FILE:
        yield _once(await read_small(pool, path))
    elif (streams := _streams(pool, entry, READ_WINDOW, READ_BLOCK)) > 1:
        async with read_ranges(pool, entry, streams) as chunks:
            yield chunks
    else:
        command = commands.read_file(path)
        async with pool.command(command, what=f"read {path!r}", bulk=True) as remote:
            remote.write_eof()
            yield _output(remote)


async def write_stream(
    pool: HostPool, path: str, entry: Entry, chunks: AsyncIterable[bytes]
) -> None:
    """Write a file or unpack a tar stream at the new path ``path``.

    Raises:
        ConnectorError: If writing fails.
    """
    if entry.kind is EntryKind.DIRECTORY:
        await unpack_tree(pool, path, chunks)
        return
    iterator = aiter(chunks)
    head: list[bytes] = []
    if entry.size <= SMALL_FILE:
        head, ended = await peek(iterator, SMALL_FILE)
        if ended and float(entry.mtime).is_integer():
            await write_small(pool, path, b"".join(head), entry.mode, entry.mtime)
            return
    elif (streams := _streams(pool, entry, SERVER_WINDOW, WRITE_BLOCK)) > 1:
        await write_ranges(pool, path, entry, iterator, streams)
        return
    command = commands.write_file(path, entry.mode, entry.mtime)
    await pipe(pool, command, f"write {path!r}", head, iterator)


def _streams(pool: HostPool, entry: Entry, window: int, block: int) -> int:
    """How many channels a big file gets (:mod:`._parallel`)."""
    return stream_count(entry.size, block, window, pool.round_trips.best)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _output(remote: RemoteCommand) -> AsyncIterator[bytes]:
    while chunk := await remote.read():
        yield chunk
    await remote.finish()

"""Streams to and from an SSH host: SFTP for small files, a command for the rest.

A new command costs a channel and a remote shell start (3 ms on a lean server, 100 ms
and more when the login shell reads a heavy ``~/.bashrc``), while a small file goes over
the host's open SFTP session in a few round trips. Bulk data is faster through ``cat`` or
``tar`` on an exec channel (AES-GCM, large window) than through asyncssh's SFTP. So:

* reading a file opens it over SFTP first; up to :data:`SMALL_FILE` bytes are read there,
  a bigger file is streamed by ``cat``;
* writing a file buffers up to :data:`SMALL_FILE` bytes; a stream that ends within that
  goes over SFTP, unless its mtime has a fractional part (SFTP v3 carries whole seconds
  only), the rest is piped into ``cat`` with mode and mtime set by the same command line;
* directories always travel as ``tar`` streams (unpacked by several ``tar`` at once when
  they hold many files: :mod:`._ssh_unpack`), read through the tree filter
  (:mod:`._tarfilter`), which needs the tree's real path (one SFTP request).

Small SFTP transfers are few at a time (:meth:`HostPool.sftp_transfer_slot`), so a
metadata request on the same SFTP session never waits long behind file data.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import AsyncIterable, AsyncIterator

from .._base import EntryKind
from .._tar.filter import filter_tree
from . import _commands as commands
from ._asyncssh import asyncssh
from ._channel import RemoteCommand
from ._pool import HostPool
from ._unpack import peek, pipe, unpack_tree

__all__ = ["SMALL_FILE", "open_read", "tree_roots", "write_stream"]

#: Files up to this size travel over SFTP (measured: below it, a command's start-up costs
#: more than SFTP's lower throughput).
SMALL_FILE = 1 << 20


@contextlib.asynccontextmanager
async def open_read(
    pool: HostPool, path: str, kind: EntryKind
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Open a stream of ``path``: raw bytes for a file, a tar stream for a directory.

    Raises:
        ConnectorError: If the source cannot be read completely.
    """
    if kind is not EntryKind.DIRECTORY:
        small = await _read_small(pool, path)
        if small is not None:
            yield _once(small)
            return
        command, what = commands.read_file(path), f"read {path!r}"
        async with pool.command(command, what=what, bulk=True) as remote:
            remote.write_eof()
            yield _output(remote)
        return
    roots = await tree_roots(pool, path)
    async with pool.command(commands.archive(path), what=f"archive {path!r}", bulk=True) as remote:
        remote.write_eof()
        yield filter_tree(_output(remote), roots)


async def tree_roots(pool: HostPool, path: str) -> tuple[bytes, bytes]:
    """The paths a tree is known by: as given, and its real path (one SFTP request).

    Raises:
        ConnectorError: If ``path`` cannot be resolved (e.g. it does not exist).
    """
    given = os.fsencode(posixpath.normpath(path))
    try:
        real = await pool.sftp(lambda c: c.realpath(given), what=f"resolve {path!r}")
    except asyncssh.SFTPError as exc:
        raise pool.error(f"cannot read {path!r}", exc) from exc
    return given, bytes(real)


async def write_stream(
    pool: HostPool,
    path: str,
    kind: EntryKind,
    chunks: AsyncIterable[bytes],
    mode: int | None,
    mtime: float | None,
) -> None:
    """Write a file or unpack a tar stream at the new path ``path``.

    Raises:
        ConnectorError: If writing fails.
    """
    if kind is EntryKind.DIRECTORY:
        await unpack_tree(pool, path, chunks)
        return
    iterator = aiter(chunks)
    head, ended = await peek(iterator, SMALL_FILE)
    if ended and (mtime is None or float(mtime).is_integer()):
        await _write_small(pool, path, b"".join(head), mode, mtime)
        return
    command = commands.write_file(path, mode, mtime)
    await pipe(pool, command, f"write {path!r}", head, iterator)


async def _read_small(pool: HostPool, path: str) -> bytes | None:
    """Read the file over SFTP if it is small, else return None."""

    async def read(client: asyncssh.SFTPClient) -> bytes | None:
        async with pool.sftp_transfer_slot(), client.open(path, "rb") as handle:
            attrs = await handle.stat()
            if attrs.size is None or attrs.size > SMALL_FILE:
                return None
            data: bytes = await handle.read()
            return data

    try:
        return await pool.sftp(read, what=f"read {path!r}")
    except asyncssh.SFTPError as exc:
        raise pool.error(f"cannot read {path!r}", exc) from exc


async def _write_small(
    pool: HostPool, path: str, data: bytes, mode: int | None, mtime: float | None
) -> None:
    """Create the new file ``path`` over SFTP, then set its mode and mtime."""
    attrs = asyncssh.SFTPAttrs(permissions=mode)
    if mtime is not None:
        attrs.atime = attrs.mtime = int(mtime)

    async def write(client: asyncssh.SFTPClient) -> None:
        async with pool.sftp_transfer_slot(), client.open(path, "xb") as handle:
            await handle.write(data)
            if mode is not None or mtime is not None:
                await handle.setstat(attrs)

    try:
        await pool.sftp(write, what=f"write {path!r}", retry=False)
    except asyncssh.SFTPError as exc:
        raise pool.error(f"cannot write {path!r}", exc) from exc


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _output(remote: RemoteCommand) -> AsyncIterator[bytes]:
    while chunk := await remote.read():
        yield chunk
    await remote.finish()

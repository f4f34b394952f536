"""Copies of trees made on SSH hosts (``cp -a``, a route), and when they cannot be.

A same-host copy (``cp -a``) and a direct send over a route never pass through the tree
filter (:mod:`.._tar.filter`), so they are made only for a tree it would leave as it is.
The command that makes them first looks for special files and absolute links below the
tree, in the same command line (:func:`._commands.unless_filtered`); only when there
are some is the tree's real path asked (one SFTP request) and the links judged here. A
tree that needs the filter is streamed through this process instead: to another host by
reading and unpacking at once; on the same host through a local temporary file, one
channel after the other (reading and unpacking at once on one host could each wait for
a channel the other holds, when many such copies run together).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO, TypeVar

from .._base import Entry, EntryKind
from .._tar.filter import inside_root
from . import _commands as commands
from ._pool import HostPool
from ._sftp import real_path
from ._streams import open_read, write_stream

__all__ = ["copy_through_spool", "run_unless_filtered"]

_A = TypeVar("_A")
_T = TypeVar("_T")
_SPOOL_CHUNK = 1 << 20


async def run_unless_filtered(pool: HostPool, path: str, command: str, what: str) -> bool:
    """Run ``command`` (a bulk copy of the tree ``path``) unless the tree needs the filter.

    Returns:
        True if ``command`` ran, False if the tree needs the filter (nothing was done).

    Raises:
        ConnectorError: If a command fails or the host cannot be reached.
    """
    found = await pool.run(commands.unless_filtered(path, command), what=what, bulk=True)
    if not found:
        return True
    if _needs_filter(await real_path(pool, path), found):
        return False
    await pool.run(command, what=what, bulk=True)  # absolute links, all out of the tree
    return True


def _needs_filter(roots: tuple[bytes, bytes], listing: bytes) -> bool:
    """Whether the listing of :func:`._commands.unless_filtered` names something to change."""
    for record in listing.split(b"\0"):
        if record == b"s":
            return True
        if record.startswith(b"l") and inside_root(roots, record[1:]) is not None:
            return True
    return False


async def copy_through_spool(pool: HostPool, src_path: str, dst_path: str) -> None:
    """Copy the tree ``src_path`` to the new path ``dst_path`` on the same host, filtered.

    Raises:
        ConnectorError: If reading, spooling or unpacking fails.
    """
    tree = Entry(src_path, EntryKind.DIRECTORY, 0, 0.0, 0o700)
    try:
        with tempfile.TemporaryFile() as spool:
            async with open_read(pool, tree) as chunks:
                async for chunk in chunks:
                    await _spooling(pool, src_path, spool.write, chunk)
            await _spooling(pool, src_path, spool.seek, 0)
            replay = _replay(pool, src_path, spool)
            await write_stream(pool, dst_path, tree, replay)
    except OSError as exc:  # making or closing the file; its reads and writes are below
        raise pool.error(f"cannot spool {src_path!r} in a local temporary file", exc) from exc


async def _replay(pool: HostPool, path: str, spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await _spooling(pool, path, spool.read, _SPOOL_CHUNK):
        yield chunk


async def _spooling(pool: HostPool, path: str, call: Callable[[_A], _T], argument: _A) -> _T:
    """Run one operation on the spool file in a worker thread.

    Raises:
        ConnectorError: If it fails (e.g. the local disk is full).
    """
    try:
        return await asyncio.to_thread(call, argument)
    except OSError as exc:
        raise pool.error(f"cannot spool {path!r} in a local temporary file", exc) from exc

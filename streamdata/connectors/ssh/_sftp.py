"""Requests on a host's persistent SFTP session: metadata, and the data of small files.

Each request goes through :meth:`HostPool.sftp`, which translates every failure
(:mod:`._errors`); a request that expects a particular answer (no such file, a rename
the server refuses) handles it inside its own call and returns it as a value. Small
file transfers are few at a time (:meth:`HostPool.sftp_transfer_slot`), so a metadata
request on the same session never waits long behind file data.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_module
import time
from collections.abc import Awaitable, Callable

from .._base import Entry, EntryKind
from ._asyncssh import asyncssh
from ._pool import HostPool

__all__ = [
    "entry_of",
    "is_directory",
    "make_directories",
    "read_small",
    "real_path",
    "stat_or_none",
    "write_small",
]

_SFTP_KINDS = {
    asyncssh.FILEXFER_TYPE_REGULAR: EntryKind.FILE,
    asyncssh.FILEXFER_TYPE_DIRECTORY: EntryKind.DIRECTORY,
    asyncssh.FILEXFER_TYPE_SYMLINK: EntryKind.SYMLINK,
}


async def stat_or_none(
    pool: HostPool, path: str, *, follow: bool, what: str
) -> asyncssh.SFTPAttrs | None:
    """The attributes of ``path`` (following a link there if ``follow``), None if absent.

    The time the request took is a sample of the host's round-trip time
    (:attr:`HostPool.round_trips`).

    Raises:
        ConnectorError: If ``path`` cannot be examined (``cannot {what}``).
    """

    async def call(client: asyncssh.SFTPClient) -> asyncssh.SFTPAttrs | None:
        started = time.monotonic()
        try:
            return await (client.stat(path) if follow else client.lstat(path))
        except asyncssh.SFTPNoSuchFile:
            return None
        finally:
            pool.round_trips.add(time.monotonic() - started)

    return await pool.sftp(call, what=what)


def is_directory(attrs: asyncssh.SFTPAttrs | None) -> bool:
    """Whether ``attrs`` describe a directory."""
    return attrs is not None and attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY


def entry_of(path: str, attrs: asyncssh.SFTPAttrs) -> Entry:
    """The :class:`Entry` for SFTP attributes (mtimes have one-second precision)."""
    kind = _SFTP_KINDS.get(attrs.type, EntryKind.OTHER)
    size = attrs.size or 0 if kind is EntryKind.FILE else 0
    mode = stat_module.S_IMODE(attrs.permissions or 0)
    return Entry(path, kind, size, float(attrs.mtime or 0), mode)


async def make_directories(pool: HostPool, path: str) -> None:
    """``mkdir -p path`` over SFTP, failing with the reason the server gave.

    Not asyncssh's ``makedirs``: it passes over a refused ``mkdir`` of an ancestor and
    then reports the next level's "no such file", hiding a "permission denied".

    Raises:
        ConnectorError: If an ancestor is not a directory or cannot be examined, or a
            directory cannot be made.
    """
    what = f"create directory {path!r}"
    missing, current = [], path
    while (found := await stat_or_none(pool, current, follow=True, what=what)) is None:
        if current in ("/", ".", ""):
            break  # the top (or the working directory, for a relative path): not made
        missing.append(current)
        current = posixpath.dirname(current)
    if found is not None and not is_directory(found):
        raise pool.error(f"cannot create directory {path!r}: {current!r} is not a directory")
    for directory in reversed(missing):
        refusal = await pool.sftp(_mkdir(directory), what=f"create directory {directory!r}")
        if refusal is not None:  # made by someone else meanwhile?
            made = await stat_or_none(pool, directory, follow=True, what=what)
            if not is_directory(made):
                raise pool.error(f"cannot create directory {directory!r}", refusal) from refusal


def _mkdir(
    path: str,
) -> Callable[[asyncssh.SFTPClient], Awaitable[asyncssh.SFTPError | None]]:
    async def call(client: asyncssh.SFTPClient) -> asyncssh.SFTPError | None:
        try:
            await client.mkdir(path)
        except asyncssh.SFTPError as exc:  # judged by the caller: maybe it exists now
            return exc
        return None

    return call


async def real_path(pool: HostPool, path: str) -> tuple[bytes, bytes]:
    """The paths a tree is known by: as given, and its real path (one SFTP request).

    Raises:
        ConnectorError: If ``path`` cannot be resolved (e.g. it does not exist).
    """
    given = os.fsencode(posixpath.normpath(path))
    real = await pool.sftp(lambda c: c.realpath(given), what=f"read {path!r}")
    return given, bytes(real)


async def read_small(pool: HostPool, path: str) -> bytes:
    """Read the whole file ``path`` over SFTP (a small one: all of it is held).

    Raises:
        ConnectorError: If it cannot be read.
    """

    async def read(client: asyncssh.SFTPClient) -> bytes:
        async with pool.sftp_transfer_slot(), client.open(path, "rb") as handle:
            data: bytes = await handle.read()
            return data

    return await pool.sftp(read, what=f"read {path!r}")


async def write_small(pool: HostPool, path: str, data: bytes, mode: int, mtime: float) -> None:
    """Create the new file ``path`` over SFTP, then set its mode and (whole-second) mtime.

    Raises:
        ConnectorError: If it cannot be written.
    """
    attrs = asyncssh.SFTPAttrs(permissions=mode)
    attrs.atime = attrs.mtime = int(mtime)

    async def write(client: asyncssh.SFTPClient) -> None:
        async with pool.sftp_transfer_slot(), client.open(path, "xb") as handle:
            await handle.write(data)
            await handle.setstat(attrs)

    await pool.sftp(write, what=f"write {path!r}", retry=False)

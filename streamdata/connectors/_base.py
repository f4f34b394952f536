"""The connector interface: how the transfer engine reaches a location's storage.

A connector owns the connections to the locations of one deployment. The transfer engine
only ever calls the methods below; it never builds a command line itself. What it learnt
of a source (its :class:`Entry`: kind, size, mode, mtime) travels down with every stream
(:meth:`Connector.read`, :meth:`Connector.write`, :meth:`Connector.send`), so a connector
never asks the location again. Every method raises :class:`~streamdata.ConnectorError`
(never a raw ``OSError`` or ``asyncssh`` error: each connector translates them with one
table, :mod:`._errors`) and, when cancelled, stops its work promptly; temporary paths it
was writing are removed by the engine.

Streams: a regular file travels as its raw bytes; a directory travels as a POSIX tar stream
of its *contents* (member names relative to the directory, e.g. ``./sub/file``), which keeps
permission bits, modification times, empty directories, symbolic links and hard links.

Every copy of a tree, however it is made (:meth:`Connector.copy`, :meth:`Connector.read`
then :meth:`Connector.write`, :meth:`Connector.send`), follows two rules
(:mod:`._tar.filter`): special files (fifos, sockets, devices) are left out, and a
symbolic link whose absolute target lies inside the tree becomes the equivalent
relative link, so that it points into the copy; other links are kept verbatim.
"""

from __future__ import annotations

import abc
import enum
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from .._models import ExecutionLocation

__all__ = ["Connector", "Entry", "EntryKind", "Span", "entry_from_stat"]

#: A piece of a file: (offset, length) in bytes.
Span = tuple[int, int]


class EntryKind(enum.Enum):
    """The type of a filesystem entry."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Entry:
    """What a connector reports about one filesystem entry.

    Attributes:
        path: Absolute POSIX path of the entry on its location.
        kind: File, directory, symbolic link or other.
        size: Size in bytes (0 for directories and other entries).
        mtime: Modification time, seconds since the epoch.
        mode: Permission bits (``st_mode & 0o7777``).
    """

    path: str
    kind: EntryKind
    size: int
    mtime: float
    mode: int


def entry_from_stat(path: str, info: os.stat_result) -> Entry:
    """Build an :class:`Entry` from a local ``os.stat``/``os.lstat`` result."""
    mode = info.st_mode
    if stat.S_ISREG(mode):
        kind = EntryKind.FILE
    elif stat.S_ISDIR(mode):
        kind = EntryKind.DIRECTORY
    elif stat.S_ISLNK(mode):
        kind = EntryKind.SYMLINK
    else:
        kind = EntryKind.OTHER
    size = info.st_size if kind is EntryKind.FILE else 0
    return Entry(path, kind, size, info.st_mtime, stat.S_IMODE(mode))


class Connector(abc.ABC):
    """Access to the storage of every location of one deployment.

    Subclasses implement the abstract methods; the transfer engine composes them into
    atomic transfers (write to a temporary path, then :meth:`commit`). Every copy of a
    tree leaves special files (fifos, sockets, devices) out and turns a symbolic link
    whose absolute target lies inside the tree into the equivalent relative link; other
    links are kept verbatim, as ``cp -a`` keeps them.
    """

    __module__ = "streamdata"

    #: True when every location of this connector sees this process's filesystem.
    is_local: bool = False

    @abc.abstractmethod
    def filesystem(self, location: ExecutionLocation) -> Hashable:
        """Identify the filesystem a location sees.

        Locations whose keys are equal (across connectors too) share one filesystem, so
        data moves between them with :meth:`copy` instead of a stream.
        """

    @abc.abstractmethod
    async def stat(self, location: ExecutionLocation, path: str) -> Entry | None:
        """Describe ``path`` on ``location``, following a symbolic link at ``path`` itself.

        Returns:
            The entry, or None when nothing is there (a dangling link counts as a link).

        Raises:
            ConnectorError: If the location cannot be reached.
        """

    @abc.abstractmethod
    async def prepare_destination(
        self, location: ExecutionLocation, dst_path: str, basename: str
    ) -> str:
        """Apply ``cp`` rules to a destination in one round trip.

        Returns ``dst_path/basename`` when ``dst_path`` is an existing directory (following
        links), else ``dst_path``; creates the parent directories of the returned path.

        Raises:
            ConnectorError: If the location cannot be reached or a parent cannot be made.
        """

    @abc.abstractmethod
    async def symlink(self, location: ExecutionLocation, target: str, link_path: str) -> None:
        """Create a symbolic link at ``link_path`` (which must not exist) to ``target``.

        Raises:
            ConnectorError: On failure.
        """

    @abc.abstractmethod
    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        """Copy a file or tree to ``dst_path`` (which must not exist) on the same filesystem.

        Permission bits, modification times, empty directories, symbolic links and hard
        links inside a tree are preserved; special files are left out and absolute links
        into the tree made relative (see the module docstring).

        Raises:
            ConnectorError: On failure.
        """

    def location_names(self) -> Sequence[str]:
        """Name the locations this connector is configured with, if it has a fixed set.

        Used to probe a whole deployment (:meth:`~streamdata.DataManager.probe`). The
        default is none: the connector serves whatever location it is given.
        """
        return ()

    def can_send(self, location: ExecutionLocation, target: ExecutionLocation) -> bool:
        """Tell whether ``location`` can send data straight to ``target``.

        Both are locations of this connector on different filesystems. When True, the
        engine may call :meth:`send` instead of relaying the bytes through this process
        (by measured cost when the connector can measure its links, see
        :attr:`DataManager.routes`). The default is False.
        """
        return False

    async def send(
        self, location: ExecutionLocation, entry: Entry, target: ExecutionLocation, target_path: str
    ) -> None:
        """Copy ``entry`` from ``location`` to the new path ``target_path`` on ``target``.

        Called only when :meth:`can_send` is True; keeps what :meth:`copy` keeps, and
        gives a file the entry's mode and mtime as :meth:`write` does.

        Raises:
            ConnectorError: On failure; what was written is left for the caller to remove.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot send between locations")

    @abc.abstractmethod
    def read(
        self, location: ExecutionLocation, entry: Entry
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open a byte stream of ``entry``: raw bytes for a file, a tar stream for a directory.

        ``entry`` is what :meth:`stat` said of the source (its path, kind and size), so
        the connector need not ask again before the data flows. A directory's stream
        holds no special file, and its absolute links into the tree are relative (see the
        module docstring). The iterator raises :class:`~streamdata.ConnectorError` if the
        source cannot be read completely; leaving the context early stops the producer.
        """

    @abc.abstractmethod
    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        """Write a stream made by :meth:`read` of ``entry`` to ``path`` (which must not exist).

        ``entry`` describes the source: its kind says a file or a tree, its size how many
        bytes to expect (a hint: the stream decides), and a file gets its mode and mtime
        after the last byte.

        Raises:
            ConnectorError: On failure; what was written is left for the caller to remove.
        """

    # -- resuming a file copy (optional; the default: cannot resume) -------------------------

    def can_resume(self, location: ExecutionLocation) -> bool:
        """Tell whether a file copy from or to ``location`` can continue where it stopped.

        When True for both ends of a copy, the engine may keep what a broken copy wrote
        to its temporary file: it compares the file's blocks with the source's
        (:meth:`block_digests` on both), then moves only the spans that differ
        (:meth:`read_spans`, :meth:`write_spans`). The default is False: a broken copy
        starts again from zero.
        """
        return False

    async def block_digests(
        self, location: ExecutionLocation, path: str, size: int, block: int
    ) -> list[str]:
        """SHA-256 digests (hex) of the first ``size`` bytes of file ``path``, by blocks.

        One digest per ``block`` bytes, in order, computed where the file is; the last
        block may be shorter, and a file shorter than ``size`` gives the blocks it has
        (none if it is missing or empty). Called only when :meth:`can_resume` is True.

        Raises:
            ConnectorError: If the file cannot be read.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot resume copies")

    def read_spans(
        self, location: ExecutionLocation, entry: Entry, spans: Sequence[Span]
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open a stream of the bytes of the file ``entry`` in ``spans``, one after another.

        Called only when :meth:`can_resume` is True.

        Raises:
            ConnectorError: If the file cannot be read, or ends before a span does.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot resume copies")

    async def write_spans(
        self,
        location: ExecutionLocation,
        path: str,
        entry: Entry,
        chunks: AsyncIterable[bytes],
        spans: Sequence[Span],
    ) -> None:
        """Write ``chunks`` (the bytes of ``spans``, in order) into the existing file ``path``.

        The rest of the file is kept; it is then cut to the entry's size and gets the
        entry's mode and mtime, as after :meth:`write`. Called only when
        :meth:`can_resume` is True.

        Raises:
            ConnectorError: On failure, or if ``chunks`` do not hold the spans' bytes;
                the file is left for the caller to remove.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot resume copies")

    # -- placing the result ----------------------------------------------------------------

    @abc.abstractmethod
    async def commit(self, location: ExecutionLocation, tmp_path: str, final_path: str) -> None:
        """Move ``tmp_path`` to ``final_path`` atomically, replacing what is there.

        Raises:
            ConnectorError: On failure.
        """

    @abc.abstractmethod
    async def remove(self, location: ExecutionLocation, path: str) -> None:
        """Remove ``path`` recursively; a missing path is not an error.

        Raises:
            ConnectorError: If the location cannot be reached.
        """

    @abc.abstractmethod
    def walk(self, location: ExecutionLocation, path: str) -> AsyncIterator[Entry]:
        """List ``path`` and every entry below it in one pass (links are not followed).

        Yields nothing when ``path`` does not exist.
        """

    async def close(self) -> None:  # noqa: B027 -- optional hook, nothing to release by default
        """Release every connection; idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

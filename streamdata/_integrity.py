"""Content integrity: entry signatures, a fast hash of every file that streams through.

An entry's *signature* (kind, size, mtime) is what a ``stat`` says about its data: the
catalog records it for each replica, and the engine (before relying on a replica) and
the audit (over a whole listing) compare it with what storage shows now.

The hash is XXH3-128 (the ``xxhash`` package): about 25 GB/s on one core of the reference
machine against 2 GB/s for BLAKE3 and 1.4 GB/s for SHA-256, so hashing each chunk as it
streams costs nothing next to the transfer. It guards against accidental corruption
(truncation, flipped bits, a wrong file), not against an adversary.
"""

from __future__ import annotations

import posixpath

import xxhash

from ._models import ExecutionLocation
from .connectors._base import Connector, Entry, EntryKind

__all__ = ["HASH_NAME", "Hasher", "digest_of", "entry_changed", "entry_signature", "listing_of"]

HASH_NAME = "xxh3-128"


def entry_signature(entry: Entry) -> tuple[str, int, float]:
    """What the audit compares: kind, size and mtime (size and mtime of files only)."""
    if entry.kind is EntryKind.FILE:
        return (entry.kind.value, entry.size, entry.mtime)
    return (entry.kind.value, 0, 0.0)


def entry_changed(recorded: tuple[str, int, float], seen: tuple[str, int, float]) -> bool:
    """True when ``seen`` differs from the ``recorded`` signature (see :func:`entry_signature`)."""
    if recorded[0] != seen[0] or recorded[1] != seen[1]:
        return True
    # Some transports keep whole seconds only: a truncated copy of the same time is equal.
    old, new = recorded[2], seen[2]
    if old.is_integer() or new.is_integer():
        return int(old) != int(new)
    return abs(old - new) > 1e-6


class Hasher:
    """Incremental XXH3-128 of a byte stream."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = xxhash.xxh3_128()

    def update(self, chunk: bytes) -> None:
        """Add ``chunk`` to the hash."""
        self._state.update(chunk)

    def hexdigest(self) -> str:
        """The digest so far, as hex."""
        return str(self._state.hexdigest())


async def digest_of(
    connector: Connector, location: ExecutionLocation, path: str, size: int | None = None
) -> str:
    """Hash the file at ``path`` on ``location`` by reading it through its connector.

    ``size`` is the file's size if known; else it is asked first (one ``stat``).

    Raises:
        ConnectorError: If the file cannot be read.
    """
    if size is None:
        found = await connector.stat(location, path)
        size = found.size if found is not None else 0
    hasher = Hasher()
    entry = Entry(path, EntryKind.FILE, size, 0.0, 0o600)
    async with connector.read(location, entry) as chunks:
        async for chunk in chunks:
            hasher.update(chunk)
    return hasher.hexdigest()


async def listing_of(
    connector: Connector, location: ExecutionLocation, root: str
) -> list[tuple[str, str, int]]:
    """``(relative path, kind, size)`` of everything below ``root`` that a copy keeps, sorted.

    Special files (:attr:`EntryKind.OTHER`) are left out: no copy holds them.

    Raises:
        ConnectorError: If the tree cannot be listed.
    """
    found = []
    async for entry in connector.walk(location, root):
        if entry.path != root and entry.kind is not EntryKind.OTHER:
            found.append((posixpath.relpath(entry.path, root), entry.kind.value, entry.size))
    return sorted(found)

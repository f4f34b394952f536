"""Fingerprints of directory trees: what the catalog records to see inside a tree replica.

A tree print holds, for every entry below a tree's root, a 64-bit hash of the entry's
relative path and kind, plus size and whole-second mtime for files (directories, and
links, whose targets a copy may rewrite, count by kind). A check builds the same hashes
from the listing it walks anyway, in whatever order the listing comes, and the tree is
*missing* when a recorded hash is not among them: an entry gone or changed. Entries
added since are not a loss (the contract compares what was recorded). Special files
(fifos, sockets, devices) are not copied and do not count.

With ``verify_content``, a check also hashes each file's relative path with its content
digest: that second set is recorded the first time it is computed and compared
afterwards. The digest stored for a directory replica reads
``tree:<listing hashes>[:<content hashes>]``, each set as sorted 64-bit numbers in
base64 (8 bytes an entry, a third more as text).
"""

from __future__ import annotations

import base64
import os
from array import array
from typing import TYPE_CHECKING

import xxhash

from .._errors import StreamDataError
from .._integrity import digest_of
from .._models import DataLocation, ExecutionLocation
from ..connectors._base import Connector, Entry, EntryKind

if TYPE_CHECKING:
    from .._catalog.mapper import RemotePathMapper

__all__ = [
    "TreeAudit",
    "TreePrint",
    "content_part",
    "is_tree_print",
    "listing_part",
    "lost_any",
    "print_of_tree",
]

_PREFIX = "tree:"


def is_tree_print(digest: str | None) -> bool:
    """True when ``digest`` is a tree print (not a file's content digest)."""
    return digest is not None and digest.startswith(_PREFIX)


def _encode(hashes: array[int]) -> str:
    return base64.b64encode(array("Q", sorted(hashes)).tobytes()).decode()


def _decode(text: str) -> set[int]:
    hashes = array("Q")
    hashes.frombytes(base64.b64decode(text))
    return set(hashes)


def listing_part(digest: str) -> str:
    """The part of a tree print that the listing alone decides."""
    return digest.split(":")[1]


def content_part(digest: str) -> str | None:
    """The content part of a tree print, if it was ever computed."""
    parts = digest.split(":")
    return parts[2] if len(parts) > 2 else None


def lost_any(recorded: str, now: str) -> bool:
    """True when a hash of the ``recorded`` part is not in the part found ``now``."""
    found = _decode(now)
    return any(h not in found for h in _decode(recorded))


class TreePrint:
    """The running fingerprint of one tree (see the module docstring)."""

    __slots__ = ("content", "listing")

    def __init__(self) -> None:
        self.listing: array[int] = array("Q")
        self.content: array[int] = array("Q")

    def add(self, relpath: str, entry: Entry) -> None:
        """Count one entry below the root."""
        kind = entry.kind
        if kind is EntryKind.OTHER:
            return
        record = os.fsencode(relpath) + b"\0" + kind.value.encode()
        if kind is EntryKind.FILE:
            record += b"\0%d\0%d" % (entry.size, int(entry.mtime))
        self.listing.append(xxhash.xxh3_64_intdigest(record))

    def add_content(self, relpath: str, digest: str) -> None:
        """Count one file's content digest."""
        record = os.fsencode(relpath) + b"\0" + digest.encode()
        self.content.append(xxhash.xxh3_64_intdigest(record))

    def digest(self, *, with_content: bool = False) -> str:
        """The print as recorded (with the content part when it was computed)."""
        text = f"{_PREFIX}{_encode(self.listing)}"
        return f"{text}:{_encode(self.content)}" if with_content else text


async def print_of_tree(connector: Connector, location: ExecutionLocation, root: str) -> str | None:
    """The listing print of the tree at ``root``; None if it cannot be listed."""
    tree = TreePrint()
    prefix = root.rstrip("/") + "/"
    try:
        async for entry in connector.walk(location, root):
            if entry.path != root:
                tree.add(entry.path[len(prefix) :], entry)
    except StreamDataError:  # the copy itself reports what went wrong
        return None
    return tree.digest()


class TreeAudit:
    """The prints of the directory replicas one check walks through.

    Args:
        top: The path the check walks; trees are looked for at and below it.
        with_content: Also hash every file inside the trees (``verify_content``).
    """

    def __init__(self, top: str, *, with_content: bool) -> None:
        self._top = top
        self._trees: dict[str, tuple[DataLocation, TreePrint]] = {}
        self._files: list[tuple[str, str, str]] | None = [] if with_content else None

    def start(self, replica: DataLocation) -> None:
        """Count what the listing shows below this directory replica from now on."""
        self._trees[replica.path] = (replica, TreePrint())

    def visit(self, entry: Entry) -> None:
        """Count an entry in every tree being printed that holds it."""
        if not self._trees:
            return
        path = current = entry.path
        while current != self._top and current != "/":
            current = current[: current.rfind("/")] or "/"
            found = self._trees.get(current)
            if found is not None:
                relpath = path[len(current) + 1 :] if current != "/" else path[1:]
                found[1].add(relpath, entry)
                if self._files is not None and entry.kind is EntryKind.FILE:
                    self._files.append((current, relpath, path))

    async def judge(
        self, catalog: RemotePathMapper, connector: Connector, location: ExecutionLocation
    ) -> tuple[list[DataLocation], dict[DataLocation, str]]:
        """Compare each print with the recorded one.

        Returns:
            The trees that differ, and the prints to record (first ones, or a first
            content sum) for the trees that do not.

        Raises:
            ConnectorError: If a file cannot be read for its content digest.
        """
        if self._files is not None:
            for root, relpath, path in self._files:
                self._trees[root][1].add_content(
                    relpath, await digest_of(connector, location, path)
                )
        with_content = self._files is not None
        damaged: list[DataLocation] = []
        fresh: dict[DataLocation, str] = {}
        for replica, tree in self._trees.values():
            recorded = catalog.digest_of(replica)
            now = tree.digest(with_content=with_content)
            if not is_tree_print(recorded):
                fresh[replica] = now
                continue
            assert recorded is not None
            old_content, new_content = content_part(recorded), content_part(now)
            if lost_any(listing_part(recorded), listing_part(now)):
                damaged.append(replica)
            elif new_content is not None and old_content is None:
                fresh[replica] = now
            elif new_content is not None and lost_any(old_content or "", new_content):
                damaged.append(replica)
        return damaged, fresh

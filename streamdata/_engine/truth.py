"""Where a transfer relies on the catalog, checked against storage at that moment.

*Confirming a replica.* Before a replica is used (as a source, a link target or the
reason to skip a copy), one ``stat`` of it is compared with the (kind, size, mtime) the
catalog recorded for it (:func:`holds`). A transfer's :class:`Lookout` stats each path
once and invalidates a replica that fails. A link is compared with what was recorded for
its target. A source whose data changed is new data (:func:`note_source`): it leaves the
replica set of its old copies.

*Paths as the filesystem sees them.* A destination path may run through a symbolic link
the manager made (``/x/run1`` -> ``/x/src`` makes ``/x/run1/sub`` really ``/x/src/sub``).
:func:`followed` follows the links the catalog knows (SYMBOLIC_LINK replicas with a
recorded target), without I/O, so a transfer can tell that a link or a copy would land
inside its own data. Links made by others are not known and not followed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._catalog.mapper import RemotePathMapper, parent_of
from .._errors import TransferError
from .._integrity import entry_changed, entry_signature
from .._models import DataLocation, DataType, ExecutionLocation
from ..connectors._base import Connector, Entry, EntryKind

__all__ = [
    "Lookout",
    "followed",
    "holds",
    "inside",
    "into_itself",
    "note_source",
    "other_kind",
]

Signature = tuple[str, int, float]

#: As many links as a path is followed through, like the kernel's SYMLOOP_MAX.
_MAX_HOPS = 40


def recorded_entry(catalog: RemotePathMapper, replica: DataLocation) -> Signature | None:
    """What ``replica`` should look like through a ``stat`` that follows links.

    Its own record, or for a link the record of its target; None when nothing usable is
    recorded (a link's own ``lstat``, as registering a local link records, says nothing
    about the data behind it).
    """
    recorded = catalog.entry_of(replica)
    unusable = recorded is None or recorded[0] == EntryKind.SYMLINK.value
    if unusable and replica.data_type is DataType.SYMBOLIC_LINK:
        target = catalog.link_target(replica)
        recorded = catalog.entry_of(target) if target is not None else None
    if recorded is None or recorded[0] == EntryKind.SYMLINK.value:
        return None
    return recorded


def holds(catalog: RemotePathMapper, replica: DataLocation, found: Entry | None) -> bool:
    """Whether ``found`` (a ``stat`` of the replica's path) is the data recorded for it.

    Gone, a dangling link or anything but a file or directory is not; otherwise its kind,
    and a file's size and modification time, must match the record (when there is one).
    """
    if found is None or found.kind not in (EntryKind.FILE, EntryKind.DIRECTORY):
        return False
    recorded = recorded_entry(catalog, replica)
    return recorded is None or not entry_changed(recorded, entry_signature(found))


def note_source(catalog: RemotePathMapper, source: DataLocation, found: Entry) -> None:
    """Compare a source's data (``found``, through its ``stat``) with its record.

    Changed: the data is new, so the replica holding it (the source, or the target of a
    source link) leaves the replica set of its old copies, taking the links to it along,
    and its new entry is recorded. Nothing recorded yet: ``found`` is recorded, so a later
    change is seen.
    """
    holder = source
    if source.data_type is DataType.SYMBOLIC_LINK:
        holder = catalog.link_target(source) or source
    if holder.data_type is not DataType.PRIMARY:
        return  # a link whose target is unknown: nothing to compare with or record on
    recorded, seen = recorded_entry(catalog, source), entry_signature(found)
    if recorded is None:
        if catalog.entry_of(holder) is None:
            catalog.record_entry(holder, seen)
        return
    if entry_changed(recorded, seen):
        catalog.split_off(holder)
        catalog.record_entry(holder, seen)


class Lookout:
    """What one transfer looks at on storage: one ``stat`` per path, each replica confirmed once.

    Args:
        catalog: The catalog, where a replica that fails confirmation is invalidated.
        connectors: Connectors by deployment name.
        confirmed: Replicas already confirmed (the source, looked at by the caller).
    """

    def __init__(
        self,
        catalog: RemotePathMapper,
        connectors: Mapping[str, Connector],
        confirmed: Iterable[DataLocation],
    ) -> None:
        self._catalog = catalog
        self._connectors = connectors
        self._seen: dict[tuple[ExecutionLocation, str], Entry | None] = {}
        self._confirmed = set(confirmed)

    async def look(self, location: ExecutionLocation, path: str) -> Entry | None:
        """What storage holds at ``path``, following a link there (stat'ed once).

        Raises:
            ConnectorError: If the location cannot be reached.
        """
        key = (location, path)
        if key not in self._seen:
            connector = self._connectors[location.deployment]
            self._seen[key] = await connector.stat(location, path)
        return self._seen[key]

    def seen(self, location: ExecutionLocation, path: str) -> Entry | None:
        """What :meth:`look` found at ``path``; None if nothing, or not looked at."""
        return self._seen.get((location, path))

    def confirmed(self, replica: DataLocation) -> bool:
        """Whether ``replica`` was confirmed by this lookout (no I/O)."""
        return replica in self._confirmed

    async def confirm(self, replica: DataLocation) -> bool:
        """Whether storage holds ``replica`` as recorded; if not, it is invalidated.

        Raises:
            ConnectorError: If its location cannot be reached.
        """
        if replica in self._confirmed:
            return True
        if holds(self._catalog, replica, await self.look(replica.location, replica.path)):
            self._confirmed.add(replica)
            return True
        if replica.data_type is not DataType.INVALID:
            self._catalog.invalidate(replica.location, replica.path)
        return False


def other_kind(kind: EntryKind, found: Entry | None) -> str | None:
    """Why data of ``kind`` may not replace ``found``; None when it may.

    A file never replaces a directory and a directory never replaces a file; nothing
    there, a dangling link or an entry of the same kind may be replaced.
    """
    if found is None or found.kind is EntryKind.SYMLINK:
        return None
    tree = kind is EntryKind.DIRECTORY
    if tree == (found.kind is EntryKind.DIRECTORY):
        return None
    what, there = ("directory", "file") if tree else ("file", "directory")
    return f"a {what} never replaces a {there}"


def into_itself(
    catalog: RemotePathMapper,
    source: DataLocation,
    location: ExecutionLocation,
    final: str,
) -> TransferError | None:
    """The error for data sent to ``final`` inside itself, on the source's filesystem.

    Paths are compared as the filesystem sees them (:func:`followed`). ``final`` being
    the data itself on another location (sharing the filesystem) is not an error: the
    data is copied onto itself.
    """
    at = followed(catalog, location, final, itself=False)
    data = followed(catalog, source.location, source.path)
    if (at == data and location != source.location) or not inside(at, data):
        return None
    return TransferError(
        f"cannot copy or link {source.path!r} to {final!r} on {location}: the destination "
        "lies inside the data itself"
    )


def inside(path: str, directory: str) -> bool:
    """True when the normal absolute ``path`` is ``directory`` or lies below it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def followed(
    catalog: RemotePathMapper, location: ExecutionLocation, path: str, *, itself: bool = True
) -> str:
    """``path`` with the links the catalog knows on ``location`` followed.

    A link at an ancestor of ``path`` (or at ``path`` itself, unless ``itself`` is False:
    a path about to be written) is replaced by its target, deepest first, for at most
    ``_MAX_HOPS`` links.
    """
    for _ in range(_MAX_HOPS):
        hop = _known_link(catalog, location, path, itself=itself)
        if hop is None:
            break
        link, target = hop
        path = (target.rstrip("/") + path[len(link) :]) or "/"
    return path


def _known_link(
    catalog: RemotePathMapper, location: ExecutionLocation, path: str, *, itself: bool
) -> tuple[str, str] | None:
    """The deepest known link on the way to ``path``, as (link path, target path)."""
    current = path if itself else parent_of(path)
    while True:
        replica = catalog.lookup(location, current)
        if replica is not None and replica.data_type is DataType.SYMBOLIC_LINK:
            target = catalog.link_target(replica)
            if target is not None and target.location == location:
                return current, target.path
        if current == "/":
            return None
        current = parent_of(current)

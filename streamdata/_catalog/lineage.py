"""What the replicas a check took away were copies of, for a later repair to restore them.

``check`` invalidates a replica whose data is missing or changed, which takes it out of
its replica set; without more, a later ``check(repair=True)`` would not know where to
copy it back from. :class:`Lineage` remembers, for each such *lost* replica, one valid
replica of the set it left (its *anchor*) and the entry the check saw in its place, if
any (the broken copy a repair may replace). Replica sets only merge or shrink, so the
anchor's set is still the data the lost replica held. When an anchor is invalidated in
turn, the replicas anchored on it move to another member of its set, or are forgotten
with the last one. A lost replica that becomes valid again (copied back, registered
again) is forgotten, and so are those the user invalidates on purpose.

Owned by the catalog (:class:`~.mapper.RemotePathMapper`), which calls it on every
change that matters and commits what it records in the store.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._models import DataLocation, DataType, ExecutionLocation
from .store import CatalogStore, Signature

__all__ = ["Lineage", "Signature"]


class Lineage:
    """Lost replicas and their anchors (see the module docstring); no I/O.

    Attributes:
        anchored: The lost replicas anchored on each anchor; empty when nothing is
            remembered (the catalog's hot paths test it before calling in).
    """

    def __init__(self, store: CatalogStore | None) -> None:
        self._store = store
        self._anchor: dict[DataLocation, DataLocation] = {}
        self._seen: dict[DataLocation, Signature] = {}
        self.anchored: dict[DataLocation, dict[DataLocation, None]] = {}

    def remember(
        self, lost: DataLocation, candidates: Iterable[DataLocation], seen: Signature | None
    ) -> None:
        """Remember that ``lost`` held the data of the first valid of ``candidates``.

        ``seen`` is the entry the check found at its path (None: nothing was there).
        """
        anchor = next((c for c in candidates if c.data_type is not DataType.INVALID), None)
        if anchor is not None:
            self._set(lost, anchor, seen)
        else:
            self.forget(lost)

    def forget(self, replica: DataLocation) -> None:
        """Forget what ``replica`` was a copy of (it is valid again, or given up)."""
        if replica in self._anchor:
            self._set(replica, None, None)

    def anchor_of(self, lost: DataLocation) -> DataLocation | None:
        """The valid replica whose set holds the data ``lost`` held, if any is left."""
        return self._anchor.get(lost)

    def seen_at(self, lost: DataLocation) -> Signature | None:
        """The entry the check found at the path of ``lost`` (None: nothing)."""
        return self._seen.get(lost)

    def lost_below(
        self, location: ExecutionLocation, path: str, *, pending: bool = False
    ) -> list[DataLocation]:
        """The remembered replicas of ``location`` at ``path`` or below it, by path.

        Only INVALID ones, unless ``pending``: also those being copied back right now.
        """
        prefix = path.rstrip("/") + "/"
        return sorted(
            (
                replica
                for replica in self._anchor
                if replica.location == location
                and (replica.path == path or replica.path.startswith(prefix))
                and (pending or replica.data_type is DataType.INVALID)
            ),
            key=lambda replica: replica.path,
        )

    def dropped(self, anchor: DataLocation, successor: DataLocation | None) -> None:
        """``anchor`` was invalidated: anchor its lost replicas on ``successor`` instead.

        ``successor`` is a member left in the set ``anchor`` was taken out of (None if
        none is left: the data they held is nowhere any more, so they are forgotten).
        """
        for lost in list(self.anchored.get(anchor, ())):
            self._set(lost, successor, self._seen.get(lost) if successor is not None else None)

    def restore(self, lost: DataLocation, anchor: DataLocation, seen: Signature | None) -> None:
        """Add a remembered replica read back from the store (no store write)."""
        if anchor.data_type is not DataType.INVALID:  # (an invalid anchor was moved on)
            self._link(lost, anchor, seen)

    def _set(self, lost: DataLocation, anchor: DataLocation | None, seen: Signature | None) -> None:
        self._unlink(lost)
        if anchor is not None:
            self._link(lost, anchor, seen)
        if self._store is not None:
            key = None if anchor is None else (anchor.location, anchor.path)
            self._store.set_anchor((lost.location, lost.path), key, seen)

    def _link(self, lost: DataLocation, anchor: DataLocation, seen: Signature | None) -> None:
        self._anchor[lost] = anchor
        if seen is not None:
            self._seen[lost] = seen
        self.anchored.setdefault(anchor, {})[lost] = None

    def _unlink(self, lost: DataLocation) -> None:
        old = self._anchor.pop(lost, None)
        self._seen.pop(lost, None)
        if old is None:
            return
        others = self.anchored[old]
        del others[lost]
        if not others:
            del self.anchored[old]

"""The replica catalog: which copies of which paths exist where, and which hold the same data.

:class:`RemotePathMapper` is synchronous and does no I/O of its own. Its state and
queries are :class:`~.core.CatalogCore`'s; this module adds the changes, each reported
to a :class:`~.store.CatalogStore` (durable when backed by a file or database), and its
side of sharing a store: restoring itself from rows (:mod:`.restore`), giving up replicas
whose writer died (:mod:`.writers`). It is the only writer of the replicas it hands out.
"""

from __future__ import annotations

from collections.abc import Callable

from .._errors import DataNotFoundError, WriterGone
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from . import restore, sets
from .batch import CatalogBatch
from .core import CatalogCore, default_relpath, parent_of
from .store import CatalogStore, Key
from .writers import RemoteWriters, not_free

__all__ = ["RemotePathMapper", "default_relpath", "parent_of"]

_INVALID = DataType.INVALID
_Held = DataLocation | None  # a replica written elsewhere, if any


def _key(replica: DataLocation) -> Key:
    return (replica._location, replica._path)


class RemotePathMapper(CatalogCore):
    """The replica catalog (see the module docstring and :class:`~.core.CatalogCore`).

    Args:
        store: Where changes are recorded; None records nothing (pure in-memory).
        listener: Called with each replica registered (not implied ancestors) or
            invalidated, as ``listener(invalidated, replica)``.
    """

    def __init__(
        self,
        store: CatalogStore | None = None,
        listener: Callable[[bool, DataLocation], None] | None = None,
    ) -> None:
        super().__init__(store, listener)
        self._writers = RemoteWriters(store) if store is not None else None

    # -- changes ---------------------------------------------------------------------------

    def register(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str | None = None,
        data_type: DataType = DataType.PRIMARY,
        *,
        available: bool = True,
        implied: bool = False,
    ) -> DataLocation:
        """Record a replica and, as implied replicas, every missing ancestor directory.

        Registering an existing ``(location, path)`` returns the same replica, valid again.

        Raises:
            TypeError: If ``path`` is not a string.
            ValueError: If ``path`` is relative, or ``data_type`` is INVALID.
        """
        replica = self._register(location, path, relpath, data_type, available, implied)
        if self._store is not None:
            self._store.commit()
        if self._listener is not None:
            self._listener(False, replica)
        return replica

    def _register(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str | None,
        data_type: DataType,
        available: bool,
        implied: bool,
    ) -> DataLocation:
        """:meth:`register` without the commit and the listener."""
        path = normalize_path(path)
        if data_type is _INVALID:
            raise ValueError("cannot register a replica as INVALID")
        siblings = self._replicas.get(parent_of(path))
        parent = siblings.get(location) if siblings is not None else None
        if (parent is None or parent._data_type is _INVALID) and path != "/":
            self._register_ancestors(location, path)  # (a valid parent has valid ancestors)
        new = self.lookup(location, path) is None
        replica = self._put(location, path, relpath, data_type, available, implied)
        if self._store is not None:
            self._store_replica(replica, new)
        return replica

    def _register_ancestors(self, location: ExecutionLocation, path: str) -> None:
        missing: list[tuple[str, bool]] = []  # (ancestor, new)
        current = path
        while current != "/":
            current = parent_of(current)
            existing = self.lookup(location, current)
            if existing is not None and existing._data_type is not _INVALID:
                break  # a valid replica always has valid ancestors
            missing.append((current, existing is None))
        for ancestor, new in reversed(missing):
            replica = self._put(location, ancestor, None, DataType.PRIMARY, True, True)
            if self._store is not None:
                self._store_replica(replica, new)

    def relate(self, first: DataLocation, second: DataLocation) -> None:
        """Record that two valid replicas hold the same data.

        Raises:
            DataNotFoundError: If either replica is unknown or INVALID.
        """
        self._relate(first, second)
        if self._store is not None:
            self._store.commit()

    def _relate(self, first: DataLocation, second: DataLocation) -> None:
        """:meth:`relate` without the commit."""
        first, second = self._known_valid(first), self._known_valid(second)
        if self.same_data(first, second):
            return
        sets.merge(first, second)
        for link, target in ((first, second), (second, first)):
            if (
                link._data_type is DataType.SYMBOLIC_LINK
                and target._data_type is DataType.PRIMARY
                and link not in self._link_target
            ):
                self._set_link_target(link, target)
        if self._store is not None:
            self._store.add_relation(_key(first), _key(second))

    def _known_valid(self, replica: DataLocation) -> DataLocation:
        known = self.lookup(replica.location, replica.path)
        if known is None or known._data_type is _INVALID:
            raise DataNotFoundError(f"no valid replica {replica!r} in the catalog")
        return known

    def set_link_target(self, link: DataLocation, target: DataLocation) -> None:
        """Record that the SYMBOLIC_LINK replica ``link`` points at ``target``."""
        self._set_link_target(link, target)
        if self._store is not None:
            self._store.commit()

    def _set_link_target(self, link: DataLocation, target: DataLocation) -> None:
        self._point(link, target)
        if self._store is not None:
            self._store.set_link_target(_key(link), _key(target))

    def invalidate(
        self, location: ExecutionLocation, path: str, *, commit: bool = True, reaping: bool = False
    ) -> list[DataLocation]:
        """Invalidate ``location``'s replica at ``path``, its subtree and links to them.

        ``commit=False`` leaves the commit to the caller's next one; ``reaping``: :meth:`_abandon`.

        Returns:
            The replicas that became INVALID (an unknown path gives an empty list).
        """
        by_location = self._replicas.get(path)
        if by_location is None:  # keys are normal paths: normalise only on a miss
            normal = normalize_path(path)
            if normal == path or (by_location := self._replicas.get(normal)) is None:
                return []
            path = normal
        root = by_location.get(location)
        if root is None:
            return []
        if path not in self._children and not self._links_to:  # one file, nothing links to it
            if root._data_type is _INVALID:
                return []
            self._drop(root)
            invalidated = [root]
        else:
            invalidated = []
            pending = list(self.replicas_of(location, path))
            while pending:
                replica = pending.pop()
                if replica._data_type is _INVALID:
                    continue
                self._drop(replica)
                invalidated.append(replica)
                if self._links_to:
                    pending.extend(self._links_to.pop(replica, ()))
        if invalidated and self._store is not None:
            self._store.invalidate(list(map(_key, invalidated)), reaping=reaping)
            if commit:
                self._store.commit()
        if self._listener is not None and invalidated:
            for replica in invalidated:
                self._listener(True, replica)
        return invalidated

    def split_off(self, replica: DataLocation) -> None:
        """Take ``replica`` and the links to it out of its replica set: its data changed.

        The other members stay related to each other (they hold the old data); the links
        stay related to ``replica``. Nothing becomes INVALID.
        """
        links = sets.split(replica, self._links_to.get(replica, ()))
        if links is not None and self._store is not None:
            self._store_split([replica, *links], links)

    def _store_split(self, moving: list[DataLocation], links: list[DataLocation]) -> None:
        """Record :meth:`split_off` with the store's operations, in one commit.

        Invalidating takes replicas out of their set (the rest stays related); they are
        then stored valid again with their links, relations and entries.
        """
        assert self._store is not None
        store, holder = self._store, _key(moving[0])
        store.invalidate([_key(member) for member in moving])
        for member in moving:
            self._store_replica(member)
            entry = self._entries.get(member)
            if entry is not None:
                store.record_entry(_key(member), entry, self._digests.get(member))
        for link in links:
            store.add_relation(holder, _key(link))
            store.set_link_target(_key(link), holder)
        store.commit()

    def _store_replica(self, replica: DataLocation, new: bool = False) -> None:
        assert self._store is not None
        location, path, relpath = replica._location, replica._path, replica._relpath
        pending = not replica._state.done
        self._store.put_replica(
            location, path, relpath, replica._data_type, replica._implied, pending, new=new
        )

    def complete(self, replica: DataLocation, error: BaseException | None = None) -> None:
        """End the transfer producing ``replica``: available, or INVALID with ``error``.

        Waiters of the replica are woken either way; on error they get ``error``.
        """
        if error is None:
            replica._set_available()
            if self._anchored:
                self.lineage.forget(replica)
            if self._store is not None:
                self._store_replica(replica)
                self._store.commit()
            return
        if replica._data_type is not _INVALID:
            self.invalidate(replica.location, replica.path)
        replica._finish(error)

    # -- claiming a destination ------------------------------------------------------------

    def claim(
        self,
        location: ExecutionLocation,
        path: str,
        *,
        tmp_path: str,
        source: DataLocation | None,
        link_to: DataLocation | None = None,
        adopt: str | None = None,
    ) -> tuple[DataLocation, bool]:
        """Take ``path`` on ``location`` for a copy (or a link), in one step.

        In a shared store the destination is first claimed for this process; if another
        live process is writing it, the replica it writes is returned, to wait for.
        Otherwise a valid replica there is invalidated (it is about to be replaced), the
        destination is registered pending (SYMBOLIC_LINK when ``link_to`` is given),
        related to ``link_to`` (which it then points at) or else to ``source`` (None: a
        copy unrelated to anything), and ``tmp_path`` is journalled as its temporary, all
        committed before this returns.

        Returns:
            The replica to wait for or to write, and whether another process writes it.

        Raises:
            DataNotFoundError: If ``source`` or ``link_to`` is not a valid replica.
            ConfigurationError: If the store cannot be written.
        """
        held = self._held_elsewhere(location, path, adopt)  # adopt: see Store.claim
        if held is not None:
            return held, True
        replaced = self.lookup(location, path)
        if replaced is not None and replaced._data_type is not _INVALID:
            self.invalidate(location, path, commit=False)  # about to be replaced
        data_type = DataType.PRIMARY if link_to is None else DataType.SYMBOLIC_LINK
        replica = self._register(location, path, None, data_type, False, False)
        if link_to is not None:
            self._relate(link_to, replica)
            self._set_link_target(replica, link_to)
        elif source is not None:
            self._relate(source, replica)
        if self._store is not None:
            self._store.note_temporary(_key(replica), tmp_path)  # writes the rest first
        if self._listener is not None:
            self._listener(False, replica)
        return replica, False

    def _held_elsewhere(self, location: ExecutionLocation, path: str, adopt: str | None) -> _Held:
        """The replica another live process is writing at ``path``, if the store says so."""
        if self._store is None or self._store.claim(location, path, adopt):
            return None
        self.refresh()
        return self.lookup(location, path) or not_free(location, path)  # wait, plan again

    def note_temporary(self, replica: DataLocation, tmp_path: str | None) -> None:
        """Journal (None: clear) the temporary path ``replica`` is written to, at once."""
        if self._store is not None:
            self._store.note_temporary(_key(replica), tmp_path)

    def leave_temporary(self, replica: DataLocation) -> None:
        """Journal the temporary of ``replica`` as nobody's: it could not be removed."""
        if self._store is not None:
            self._store.leave_temporary(_key(replica))

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str, str]]:
        """Temporaries of transfers whose process is gone: (location, temporary, final path)."""
        return self._store.stale_temporaries() if self._store is not None else []

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Drop a journalled temporary once it has been removed from storage."""
        if self._store is not None:
            self._store.forget_temporary(location, tmp_path)

    def listen(self, listener: Callable[[bool, DataLocation], None] | None) -> None:
        """Call ``listener(invalidated, replica)`` on each change from now on (None: stop)."""
        self._listener = listener

    # -- the store -------------------------------------------------------------------------

    @property
    def durable(self) -> bool:
        """True when the catalog is backed by a store (a file), False in memory."""
        return self._store is not None

    def batch(self) -> CatalogBatch:
        """A context manager committing the changes made inside it once (see the manager)."""
        return CatalogBatch(self._store)

    def close(self) -> None:
        """Close the store; the catalog stays readable in memory."""
        if self._store is not None:
            self._store.close()

    # -- sharing the store with other processes --------------------------------------------

    def load(self) -> None:
        """Fill this empty catalog with what its store holds.

        Transfers that were in flight in a process that is gone come back INVALID; those
        of live processes stay pending, and :meth:`refresh` sees how they end.

        Raises:
            ConfigurationError: If the store cannot be read.
        """
        if self._store is not None:
            self._watch(restore.restore(self, self._store.load()))

    def refresh(self) -> bool:
        """Apply what other processes changed in the store since the last look.

        Returns:
            True if anything was read.

        Raises:
            ConfigurationError: If the store cannot be read.
        """
        changes = self._store.changes() if self._store is not None else None
        if changes is None:
            return False
        self._watch(restore.apply(self, changes))
        return True

    def reap(self) -> None:
        """Invalidate the replicas other processes were writing, if those processes died.

        Raises:
            ConfigurationError: If the store cannot be read.
        """
        if self._writers is not None:
            for replica, owner in self._writers.gone():
                self._abandon(replica, owner)

    def _watch(self, pending: list[tuple[DataLocation, str | None]]) -> None:
        assert self._writers is not None
        for replica, owner in pending:
            if not self._writers.track(replica, owner):
                self._abandon(replica, owner)

    def _abandon(self, replica: DataLocation, owner: str | None) -> None:
        """A replica whose writer died: INVALID (in the store unless finished or taken over)."""
        self.invalidate(replica.location, replica.path, reaping=True)
        replica._finish(WriterGone(f"the transfer producing {replica!r} was interrupted"))
        if owner is not None and self._store is not None:
            self._store.forget_owner(owner)

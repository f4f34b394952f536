"""The replica catalog: which copies of which paths exist where, and which hold the same data.

:class:`RemotePathMapper` is synchronous and does no I/O. It keeps

* a path index ``path -> {location -> replica}`` plus a tree of child paths, so that
  registering a path with its ancestors costs O(depth) and invalidating a subtree costs
  O(depth + subtree), never O(catalog);
* replica sets: "same data" relations are symmetric and transitive, so the related
  replicas form the connected components of a graph. Invalidating a replica takes it out
  of its component without splitting it (the others stay related), so components only
  ever merge or shrink, and each is kept as one member table shared by its replicas:
  relating two sets merges the smaller into the larger (O(smaller)), finding a replica's
  set is O(1), leaving it is O(1), and an unrelated replica costs nothing. A BFS over a
  networkx graph per lookup measured slower than StreamFlow's aliasing; the networkx view
  is still there, built on demand by :meth:`RemotePathMapper.graph`. No all-pairs
  aliasing, and reuse survives invalidation;
* for each SYMBOLIC_LINK replica, the PRIMARY replica it points at, so invalidating data
  also invalidates the links to it;
* for each replica a check invalidated, a valid replica of the set it left
  (:class:`~._lineage.Lineage`), so that a later repair can restore it.

Every change is reported to a :class:`~streamdata._store.CatalogStore`, which makes it
durable when the store is backed by a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, pairwise
from typing import TYPE_CHECKING

import networkx as nx

from .._errors import DataNotFoundError, TransferError
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from .lineage import Lineage, Signature

if TYPE_CHECKING:
    from .store import CatalogStore

__all__ = ["RemotePathMapper"]

_INVALID = DataType.INVALID


def default_relpath(path: str) -> str:
    """The relpath a replica gets when none is given: the basename (``/`` for the root)."""
    return path[path.rfind("/") + 1 :] or "/"


def parent_of(path: str) -> str:
    """The parent of a normal absolute path (``/`` for ``/``); posixpath.dirname, cheaper."""
    return path[: path.rfind("/")] or "/"


class RemotePathMapper:
    """The replica catalog (see the module docstring for the data structures).

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
        self._listener = listener
        self._replicas: dict[str, dict[ExecutionLocation, DataLocation]] = {}
        self._children: dict[str, list[str]] = {}
        self._link_target: dict[DataLocation, DataLocation] = {}
        self._links_to: dict[DataLocation, list[DataLocation]] = {}
        self._entries: dict[DataLocation, tuple[str, int, float]] = {}
        self._digests: dict[DataLocation, str] = {}
        #: What the replicas a check invalidated held (read it; change it through the
        #: methods below, which commit).
        self.lineage = Lineage(store)
        self._anchored = self.lineage.anchored  # the same dict, read on hot paths
        self._store = store

    # -- queries ---------------------------------------------------------------------------

    def lookup(self, location: ExecutionLocation, path: str) -> DataLocation | None:
        """The replica of ``location`` at ``path`` (normalised), whatever its type."""
        by_location = self._replicas.get(path)
        return by_location.get(location) if by_location else None

    def covering(self, location: ExecutionLocation, path: str) -> DataLocation | None:
        """The valid explicit replica of ``location`` at ``path`` or at its closest ancestor."""
        current = path
        while True:
            replica = self.lookup(location, current)
            if replica is not None:
                if replica.data_type is DataType.INVALID:
                    return None
                if not replica._implied:
                    return replica
            if current == "/":
                return None
            current = parent_of(current)

    def replica_set(self, replica: DataLocation) -> list[DataLocation]:
        """Every valid replica holding the same data as ``replica`` (itself included)."""
        if replica._data_type is DataType.INVALID:
            return []
        members = replica._set
        return [replica] if members is None else list(members)

    def graph(self) -> nx.Graph:
        """The relations as a networkx graph: valid replicas, one component per replica set.

        Each set is drawn as a chain through its members (the catalog records sets, not
        the individual relation calls that made them).
        """
        graph = nx.Graph()
        seen: set[int] = set()
        for replica in self:
            if replica._data_type is DataType.INVALID:
                continue
            graph.add_node(replica)
            members = replica._set
            if members is not None and id(members) not in seen:
                seen.add(id(members))
                graph.add_edges_from(pairwise(members))
        return graph

    def locations(
        self,
        path: str,
        deployment: str | None = None,
        location: str | None = None,
        location_type: DataType | None = None,
    ) -> list[DataLocation]:
        """Valid replicas at ``path`` and every replica related to them, filtered.

        Raises:
            TypeError: If ``path`` is not a string.
            ValueError: If ``path`` is relative.
        """
        # Keys are normal absolute paths, so a hit needs no normalisation; a miss does.
        by_location = self._replicas.get(path)
        if by_location is None:
            normal = normalize_path(path)
            if normal == path or (by_location := self._replicas.get(normal)) is None:
                return []
        found: list[DataLocation] | None = None
        first: dict[DataLocation, None] | None = None
        for replica in by_location.values():
            if replica._data_type is _INVALID:
                continue
            members = replica._set
            if found is None:
                found = [replica] if members is None else list(members)
                first = members
            elif members is None or members is not first:
                found = self._union(by_location)  # several replica sets at this path
                break
        if found is None:
            return []
        if deployment is None and location is None and location_type is None:
            return found
        return [
            replica
            for replica in found
            if (deployment is None or replica._location.deployment == deployment)
            and (location is None or replica._location.name == location)
            and (location_type is None or replica._data_type is location_type)
        ]

    @staticmethod
    def _union(by_location: dict[ExecutionLocation, DataLocation]) -> list[DataLocation]:
        groups: list[Iterable[DataLocation]] = []
        for replica in by_location.values():
            if replica._data_type is _INVALID:
                continue
            members = replica._set
            if members is None:
                groups.append((replica,))
            elif not any(members is group for group in groups):
                groups.append(members)
        return list(dict.fromkeys(chain.from_iterable(groups)))

    def replicas_of(self, location: ExecutionLocation, path: str) -> Iterator[DataLocation]:
        """Every replica (any type) of ``location`` at ``path`` and below, parents first."""
        stack = [path]
        while stack:
            current = stack.pop()
            replica = self.lookup(location, current)
            if replica is None:
                continue  # nothing of this location here, hence nothing below either
            yield replica
            stack.extend(reversed(self._children.get(current, ())))

    def link_target(self, replica: DataLocation) -> DataLocation | None:
        """The replica a SYMBOLIC_LINK replica points at, when known."""
        return self._link_target.get(replica)

    def __len__(self) -> int:
        return sum(len(by_location) for by_location in self._replicas.values())

    def __iter__(self) -> Iterator[DataLocation]:
        for by_location in self._replicas.values():
            yield from by_location.values()

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
        """
        path = normalize_path(path)
        if data_type is _INVALID:
            raise ValueError("cannot register a replica as INVALID")
        siblings = self._replicas.get(parent_of(path))
        parent = siblings.get(location) if siblings is not None else None
        if (parent is None or parent._data_type is _INVALID) and path != "/":
            self._register_ancestors(location, path)  # (a valid parent has valid ancestors)
        replica = self._put(location, path, relpath, data_type, available, implied)
        if self._store is not None:
            self._store.put_replica(replica)
            self._store.commit()
        if self._listener is not None:
            self._listener(False, replica)
        return replica

    def _register_ancestors(self, location: ExecutionLocation, path: str) -> None:
        missing: list[str] = []
        current = path
        while current != "/":
            current = parent_of(current)
            existing = self.lookup(location, current)
            if existing is not None and existing.data_type is not DataType.INVALID:
                break  # a valid replica always has valid ancestors
            missing.append(current)
        for ancestor in reversed(missing):
            replica = self._put(location, ancestor, None, DataType.PRIMARY, True, True)
            if self._store is not None:
                self._store.put_replica(replica)

    def _put(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str | None,
        data_type: DataType,
        available: bool,
        implied: bool,
    ) -> DataLocation:
        by_location = self._replicas.get(path)
        if by_location is None:
            by_location = self._replicas[path] = {}
            if path != "/":
                self._children.setdefault(parent_of(path), []).append(path)
        replica = by_location.get(location)
        if replica is None:
            replica = DataLocation(
                location,
                path,
                relpath if relpath is not None else default_relpath(path),
                data_type,
                available=available,
                implied=implied,
            )
            by_location[location] = replica
            return replica
        was_invalid = replica.data_type is DataType.INVALID
        replica._implied = implied and (replica._implied or was_invalid)
        replica._data_type = data_type
        if relpath is not None:
            replica._relpath = relpath
        if available:
            replica._set_available()
            if self.lineage.anchored:
                self.lineage.forget(replica)  # valid again: nothing to restore
        else:
            replica._start_pending()
        return replica

    def relate(self, first: DataLocation, second: DataLocation) -> None:
        """Record that two valid replicas hold the same data.

        Raises:
            DataNotFoundError: If either replica is unknown or INVALID.
        """
        first, second = self._known_valid(first), self._known_valid(second)
        if first is second or (first._set is not None and first._set is second._set):
            return
        self._merge(first, second)
        for link, target in ((first, second), (second, first)):
            if (
                link.data_type is DataType.SYMBOLIC_LINK
                and target.data_type is DataType.PRIMARY
                and link not in self._link_target
            ):
                self.set_link_target(link, target)
        if self._store is not None:
            self._store.add_relation(first, second)
            self._store.commit()

    @staticmethod
    def _merge(first: DataLocation, second: DataLocation) -> None:
        """Join the sets of two replicas, moving the smaller one's members."""
        big = first._set if first._set is not None else {first: None}
        small = second._set if second._set is not None else {second: None}
        if len(big) < len(small):
            big, small = small, big
        big.update(small)
        for member in small:
            member._set = big
        first._set = second._set = big

    def _known_valid(self, replica: DataLocation) -> DataLocation:
        known = self.lookup(replica.location, replica.path)
        if known is None or known.data_type is DataType.INVALID:
            raise DataNotFoundError(f"no valid replica {replica!r} in the catalog")
        return known

    def set_link_target(self, link: DataLocation, target: DataLocation) -> None:
        """Record that the SYMBOLIC_LINK replica ``link`` points at ``target``."""
        old = self._link_target.get(link)
        if old is not None:
            self._links_to[old].remove(link)
        self._link_target[link] = target
        self._links_to.setdefault(target, []).append(link)
        if self._store is not None:
            self._store.set_link_target(link, target)
            self._store.commit()

    def invalidate(self, location: ExecutionLocation, path: str) -> list[DataLocation]:
        """Invalidate ``location``'s replica at ``path``, its subtree and links to them.

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
            self._store.invalidate(invalidated)
            self._store.commit()
        if self._listener is not None and invalidated:
            for replica in invalidated:
                self._listener(True, replica)
        return invalidated

    def _drop(self, replica: DataLocation) -> None:
        """Mark INVALID and take out of its set (the others stay related)."""
        replica._data_type = _INVALID
        members = replica._set
        if members is not None:
            replica._set = None
            del members[replica]
            if len(members) == 1:
                for alone in members:
                    alone._set = None  # alone again: no set to keep
        anchored = self._anchored
        if anchored and replica in anchored:
            self.lineage.dropped(replica, next(iter(members)) if members else None)
        if self._link_target:
            target = self._link_target.pop(replica, None)
            links = self._links_to.get(target) if target is not None else None
            if links is not None:
                links.remove(replica)
        if self._entries:
            self._entries.pop(replica, None)
            self._digests.pop(replica, None)

    def split_off(self, replica: DataLocation) -> None:
        """Take ``replica`` and the links to it out of its replica set: its data changed.

        The other members stay related to each other (they hold the old data); the links
        stay related to ``replica``. Nothing becomes INVALID.
        """
        members = replica._set
        if members is None:
            return
        links = [link for link in self._links_to.get(replica, ()) if link._set is members]
        moving = dict.fromkeys([replica, *links])
        if all(member in moving for member in members):
            return  # nothing but the new data and its links: nothing to leave
        for member in moving:
            del members[member]
            member._set = None
        if len(members) == 1:
            next(iter(members))._set = None  # alone again: no set to keep
        if links:
            for member in moving:
                member._set = moving
        if self._store is not None:
            self._store_split(list(moving), links)

    def _store_split(self, moving: list[DataLocation], links: list[DataLocation]) -> None:
        """Record :meth:`split_off` with the store's operations, in one commit.

        Invalidating takes replicas out of their set (the rest stays related); they are
        then stored valid again with their links, relations and entries.
        """
        assert self._store is not None
        store, holder = self._store, moving[0]
        store.invalidate(moving)
        for member in moving:
            store.put_replica(member)
            entry = self._entries.get(member)
            if entry is not None:
                store.record_entry(member, entry, self._digests.get(member))
        for link in links:
            store.add_relation(holder, link)
            store.set_link_target(link, holder)
        store.commit()

    def complete(self, replica: DataLocation, error: BaseException | None = None) -> None:
        """End the transfer producing ``replica``: available, or INVALID with ``error``.

        Waiters of the replica are woken either way; on error they get ``error``.
        """
        if error is None:
            replica._set_available()
            if self.lineage.anchored:
                self.lineage.forget(replica)
            if self._store is not None:
                self._store.put_replica(replica)
                self._store.commit()
            return
        if replica.data_type is not DataType.INVALID:
            self.invalidate(replica.location, replica.path)
        replica._finish(error)

    # -- lost replicas (for repairs after the check that invalidated them) -----------------

    def remember_lost(
        self, lost: DataLocation, candidates: Iterable[DataLocation], seen: Signature | None
    ) -> None:
        """Remember what the INVALID ``lost`` was a copy of: the set of ``candidates``.

        ``seen`` is the entry a check found at its path (None: nothing). See
        :mod:`._lineage`.
        """
        self.lineage.remember(lost, candidates, seen)
        if self._store is not None:
            self._store.commit()

    def forget_lost(self, location: ExecutionLocation, path: str) -> None:
        """Forget what the lost replicas of ``location`` at and below ``path`` held."""
        if not self.lineage.anchored:
            return
        for lost in self.lineage.lost_below(location, normalize_path(path), pending=True):
            self.lineage.forget(lost)
        if self._store is not None:
            self._store.commit()

    # -- recorded entries (for the consistency audit) --------------------------------------

    def entry_of(self, replica: DataLocation) -> tuple[str, int, float] | None:
        """The (kind, size, mtime) recorded for ``replica``, if any."""
        return self._entries.get(replica)

    def digest_of(self, replica: DataLocation) -> str | None:
        """The content digest recorded for a file replica, if any."""
        return self._digests.get(replica)

    def record_entry(
        self, replica: DataLocation, entry: tuple[str, int, float], digest: str | None = None
    ) -> None:
        """Record the (kind, size, mtime) and content digest a valid replica has now."""
        if replica.data_type is DataType.INVALID:
            return
        self._entries[replica] = entry
        if digest is None:
            self._digests.pop(replica, None)
        else:
            self._digests[replica] = digest
        if self._store is not None:
            self._store.record_entry(replica, entry, digest)
            self._store.commit()

    # -- restoring from a store (no store writes) ------------------------------------------

    def _restore_replicas(
        self,
        rows: Iterable[tuple[int, int, str, str, int, int]],
        locations: Mapping[int, ExecutionLocation],
        data_types: Sequence[DataType],
    ) -> list[DataLocation]:
        """Add stored replicas, returned in order; paths are normal, no store writes.

        Each row is ``(row id, location number, path, relpath, data type number, implied)``,
        numbers that ``locations`` and ``data_types`` resolve. The bulk path of reopening:
        no normalisation, no ancestor walk (every ancestor has its own row), one dict per
        new path and one replica per row.
        """
        index, children = self._replicas, self._children
        restored: list[DataLocation] = []
        add = restored.append
        for _, number, path, relpath, data_type, implied in rows:
            location = locations[number]
            by_location = index.get(path)
            if by_location is None:
                by_location = index[path] = {}
                if path != "/":
                    parent = path[: path.rfind("/")] or "/"
                    siblings = children.get(parent)
                    if siblings is None:
                        children[parent] = [path]
                    else:
                        siblings.append(path)
            replica = DataLocation(
                location, path, relpath, data_types[data_type], implied=bool(implied)
            )
            by_location[location] = replica
            add(replica)
        return restored

    def _restore_edges(self, edges: Iterable[tuple[DataLocation, DataLocation]]) -> None:
        for first, second in edges:
            if first._set is None or first._set is not second._set:
                self._merge(first, second)

    def _restore_link(self, link: DataLocation, target: DataLocation) -> None:
        self._link_target[link] = target
        self._links_to.setdefault(target, []).append(link)

    def _restore_entries(
        self, rows: Iterable[tuple[DataLocation, tuple[str, int, float], str | None]]
    ) -> None:
        entries, digests = self._entries, self._digests
        for replica, entry, digest in rows:
            entries[replica] = entry
            if digest is not None:
                digests[replica] = digest

    # -- applying other processes' changes (no store writes) -------------------------------

    def _apply_row(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str,
        data_type: DataType,
        *,
        implied: bool,
        pending: bool,
    ) -> DataLocation | None:
        """Make the replica of ``location`` at ``path`` say what its stored row says.

        Returns:
            The replica, or None for an INVALID row this catalog never knew.
        """
        existing = self.lookup(location, path)
        if data_type is _INVALID:
            if existing is not None:
                self._apply_drop(existing)
            return existing
        replica = self._put(location, path, relpath, data_type, not pending, implied)
        replica._implied = implied
        return replica

    def _apply_drop(self, replica: DataLocation) -> None:
        """Another process invalidated ``replica``: INVALID here too, out of its set."""
        if replica._data_type is _INVALID:
            return
        self._drop(replica)
        if not replica._state.done:
            replica._finish(TransferError(f"the transfer producing {replica!r} failed elsewhere"))
        if self._listener is not None:
            self._listener(True, replica)

    def _apply_edge(self, first: DataLocation, second: DataLocation) -> None:
        """Relate two valid replicas, as a stored relation says."""
        if _INVALID in (first._data_type, second._data_type):
            return
        if first is not second and (first._set is None or first._set is not second._set):
            self._merge(first, second)

    def _apply_link(self, link: DataLocation, target: DataLocation) -> None:
        """Point a link replica at ``target``, as a stored link row says."""
        old = self._link_target.get(link)
        if old is target:
            return
        if old is not None:
            self._links_to[old].remove(link)
        self._restore_link(link, target)

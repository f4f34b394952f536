"""The catalog's in-memory state, the queries on it and the changes to one replica's records.

:class:`CatalogCore` keeps

* a path index ``path -> {location -> replica}`` plus a tree of child paths, so that
  registering a path with its ancestors costs O(depth) and invalidating a subtree costs
  O(depth + subtree), never O(catalog);
* replica sets (:mod:`.sets`): each set of related replicas is one member table shared
  by its members;
* for each SYMBOLIC_LINK replica, the PRIMARY replica it points at, so invalidating data
  also invalidates the links to it;
* the (kind, size, mtime) and digest recorded for replicas, for the audit;
* for each replica a check invalidated, a valid replica of the set it left
  (:class:`~.lineage.Lineage`), so that a later repair can restore it.

No I/O of its own: changes are reported to the store. Only the catalog package changes a
:class:`~streamdata.DataLocation`: the primitives here (``_put``, ``_drop``, which record
nothing) and the changes of :class:`~.mapper.RemotePathMapper`, which record each change
in the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import pairwise

import networkx as nx

from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from . import sets
from .lineage import Lineage
from .store import CatalogStore, Signature

__all__ = ["CatalogCore", "default_relpath", "parent_of"]

_INVALID = DataType.INVALID
_PRIMARY = DataType.PRIMARY


def default_relpath(path: str) -> str:
    """The relpath a replica gets when none is given: the basename (``/`` for the root)."""
    return path[path.rfind("/") + 1 :] or "/"


def parent_of(path: str) -> str:
    """The parent of a normal absolute path (``/`` for ``/``); posixpath.dirname, cheaper."""
    return path[: path.rfind("/")] or "/"


class CatalogCore:
    """The state of the replica catalog and its queries (see the module docstring).

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
        self._entries: dict[DataLocation, Signature] = {}
        self._digests: dict[DataLocation, str] = {}
        #: What the replicas a check invalidated held (read it; change it through the
        #: catalog's methods, which commit).
        self.lineage = Lineage(store)
        self._anchored = self.lineage.anchored  # the same dict, read on hot paths
        self._store = store

    # -- queries ---------------------------------------------------------------------------

    def lookup(self, location: ExecutionLocation, path: str) -> DataLocation | None:
        """The replica of ``location`` at ``path`` (normalised), whatever its type."""
        by_location = self._replicas.get(path)
        return by_location.get(location) if by_location else None

    def children(self, path: str) -> Sequence[str]:
        """The paths directly below ``path`` that hold a replica of any location."""
        return self._children.get(path, ())

    def covering(self, location: ExecutionLocation, path: str) -> DataLocation | None:
        """The valid explicit replica of ``location`` at ``path`` or at its closest ancestor."""
        current = path
        while True:
            replica = self.lookup(location, current)
            if replica is not None:
                if replica._data_type is _INVALID:
                    return None
                if not replica._implied:
                    return replica
            if current == "/":
                return None
            current = parent_of(current)

    def replica_set(self, replica: DataLocation) -> list[DataLocation]:
        """Every valid replica holding the same data as ``replica`` (itself included)."""
        if replica._data_type is _INVALID:
            return []
        members = replica._set
        return [replica] if members is None else list(members)

    @staticmethod
    def same_data(first: DataLocation, second: DataLocation) -> bool:
        """True when two valid replicas are in one replica set (or are one replica)."""
        return first is second or (first._set is not None and first._set is second._set)

    def graph(self) -> nx.Graph:
        """The relations as a networkx graph: valid replicas, one component per replica set.

        Each set is drawn as a chain through its members (the catalog records sets, not
        the individual relation calls that made them).
        """
        graph = nx.Graph()
        seen: set[int] = set()
        for replica in self:
            if replica._data_type is _INVALID:
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
        for replica in by_location.values():  # (sets.union, unrolled: the hot path)
            if replica._data_type is _INVALID:
                continue
            members = replica._set
            if found is None:
                found = [replica] if members is None else list(members)
                first = members
            elif members is None or members is not first:
                found = sets.union(by_location.values())  # several replica sets here
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

    def sources(self, path: str) -> list[DataLocation]:
        """The replicas :meth:`locations` gives that may be a transfer's source.

        Those are the PRIMARY ones that are not implied ancestors.

        Raises:
            TypeError: If ``path`` is not a string.
            ValueError: If ``path`` is relative.
        """
        return [r for r in self.locations(path) if r._data_type is _PRIMARY and not r._implied]

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

    def entry_of(self, replica: DataLocation) -> Signature | None:
        """The (kind, size, mtime) recorded for ``replica``, if any."""
        return self._entries.get(replica)

    def digest_of(self, replica: DataLocation) -> str | None:
        """The content digest recorded for a file replica, if any."""
        return self._digests.get(replica)

    def __len__(self) -> int:
        return sum(len(by_location) for by_location in self._replicas.values())

    def __iter__(self) -> Iterator[DataLocation]:
        for by_location in self._replicas.values():
            yield from by_location.values()

    # -- recorded entries and lost replicas (committed) ------------------------------------

    def remember_lost(
        self, lost: DataLocation, candidates: Iterable[DataLocation], seen: Signature | None
    ) -> None:
        """Remember what the INVALID ``lost`` was a copy of: the set of ``candidates``.

        ``seen`` is the entry a check found at its path (None: nothing). See
        :mod:`.lineage`.
        """
        self.lineage.remember(lost, candidates, seen)
        if self._store is not None:
            self._store.commit()

    def forget_lost(self, location: ExecutionLocation, path: str) -> None:
        """Forget what the lost replicas of ``location`` at and below ``path`` held."""
        if not self._anchored:
            return
        for lost in self.lineage.lost_below(location, normalize_path(path), pending=True):
            self.lineage.forget(lost)
        if self._store is not None:
            self._store.commit()

    def record_entry(
        self, replica: DataLocation, entry: Signature, digest: str | None = None
    ) -> None:
        """Record the (kind, size, mtime) and content digest a valid replica has now."""
        if replica._data_type is _INVALID:
            return
        self._entries[replica] = entry
        if digest is None:
            self._digests.pop(replica, None)
        else:
            self._digests[replica] = digest
        if self._store is not None:
            self._store.record_entry((replica._location, replica._path), entry, digest)
            self._store.commit()

    # -- primitives (no store writes) ------------------------------------------------------

    def _put(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str | None,
        data_type: DataType,
        available: bool,
        implied: bool,
    ) -> DataLocation:
        """Add the replica of ``location`` at ``path`` or make the known one say this."""
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
        was_invalid = replica._data_type is _INVALID
        replica._implied = implied and (replica._implied or was_invalid)
        replica._data_type = data_type
        if relpath is not None:
            replica._relpath = relpath
        if available:
            replica._set_available()
            if self._anchored:
                self.lineage.forget(replica)  # valid again: nothing to restore
        else:
            replica._start_pending()
        return replica

    def _drop(self, replica: DataLocation) -> None:
        """Mark INVALID and take out of its set (the others stay related)."""
        replica._data_type = _INVALID
        members = replica._set  # (sets.leave, inlined: the hot path of invalidating)
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

    def _point(self, link: DataLocation, target: DataLocation) -> DataLocation | None:
        """Make ``link`` point at ``target``; returns the target it pointed at before."""
        old = self._link_target.get(link)
        if old is not None:
            self._links_to[old].remove(link)
        self._link_target[link] = target
        self._links_to.setdefault(target, []).append(link)
        return old

"""The catalog restoring itself from the rows its store returns (no store writes).

:func:`restore` fills an empty catalog from a :class:`~.store.Snapshot` (the bulk path of
reopening a file: no normalisation, no ancestor walk, one dict per new path and one
replica per row); :func:`apply` makes a catalog say what another process's changes
(:class:`~.store.Changes`) say. Both return the replicas left pending, with the owner
token of the process writing them, for the catalog to watch.
"""

from __future__ import annotations

import gc

from .._errors import WriterGone
from .._models import DataLocation, DataType
from . import sets
from .core import CatalogCore
from .store import Changes, Key, Snapshot

__all__ = ["apply", "restore"]

_INVALID = DataType.INVALID


def restore(core: CatalogCore, snapshot: Snapshot) -> list[tuple[DataLocation, str | None]]:
    """Add every stored replica, relation, link, entry and anchor to an empty ``core``."""
    collecting = gc.isenabled()
    gc.disable()  # a million new objects, none of them garbage: no collection passes
    try:
        by_id = _restore_replicas(core, snapshot)
        for link, target in snapshot.links:
            core._point(by_id[link], by_id[target])
        entries, digests = core._entries, core._digests
        for rid, entry, digest in snapshot.entries:
            replica = by_id[rid]
            entries[replica] = entry
            if digest is not None:
                digests[replica] = digest
        for rid, anchor, seen in snapshot.anchors:
            if rid in by_id and anchor in by_id:
                core.lineage.restore(by_id[rid], by_id[anchor], seen)
    finally:
        if collecting:
            gc.enable()
    pending = [(by_id[rid], owner) for rid, owner in snapshot.pending]
    for replica, _ in pending:
        replica._start_pending()
    return pending


def _restore_replicas(core: CatalogCore, snapshot: Snapshot) -> dict[int, DataLocation]:
    """Add the replica rows, batch by batch, and relate them; returns them by their ids.

    Each relation is merged as soon as its later replica is made (relations sorted by
    their larger id), so that a replica set sits in memory next to its members, as when
    they are registered one by one: lookups run a quarter faster than with every set
    made after every replica.
    """
    index, children = core._replicas, core._children
    locations, data_types = snapshot.locations, snapshot.data_types
    by_id: dict[int, DataLocation] = {}
    relations = sorted(snapshot.relations, key=max)
    relations.append((-1, -1))  # the end: never due
    position, due = 0, max(relations[0])
    while snapshot.replicas:
        rows = snapshot.replicas.pop(0)  # (each batch freed once restored)
        for rid, number, path, relpath, data_type, implied in rows:
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
            by_id[rid] = replica
            while 0 <= due <= rid:
                _relate(by_id, *relations[position])
                position += 1
                due = max(relations[position])
    for pair in relations[position:-1]:  # naming a replica not restored: ignored
        _relate(by_id, *pair)
    return by_id


def _relate(by_id: dict[int, DataLocation], a: int, b: int) -> None:
    """Merge the sets of replicas ``a`` and ``b`` when both were restored."""
    first, second = by_id.get(a), by_id.get(b)
    if first is not None and second is not None and not CatalogCore.same_data(first, second):
        sets.merge(first, second)


def apply(core: CatalogCore, changes: Changes) -> list[tuple[DataLocation, str | None]]:
    """Make ``core`` say what the changed rows say (no store writes)."""
    for key in changes.dropped:
        replica = core.lookup(*key)
        if replica is not None:
            drop(core, replica)
    pending: list[tuple[DataLocation, str | None]] = []
    for row in changes.rows:
        existing = core.lookup(row.location, row.path)
        if row.data_type is _INVALID:
            if existing is not None:
                drop(core, existing)
            continue
        replica = core._put(
            row.location, row.path, row.relpath, row.data_type, not row.pending, row.implied
        )
        replica._implied = row.implied
        if row.pending:
            pending.append((replica, row.owner))
    for first, second in _pairs(core, changes.edges):
        if _INVALID not in (first._data_type, second._data_type) and not core.same_data(
            first, second
        ):
            sets.merge(first, second)
    for link, target in _pairs(core, changes.links):
        if core.link_target(link) is not target:
            core._point(link, target)
    for key, entry, digest in changes.entries:
        replica = core.lookup(*key)
        if replica is not None and replica._data_type is not _INVALID:
            core._entries[replica] = entry
            if digest is not None:
                core._digests[replica] = digest
    return pending


def _pairs(
    core: CatalogCore, pairs: list[tuple[Key, Key]]
) -> list[tuple[DataLocation, DataLocation]]:
    """The pairs of replicas ``pairs`` name, leaving out those naming an unknown one."""
    found = []
    for first_key, second_key in pairs:
        first, second = core.lookup(*first_key), core.lookup(*second_key)
        if first is not None and second is not None:
            found.append((first, second))
    return found


def drop(core: CatalogCore, replica: DataLocation) -> None:
    """Another process invalidated ``replica``: INVALID here too, out of its set."""
    if replica._data_type is _INVALID:
        return
    core._drop(replica)
    if not replica._state.done:
        # Its writer failed, or died and another process gave its copy up: a waiter
        # here plans that destination again (it may take the copy over), never fails.
        replica._finish(WriterGone(f"the transfer producing {replica!r} ended elsewhere"))
    if core._listener is not None:
        core._listener(True, replica)

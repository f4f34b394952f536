"""Replica sets: the replicas holding the same data, kept as shared member tables.

"Same data" relations are symmetric and transitive, so the related replicas form the
connected components of a graph. Invalidating a replica takes it out of its component
without splitting it (the others stay related), so components only ever merge or shrink,
and each is kept as one member table (a dict used as an ordered set) shared by its
replicas in their ``_set`` slot: relating two sets merges the smaller into the larger
(O(smaller)), finding a replica's set is O(1), leaving it is O(1), and an unrelated
replica costs nothing (``_set`` is None). A BFS over a networkx graph per lookup measured
slower than StreamFlow's aliasing; the networkx view is still there, built on demand by
the catalog's ``graph()``.

Only the catalog package calls these functions (leaving a set is inlined in the
catalog's ``_drop``, the hot path of invalidating).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from .._models import DataLocation, DataType

__all__ = ["Members", "merge", "split", "union"]

#: The members of one replica set, in the order they joined.
Members = dict[DataLocation, None]

_INVALID = DataType.INVALID


def merge(first: DataLocation, second: DataLocation) -> None:
    """Join the sets of two replicas, moving the smaller one's members."""
    big = first._set if first._set is not None else {first: None}
    small = second._set if second._set is not None else {second: None}
    if len(big) < len(small):
        big, small = small, big
    big.update(small)
    for member in small:
        member._set = big
    first._set = second._set = big


def split(replica: DataLocation, links: Iterable[DataLocation]) -> list[DataLocation] | None:
    """Move ``replica`` and ``links`` (members of its set) out into a set of their own.

    Returns:
        The links that moved along, or None when nothing had to move (no set, or nothing
        else in it).
    """
    members = replica._set
    if members is None:
        return None
    moved_links = [link for link in links if link._set is members]
    moving: Members = dict.fromkeys([replica, *moved_links])
    if all(member in moving for member in members):
        return None  # nothing but the new data and its links: nothing to leave
    for member in moving:
        del members[member]
        member._set = None
    if len(members) == 1:
        next(iter(members))._set = None  # alone again: no set to keep
    if moved_links:
        for member in moving:
            member._set = moving
    return moved_links


def union(replicas: Iterable[DataLocation]) -> list[DataLocation]:
    """The valid ones of ``replicas`` and every member of their sets, each once."""
    groups: list[Iterable[DataLocation]] = []
    for replica in replicas:
        if replica._data_type is _INVALID:
            continue
        members = replica._set
        if members is None:
            groups.append((replica,))
        elif not any(members is group for group in groups):
            groups.append(members)
    return list(dict.fromkeys(chain.from_iterable(groups)))

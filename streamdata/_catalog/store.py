"""The interface between the catalog and its storage: rows in, rows out.

The catalog reports every change to a :class:`CatalogStore` as plain values (a location,
a path, a type, ...) and calls :meth:`CatalogStore.commit` at the end of each operation.
Reading back, the store returns rows (:class:`Snapshot` when the catalog is rebuilt,
:class:`Changes` for what other processes changed since) and the catalog restores itself
from them. A store never sees a catalog nor a :class:`~streamdata.DataLocation`: a replica
is named by its natural key ``(location, path)``, and whatever ids the store uses for its
rows are its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from .._models import DataType, ExecutionLocation

__all__ = [
    "CatalogStore",
    "Changes",
    "Key",
    "ReplicaRow",
    "Signature",
    "Snapshot",
    "snapshot_of",
]

#: A replica's natural key: its location and its normal absolute path.
Key = tuple[ExecutionLocation, str]
#: What the audit compares of an entry: kind, size and mtime.
Signature = tuple[str, int, float]


class ReplicaRow(NamedTuple):
    """One stored replica, as :meth:`CatalogStore.changes` returns it."""

    location: ExecutionLocation
    path: str
    relpath: str
    data_type: DataType
    implied: bool
    pending: bool
    owner: str | None  # the token of the process writing it, while pending


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything stored, read at once (:meth:`CatalogStore.load`).

    Rows name replicas by ids that mean something only inside this snapshot; a replica
    row names its location and type by small numbers, resolved by ``locations`` and
    ``data_types`` (a million rows then hold no strings for them).

    Attributes:
        locations: Location numbers to locations.
        data_types: Data type numbers (positions) to types.
        replicas: Batches of ``(id, location number, path, relpath, type number,
            implied)``, every ancestor of a path before it (each has its own row); the
            catalog takes the batches out of the list as it restores them.
        pending: ``(id, owner token)`` of the replicas being written.
        relations: ``(id, id)`` pairs holding the same data.
        links: ``(link id, target id)`` of SYMBOLIC_LINK replicas.
        entries: ``(id, signature, digest)`` recorded for replicas.
        anchors: ``(lost id, anchor id, signature seen)`` of replicas a check took away.
    """

    locations: Mapping[int, ExecutionLocation]
    data_types: Sequence[DataType]
    replicas: list[list[tuple[int, int, str, str, int, int]]]
    pending: list[tuple[int, str | None]]
    relations: list[tuple[int, int]]
    links: list[tuple[int, int]]
    entries: list[tuple[int, Signature, str | None]]
    anchors: list[tuple[int, int, Signature | None]]


#: Runs one query and gives its rows (sqlite3's ``Connection.execute``, psycopg's
#: ``Cursor.execute``: both return an iterable of tuples).
Query = Callable[[str], Iterable[Any]]


def snapshot_of(
    locations: Mapping[int, ExecutionLocation],
    data_types: Sequence[DataType],
    replicas: list[list[tuple[int, int, str, str, int, int]]],
    query: Query,
) -> Snapshot:
    """A :class:`Snapshot` of the replica rows read, and of the other tables read by
    ``query`` (the same statements for every store).

    Raises:
        Exception: What ``query`` raises (the store's database error).
    """
    return Snapshot(
        locations=locations,
        data_types=data_types,
        replicas=replicas,
        pending=list(query("SELECT id, owner FROM replicas WHERE pending ORDER BY id")),
        relations=list(query("SELECT a, b FROM relations")),
        links=list(query("SELECT link, target FROM links")),
        entries=[
            (rid, (kind, size, mtime), digest)
            for rid, kind, size, mtime, digest in query(
                "SELECT id, kind, size, mtime, digest FROM entries"
            )
        ],
        anchors=[
            (rid, anchor, None if kind is None else (kind, size, mtime))
            for rid, anchor, kind, size, mtime in query(
                "SELECT id, anchor, kind, size, mtime FROM anchors WHERE anchor IS NOT NULL"
            )
        ],
    )


@dataclass(frozen=True, slots=True)
class Changes:
    """What other processes changed since the store last looked, named by natural keys.

    Attributes:
        rows: The changed replicas, as stored now.
        edges: Relations touching a changed replica.
        links: ``(link, target)`` of changed replicas.
        entries: ``(replica, signature, digest)`` recorded for changed replicas.
        dropped: Replicas invalidated since (maybe registered again after): they left
            their replica sets, whatever their rows say now.
    """

    rows: list[ReplicaRow]
    edges: list[tuple[Key, Key]]
    links: list[tuple[Key, Key]]
    entries: list[tuple[Key, Signature, str | None]]
    dropped: list[Key]


class CatalogStore(Protocol):
    """Where the catalog records its changes (see the module docstring)."""

    @property
    def token(self) -> str:
        """This store's owner token, stamped on the rows of the transfers it runs."""

    def load(self) -> Snapshot:
        """Everything stored (see :class:`Snapshot`)."""

    def changes(self) -> Changes | None:
        """What other processes changed since the last look; None when nothing did."""

    def alive(self, owner: str | None) -> bool:
        """True while the process holding ``owner`` has its store open."""

    def owner_of(self, key: Key) -> str | None:
        """The owner stamped on a replica's row while it is pending (None when it is not)."""

    def forget_owner(self, owner: str) -> None:
        """Release what is kept about an owner found dead."""

    def claim(self, location: ExecutionLocation, path: str, adopt: str | None = None) -> bool:
        """Take the destination ``path`` for a copy; False if another live process has it.

        ``adopt``: the temporary a dead process left there that this copy resumes from
        (journalled on the row, it does not hold the claim back).
        """

    def put_replica(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str,
        data_type: DataType,
        implied: bool,
        pending: bool,
        *,
        new: bool = False,
    ) -> None:
        """Record a new or changed replica (``new``: the catalog never held it before)."""

    def add_relation(self, first: Key, second: Key) -> None:
        """Record a "same data" edge."""

    def set_link_target(self, link: Key, target: Key) -> None:
        """Record what a SYMBOLIC_LINK replica points at."""

    def invalidate(self, keys: Sequence[Key], *, reaping: bool = False) -> None:
        """Record replicas turned INVALID, taken out of their sets (the rest stay related).

        ``reaping`` (giving up the copies of a writer that died): only rows still pending
        under a writer that is gone; a row finished since, or taken over by a live
        process, is left alone (checked in the same transaction).
        """

    def record_entry(self, key: Key, entry: Signature, digest: str | None) -> None:
        """Record the signature and the content digest seen for a replica."""

    def set_anchor(self, lost: Key, anchor: Key | None, seen: Signature | None) -> None:
        """Record what an INVALID replica was a copy of (None: forget it; see ``lineage``)."""

    def note_temporary(self, key: Key, tmp_path: str | None) -> None:
        """Journal the temporary path a pending replica is being written to."""

    def leave_temporary(self, key: Key) -> None:
        """Journal a temporary this process could not remove as nobody's (stale)."""

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str, str]]:
        """Temporary paths of interrupted transfers (location, temporary, replica's path)."""

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Drop a stale temporary path from the journal once it is removed."""

    def commit(self) -> None:
        """Make everything recorded so far durable (deferred inside this context's batch)."""

    def begin_batch(self) -> None:
        """Defer commits until the matching :meth:`end_batch` (batches nest)."""

    def end_batch(self) -> None:
        """Close a batch; the outermost one commits everything recorded."""

    def close(self) -> None:
        """Commit and release the storage."""

"""The change feed of a shared SQLite catalog: what other processes changed, applied here.

Triggers append the id of each replica whose row, relations, link or entry changed to
the ``changes`` table, inside the transaction that changed it. A process remembers the
last change it has seen; :func:`read_changes` returns everything about the replicas
changed since then (their rows, their relations and link targets, named by location and
path, and their entries), all read in one snapshot, and :func:`apply` makes the
in-memory catalog say the same, without writing anything back.

Each change names the process that wrote it, and a process reads only the others'. The
table keeps the
last :data:`KEEP_CHANGES` changes; a process that fell further behind re-reads every row.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._models import DataLocation, DataType, ExecutionLocation

if TYPE_CHECKING:
    from .mapper import RemotePathMapper

__all__ = [
    "KEEP_CHANGES",
    "SCHEMA",
    "Changes",
    "apply",
    "from_db",
    "name_writer",
    "prune",
    "read_changes",
    "to_db",
]

KEEP_CHANGES = 200_000
#: The SQL function, defined on every connection (:func:`name_writer`), that tells the
#: triggers which process writes: a process skips its own changes when it reads the feed.
WRITER = "streamdata_writer"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, replica INTEGER NOT NULL, "
    "writer TEXT, dropped INTEGER NOT NULL DEFAULT 0)",
    "CREATE TRIGGER IF NOT EXISTS replica_added AFTER INSERT ON replicas BEGIN "
    f"INSERT INTO changes (replica, writer) VALUES (new.id, {WRITER}()); END",
    "CREATE TRIGGER IF NOT EXISTS replica_changed AFTER UPDATE ON replicas BEGIN "
    f"INSERT INTO changes (replica, writer, dropped) VALUES (new.id, {WRITER}(), "
    "new.data_type = 'invalid' AND old.data_type != 'invalid'); END",
    "CREATE TRIGGER IF NOT EXISTS relation_added AFTER INSERT ON relations BEGIN "
    f"INSERT INTO changes (replica, writer) VALUES (new.a, {WRITER}()), (new.b, {WRITER}()); "
    "END",
    "CREATE TRIGGER IF NOT EXISTS link_set AFTER INSERT ON links BEGIN "
    f"INSERT INTO changes (replica, writer) VALUES (new.link, {WRITER}()); END",
    "CREATE TRIGGER IF NOT EXISTS entry_set AFTER INSERT ON entries BEGIN "
    f"INSERT INTO changes (replica, writer) VALUES (new.id, {WRITER}()); END",
)

# A replica row with its location spelled out: deployment, name, local, path.
_WHERE = "{alias}.id IN (SELECT replica FROM temp.changed)"
_ROWS = (
    "SELECT r.deployment, r.name, r.local, r.path, r.relpath, r.data_type, r.implied, "
    "r.pending, r.owner FROM replicas r WHERE " + _WHERE.format(alias="r")
)
_EDGES = (
    "SELECT x.deployment, x.name, x.local, x.path, y.deployment, y.name, y.local, y.path "
    "FROM relations e JOIN replicas x ON x.id = e.a JOIN replicas y ON y.id = e.b "
    "WHERE e.a IN (SELECT replica FROM temp.changed) "
    "OR e.b IN (SELECT replica FROM temp.changed)"
)
_LINKS = (
    "SELECT x.deployment, x.name, x.local, x.path, y.deployment, y.name, y.local, y.path "
    "FROM links e JOIN replicas x ON x.id = e.link JOIN replicas y ON y.id = e.target "
    "WHERE " + _WHERE.format(alias="x")
)
_DROPPED = (
    "SELECT DISTINCT x.deployment, x.name, x.local, x.path FROM changes c "
    "JOIN replicas x ON x.id = c.replica WHERE c.seq > ? AND c.writer IS NOT ? AND c.dropped"
)
_ENTRIES = (
    "SELECT x.deployment, x.name, x.local, x.path, e.kind, e.size, e.mtime, e.digest "
    "FROM entries e JOIN replicas x ON x.id = e.id WHERE " + _WHERE.format(alias="x")
)

Key = tuple[str, str, int, "str | bytes"]


def to_db(text: str) -> str | bytes:
    """``text`` as stored: itself, or its bytes when it is not valid UTF-8 (surrogates)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def from_db(value: str | bytes) -> str:
    """The string a stored value stands for (:func:`to_db` reversed)."""
    return value if isinstance(value, str) else os.fsdecode(value)


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since a process last looked, read in one snapshot.

    Attributes:
        last: The newest change included.
        rows: The changed replica rows: location key, relpath, type, implied, pending, owner.
        edges: Relations touching a changed replica, as pairs of keys.
        links: Link targets of changed replicas, as (link key, target key).
        entries: Recorded entries of changed replicas: key, (kind, size, mtime), digest.
        dropped: Replicas invalidated since (maybe registered again after): they left
            their replica sets, whatever their rows say now.
    """

    last: int
    rows: list[tuple[Key, str | bytes, str, int, int, str | None]]
    edges: list[tuple[Key, Key]]
    links: list[tuple[Key, Key]]
    entries: list[tuple[Key, tuple[str, int, float], str | None]]
    dropped: list[Key]


def name_writer(db: sqlite3.Connection, token: str) -> None:
    """Make the triggers of ``db`` stamp its changes with ``token``."""
    db.create_function(WRITER, 0, lambda: token)


def read_changes(db: sqlite3.Connection, seen: int, token: str) -> Changes:
    """Everything about the replicas other writers changed after change number ``seen``.

    Call it inside a read transaction, so that all of it comes from one snapshot.
    """
    (first, last) = db.execute("SELECT min(seq), max(seq) FROM changes").fetchone()
    last = last or 0
    db.execute("CREATE TEMP TABLE IF NOT EXISTS changed (replica INTEGER PRIMARY KEY)")
    db.execute("DELETE FROM temp.changed")
    if first is not None and first > seen + 1:  # fell behind the kept changes: everything
        db.execute("INSERT INTO temp.changed SELECT id FROM replicas")
    else:
        db.execute(
            "INSERT OR IGNORE INTO temp.changed SELECT replica FROM changes "
            "WHERE seq > ? AND writer IS NOT ?",
            (seen, token),
        )
    rows = [
        ((d, n, lo, p), relpath, kind, implied, pending, owner)
        for d, n, lo, p, relpath, kind, implied, pending, owner in db.execute(_ROWS)
    ]
    pairs = [((a, b, c, d), (e, f, g, h)) for a, b, c, d, e, f, g, h in db.execute(_EDGES)]
    links = [((a, b, c, d), (e, f, g, h)) for a, b, c, d, e, f, g, h in db.execute(_LINKS)]
    entries = [
        ((d, n, lo, p), (kind, size, mtime), digest)
        for d, n, lo, p, kind, size, mtime, digest in db.execute(_ENTRIES)
    ]
    dropped = [(d, n, lo, p) for d, n, lo, p in db.execute(_DROPPED, (seen, token))]
    return Changes(last, rows, pairs, links, entries, dropped)


def prune(db: sqlite3.Connection) -> None:
    """Drop all but the last :data:`KEEP_CHANGES` changes (inside a write transaction)."""
    db.execute(
        "DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?", (KEEP_CHANGES,)
    )


def apply(
    catalog: RemotePathMapper,
    changes: Changes,
    location_of: Callable[[str, str, int], ExecutionLocation],
) -> list[tuple[DataLocation, str | None]]:
    """Make ``catalog`` say what the changed rows say (no store writes).

    Returns:
        The replicas now pending (being written by some process), with their owners.
    """

    def find(key: Key) -> DataLocation | None:
        deployment, name, local, path = key
        return catalog.lookup(location_of(deployment, name, local), from_db(path))

    for key in changes.dropped:
        replica = find(key)
        if replica is not None:
            catalog._apply_drop(replica)
    pending: list[tuple[DataLocation, str | None]] = []
    for (deployment, name, local, path), relpath, kind, implied, busy, owner in changes.rows:
        replica = catalog._apply_row(
            location_of(deployment, name, local),
            from_db(path),
            from_db(relpath),
            DataType(kind),
            implied=bool(implied),
            pending=bool(busy),
        )
        if busy and replica is not None:
            pending.append((replica, owner))
    for first_key, second_key in changes.edges:
        first, second = find(first_key), find(second_key)
        if first is not None and second is not None:
            catalog._apply_edge(first, second)
    for link_key, target_key in changes.links:
        link, target = find(link_key), find(target_key)
        if link is not None and target is not None:
            catalog._apply_link(link, target)
    catalog._restore_entries(
        (replica, entry, digest)
        for key, entry, digest in changes.entries
        if (replica := find(key)) is not None and replica.data_type is not DataType.INVALID
    )
    return pending

"""The change feed of a shared SQLite catalog: what other processes changed, applied here.

Triggers append the id of each replica whose row, relations, link or entry changed to
the ``changes`` table, inside the transaction that changed it. A process remembers the
last change it has seen; :func:`read_changes` returns everything about the replicas
changed since then (their rows, their relations and link targets, named by location and
path, and their entries), all read in one snapshot, as the rows of a
:class:`~.store.Changes`, from which the catalog updates itself.

Each change names the process that wrote it, and a process reads only the others'. The
table keeps the
last :data:`KEEP_CHANGES` changes; a process that fell further behind re-reads every row.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from .._models import DataType, ExecutionLocation
from .store import Changes, Key, ReplicaRow

__all__ = [
    "KEEP_CHANGES",
    "SCHEMA",
    "from_db",
    "name_writer",
    "prune",
    "read_changes",
    "row_key",
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

#: A row's key as stored: deployment, name, local, path.
_Stored = tuple[str, str, int, "str | bytes"]
#: Makes (and keeps) the location of a stored ``(deployment, name, local)``.
LocationOf = Callable[[str, str, int], ExecutionLocation]


def to_db(text: str) -> str | bytes:
    """``text`` as stored: itself, or its bytes when it is not valid UTF-8 (surrogates)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def row_key(key: Key) -> tuple[str, str, str | bytes]:
    """The stored key of a replica: its location's deployment and name, and its path."""
    location, path = key
    return (location.deployment, location.name, to_db(path))


def from_db(value: str | bytes) -> str:
    """The string a stored value stands for (:func:`to_db` reversed)."""
    return value if isinstance(value, str) else os.fsdecode(value)


def name_writer(db: sqlite3.Connection, token: str) -> None:
    """Make the triggers of ``db`` stamp its changes with ``token``."""
    db.create_function(WRITER, 0, lambda: token)


def read_changes(
    db: sqlite3.Connection, seen: int, token: str, location_of: LocationOf
) -> tuple[int, Changes]:
    """Everything about the replicas other writers changed after change number ``seen``.

    Call it inside a read transaction, so that all of it comes from one snapshot.

    Returns:
        The newest change included, and the changes.
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

    def key(stored: _Stored) -> Key:
        deployment, name, local, path = stored
        return (location_of(deployment, name, local), from_db(path))

    rows = [
        ReplicaRow(*key((d, n, lo, p)), from_db(rel), DataType(kind), bool(imp), bool(busy), owner)
        for d, n, lo, p, rel, kind, imp, busy, owner in db.execute(_ROWS)
    ]
    pairs = [
        (key((a, b, c, d)), key((e, f, g, h))) for a, b, c, d, e, f, g, h in db.execute(_EDGES)
    ]
    links = [
        (key((a, b, c, d)), key((e, f, g, h))) for a, b, c, d, e, f, g, h in db.execute(_LINKS)
    ]
    entries = [
        (key((d, n, lo, p)), (kind, size, mtime), digest)
        for d, n, lo, p, kind, size, mtime, digest in db.execute(_ENTRIES)
    ]
    dropped = [key(stored) for stored in db.execute(_DROPPED, (seen, token))]
    return last, Changes(rows, pairs, links, entries, dropped)


def prune(db: sqlite3.Connection) -> None:
    """Drop all but the last :data:`KEEP_CHANGES` changes (inside a write transaction)."""
    db.execute(
        "DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?", (KEEP_CHANGES,)
    )

"""Durable catalog storage: the embedded SQLite implementation of the store interface.

The catalog reports every change to a :class:`CatalogStore` (:mod:`._store_api`) and
calls :meth:`commit` at the end of each operation, so a change is durable once the call
that made it returns.
Inside a batch (:meth:`CatalogStore.begin_batch` .. :meth:`CatalogStore.end_batch`, nested
batches count) the commits of the code running in that batch wait, and the outermost end
commits everything at once. A batch belongs to the context (the task) that opened it and to
the tasks it starts: a commit from any other task still happens when its call returns, and
takes the rows queued by the batch along (earlier durability is harmless, later is not).
Rows are queued and written with ``executemany`` just before anything reads the file and
at each commit; replica ids are assigned here, so an insert needs no round trip back.
SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
process being killed at any instant (only a power cut may lose the last commits).
Transfers in flight are journalled as *pending* replicas; a catalog reopened after a crash
turns them INVALID, never valid.
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

from ._errors import ConfigurationError, TransferError
from ._models import DataLocation, DataType, ExecutionLocation
from ._store_api import in_batch

if TYPE_CHECKING:
    from ._catalog import RemotePathMapper

__all__ = ["SQLiteStore", "open_store"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replicas (
    id INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL, name TEXT NOT NULL, local INTEGER NOT NULL,
    path TEXT NOT NULL, relpath TEXT NOT NULL, data_type TEXT NOT NULL,
    implied INTEGER NOT NULL, pending INTEGER NOT NULL, tmp TEXT,
    UNIQUE (deployment, name, path)
);
CREATE TABLE IF NOT EXISTS relations (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b));
CREATE INDEX IF NOT EXISTS relations_b ON relations (b);
CREATE TABLE IF NOT EXISTS links (link INTEGER PRIMARY KEY, target INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
    digest TEXT
);
CREATE TABLE IF NOT EXISTS anchors (
    id INTEGER PRIMARY KEY, anchor INTEGER, kind TEXT, size INTEGER, mtime REAL
);
"""

_NEIGHBOURS = "SELECT b FROM relations WHERE a = ?1 UNION SELECT a FROM relations WHERE b = ?1"

_UPSERT_REPLICA = """
INSERT INTO replicas (id, deployment, name, local, path, relpath, data_type, implied, pending)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET relpath = excluded.relpath,
    data_type = excluded.data_type, implied = excluded.implied, pending = excluded.pending
"""
_ADD_RELATION = "INSERT OR IGNORE INTO relations VALUES (?, ?)"
_SET_LINK = "INSERT OR REPLACE INTO links VALUES (?, ?)"
_SET_ENTRY = "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)"
# one row per replica ever remembered; anchor NULL: forgotten
_SET_ANCHOR = "INSERT OR REPLACE INTO anchors VALUES (?, ?, ?, ?, ?)"
# data types as numbers while loading: position in _TYPE_NUMBERS, computed by SQLite
_TYPE_NUMBERS = tuple(DataType)
_TYPE_CASE = " ".join(
    f"WHEN '{data_type.value}' THEN {number}" for number, data_type in enumerate(_TYPE_NUMBERS)
)
_LOAD_ROWS = 50_000  # replica rows fetched and restored at a time
_FLUSH_ROWS = 10_000  # queued rows written at once; bounds the memory of a long batch


def open_store(catalog: str | os.PathLike[str] | None) -> SQLiteStore | None:
    """Open the store named by the DataManager's ``catalog`` argument (None: no store).

    Raises:
        ConfigurationError: If the file cannot be opened or is not a streamdata catalog.
    """
    if catalog is None:
        return None
    return SQLiteStore(os.fspath(catalog))


class SQLiteStore:
    """A catalog kept in one embedded SQLite file.

    Args:
        path: The database file; created with its schema when missing.

    Raises:
        ConfigurationError: If the file cannot be used.
    """

    def __init__(self, path: str) -> None:
        self._stale: list[tuple[ExecutionLocation, str]] = []
        self._replica_rows: list[tuple[object, ...]] = []
        self._pending: dict[str, list[tuple[object, ...]]] = {}
        self._batches = 0
        self._closed = False
        try:
            self._db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            (self._next_id,) = self._db.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM replicas"
            ).fetchone()
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the catalog {path!r}: {exc}") from exc

    def _migrate(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this streamdata")
        # Version 0 is an empty file: the schema above is version 1. Later versions add
        # their steps here, each in one transaction.
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._db.commit()

    # -- loading ---------------------------------------------------------------------------

    def load(self, catalog: RemotePathMapper) -> None:
        """Rebuild ``catalog`` from the file; interrupted transfers come back INVALID.

        Rows are read in chunks and restored in bulk. The garbage collector is paused
        meanwhile: a million new objects would otherwise set off full collections again
        and again, each walking every object made so far.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            by_id, interrupted = self._load_replicas(catalog)
            self._load_links(catalog, by_id)
        finally:
            if collecting:
                gc.enable()
        self._db.commit()
        for replica in interrupted:  # its transfer never finished: out of its set, INVALID
            catalog.invalidate(replica.location, replica.path)
            replica._start_pending()
            replica._finish(TransferError(f"the transfer producing {replica!r} was interrupted"))

    def _load_replicas(
        self, catalog: RemotePathMapper
    ) -> tuple[dict[int, DataLocation], list[DataLocation]]:
        """Restore every replica row, in id order (the order they were first recorded).

        Returns them by id, with those whose transfer was interrupted; the temporary
        paths journalled for them become :meth:`stale_temporaries`.
        """
        db = self._db
        # Each row names its location by a small number, not by two strings: SQLite then
        # makes no str objects for them (a third of the time of loading 10^6 rows).
        db.execute("DROP TABLE IF EXISTS temp.load_locations")
        db.execute(
            "CREATE TEMP TABLE load_locations (deployment TEXT NOT NULL, name TEXT NOT NULL, "
            "local INTEGER NOT NULL, UNIQUE (deployment, name, local))"
        )
        db.execute(
            "INSERT INTO temp.load_locations SELECT DISTINCT deployment, name, local "
            "FROM replicas ORDER BY deployment, name, local"
        )
        locations = {
            number: ExecutionLocation(name, deployment, bool(local))
            for number, deployment, name, local in db.execute(
                "SELECT rowid, deployment, name, local FROM temp.load_locations"
            )
        }
        types = _TYPE_NUMBERS
        cursor = db.execute(
            "SELECT r.id, l.rowid, r.path, r.relpath, "
            f"CASE r.data_type {_TYPE_CASE} END, r.implied FROM replicas r "
            "JOIN temp.load_locations l ON l.deployment = r.deployment AND l.name = r.name "
            "AND l.local = r.local ORDER BY r.id"
        )
        cursor.arraysize = _LOAD_ROWS
        by_id: dict[int, DataLocation] = {}
        while rows := cursor.fetchmany():
            replicas = catalog._restore_replicas(rows, locations, types)
            ids = [row[0] for row in rows]
            by_id.update(zip(ids, replicas, strict=True))
            for replica, rid in zip(replicas, ids, strict=True):
                replica._row = rid
        db.execute("DROP TABLE temp.load_locations")
        unfinished = db.execute(
            "SELECT id, pending, tmp FROM replicas WHERE pending OR tmp IS NOT NULL ORDER BY id"
        ).fetchall()
        interrupted = [by_id[rid] for rid, pending, _ in unfinished if pending]
        self._stale = [(by_id[rid].location, tmp) for rid, _, tmp in unfinished if tmp]
        return by_id, interrupted

    def _load_links(self, catalog: RemotePathMapper, by_id: dict[int, DataLocation]) -> None:
        """Restore relations, link targets, recorded entries and lost replicas' anchors."""
        edges = self._db.execute("SELECT a, b FROM relations")
        catalog._restore_edges((by_id[a], by_id[b]) for a, b in edges if a in by_id and b in by_id)
        for link, target in self._db.execute("SELECT link, target FROM links"):
            catalog._restore_link(by_id[link], by_id[target])
        rows = self._db.execute("SELECT id, kind, size, mtime, digest FROM entries")
        catalog._restore_entries(
            (by_id[rid], (kind, size, mtime), digest) for rid, kind, size, mtime, digest in rows
        )
        rows = self._db.execute(
            "SELECT id, anchor, kind, size, mtime FROM anchors WHERE anchor IS NOT NULL"
        )
        for rid, anchor, kind, size, mtime in rows:
            if rid in by_id and anchor in by_id:
                seen = None if kind is None else (kind, size, mtime)
                catalog.lineage.restore(by_id[rid], by_id[anchor], seen)

    # -- changes ---------------------------------------------------------------------------

    def _id(self, replica: DataLocation) -> int:
        rid = replica._row
        if rid is None:
            self.put_replica(replica)
            rid = replica._row
            assert rid is not None
        return rid

    def put_replica(self, replica: DataLocation) -> None:
        """Queue the insert or update of one replica row."""
        rid = replica._row  # replicas are the catalog's own objects, one per row
        if rid is None:
            rid = replica._row = self._next_id
            self._next_id += 1
        location = replica._location
        rows = self._replica_rows
        rows.append(
            (
                rid,
                location.deployment,
                location.name,
                location.local,
                replica._path,
                replica._relpath,
                replica._data_type.value,
                replica._implied,
                not replica._state.done,
            )
        )
        if len(rows) >= _FLUSH_ROWS:
            self._flush()

    def _queue(self, statement: str, row: tuple[object, ...]) -> None:
        rows = self._pending.setdefault(statement, [])
        rows.append(row)
        if len(rows) >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Write the queued rows (replicas first: the other rows refer to them)."""
        if self._replica_rows:
            rows, self._replica_rows = self._replica_rows, []
            self._db.executemany(_UPSERT_REPLICA, rows)
        if self._pending:
            pending, self._pending = self._pending, {}
            for statement, rows in pending.items():
                self._db.executemany(statement, rows)

    def add_relation(self, first: DataLocation, second: DataLocation) -> None:
        """Queue one edge."""
        self._queue(_ADD_RELATION, (self._id(first), self._id(second)))

    def set_link_target(self, link: DataLocation, target: DataLocation) -> None:
        """Queue the insert or replacement of a link row."""
        self._queue(_SET_LINK, (self._id(link), self._id(target)))

    def invalidate(self, replicas: Sequence[DataLocation]) -> None:
        """Mark rows INVALID and drop their edges, links and entries.

        The neighbours of each dropped replica are chained together with new edges, so
        the rest of its replica set stays connected on disk as it does in memory.
        """
        ids = [(self._id(replica),) for replica in replicas]
        self._flush()
        for (rid,) in ids:
            neighbours = [row[0] for row in self._db.execute(_NEIGHBOURS, (rid,))]
            self._db.execute("DELETE FROM relations WHERE a = ?1 OR b = ?1", (rid,))
            self._db.executemany(_ADD_RELATION, pairwise(neighbours))
        self._db.executemany(
            "UPDATE replicas SET data_type = 'invalid', pending = 0 WHERE id = ?", ids
        )
        self._db.executemany("DELETE FROM links WHERE link = ?", ids)
        self._db.executemany("DELETE FROM entries WHERE id = ?", ids)

    def record_entry(
        self, replica: DataLocation, entry: tuple[str, int, float], digest: str | None
    ) -> None:
        """Queue the insert or replacement of the (kind, size, mtime, digest) row."""
        self._queue(_SET_ENTRY, (self._id(replica), *entry, digest))

    def set_anchor(
        self,
        lost: DataLocation,
        anchor: DataLocation | None,
        seen: tuple[str, int, float] | None,
    ) -> None:
        """Queue what an INVALID replica was a copy of (None: forgotten)."""
        row = (self._id(lost), None if anchor is None else self._id(anchor))
        self._queue(_SET_ANCHOR, (*row, *(seen or (None, None, None))))

    def note_temporary(self, replica: DataLocation, tmp_path: str | None) -> None:
        """Journal (or clear) the temporary path of a replica being written.

        Committed at once, also inside a batch: the journal must be on disk before the
        temporary file is, or a crash would leave a file nobody knows to remove.
        """
        rid = self._id(replica)
        self._flush()
        self._db.execute("UPDATE replicas SET tmp = ? WHERE id = ?", (tmp_path, rid))
        self._db.commit()

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str]]:
        """Temporary paths left by transfers interrupted before this store was opened."""
        return list(self._stale)

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Clear a stale temporary path from the journal."""
        self._stale.remove((location, tmp_path))
        self._flush()
        self._db.execute(
            "UPDATE replicas SET tmp = NULL WHERE deployment = ? AND name = ? AND tmp = ?",
            (location.deployment, location.name, tmp_path),
        )
        self._db.commit()

    def commit(self) -> None:
        """Write the queued rows and commit, unless the running context is in a batch.

        A task started inside a batch inherits it; once every batch has ended its commits
        happen again at once, even if it outlives the block.
        """
        if self._batches == 0 or not in_batch(self):
            self._flush()
            self._db.commit()

    def begin_batch(self) -> None:
        """Defer commits until the outermost :meth:`end_batch`."""
        self._batches += 1

    def end_batch(self) -> None:
        """Leave a batch; the context's outermost commits (nothing once the store is closed)."""
        self._batches -= 1
        if not self._closed:
            self.commit()  # deferred again if this context is still inside an outer batch

    def close(self) -> None:
        """Commit and close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._batches = 0
        self._flush()
        self._db.commit()
        self._db.close()

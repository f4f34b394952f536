"""Durable catalog storage: the embedded SQLite implementation of the store interface.

The catalog reports every change to a :class:`CatalogStore` (:mod:`._store_api`) and
calls :meth:`commit` at the end of each operation, so a change is durable once the call
that made it returns. Inside a batch (:meth:`CatalogStore.begin_batch` ..
:meth:`CatalogStore.end_batch`, nested batches count) the commits of the code running in
that batch wait, and the outermost end commits everything at once. A batch belongs to the
context (the task) that opened it and to the tasks it starts: a commit from any other
task still happens when its call returns, and takes the rows queued by the batch along
(earlier durability is harmless, later is not).

Many processes may use one file at once:

* Rows are keyed by what they describe, ``(deployment, location name, path)``, never by
  an id a process chose: an upsert from one process lands on the row another process
  wrote for the same replica, and relations, links and entries name their replicas by
  that key too (the database resolves the ids inside the write).
* Every write is one short ``BEGIN IMMEDIATE`` transaction, committed at once; nothing
  holds the file locked across an ``await``.
* Triggers append the id of every changed replica to a ``changes`` table; :meth:`refresh`
  reads what is new since its last look (when ``PRAGMA data_version`` says another
  connection committed) and applies it to the in-memory catalog (:mod:`._store_feed`).
* Rows of transfers in flight carry the owner token of the process writing them
  (:mod:`._owners`): another process leaves them alone while that process lives, and
  treats them as crash leftovers (INVALID, temporaries removed) once it is gone.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
process being killed at any instant (only a power cut may lose the last commits). The
file's structure is checked when it is opened (:func:`check_integrity`). Paths are any
bytes POSIX allows: a string that is not valid UTF-8 (``os.fsdecode`` of such bytes) is
stored as a BLOB of its bytes and read back exactly.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

from .._errors import ConfigurationError, WriterGone
from .._models import DataLocation, DataType, ExecutionLocation
from . import sqlite_feed as feed
from .owners import Owners
from .sqlite_feed import from_db, to_db
from .store import in_batch

if TYPE_CHECKING:
    from .mapper import RemotePathMapper

__all__ = ["SQLiteStore", "check_integrity", "open_store"]

SCHEMA_VERSION = 2
#: How long a write waits for another process's transaction before it fails.
BUSY_SECONDS = 30.0
#: How long opening a catalog may spend checking the file's structure.
CHECK_SECONDS = 2.0

_CREATE_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_HAS_REPLICAS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'replicas'"
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS replicas (
    id INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL, name TEXT NOT NULL, local INTEGER NOT NULL,
    path TEXT NOT NULL, relpath TEXT NOT NULL, data_type TEXT NOT NULL,
    implied INTEGER NOT NULL, pending INTEGER NOT NULL, tmp TEXT, owner TEXT,
    UNIQUE (deployment, name, path))""",
    "CREATE TABLE IF NOT EXISTS relations (a INTEGER NOT NULL, b INTEGER NOT NULL, "
    "PRIMARY KEY (a, b))",
    "CREATE INDEX IF NOT EXISTS relations_b ON relations (b)",
    "CREATE TABLE IF NOT EXISTS links (link INTEGER PRIMARY KEY, target INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
    "size INTEGER NOT NULL, mtime REAL NOT NULL, digest TEXT)",
    # what an INVALID replica was a copy of (_lineage): one row per replica remembered,
    # anchor NULL once forgotten
    "CREATE TABLE IF NOT EXISTS anchors (id INTEGER PRIMARY KEY, anchor INTEGER, kind TEXT, "
    "size INTEGER, mtime REAL)",
    "CREATE INDEX IF NOT EXISTS replicas_tmp ON replicas (tmp) WHERE tmp IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS replicas_pending ON replicas (id) WHERE pending",
    *feed.SCHEMA,
)

_KEY = "deployment = ? AND name = ? AND path = ?"
_ID_OF = f"SELECT id FROM replicas WHERE {_KEY}"
_NEIGHBOURS = "SELECT b FROM relations WHERE a = ?1 UNION SELECT a FROM relations WHERE b = ?1"
_UPSERT_REPLICA = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (deployment, name, path) DO UPDATE SET local = excluded.local,
    relpath = excluded.relpath, data_type = excluded.data_type, implied = excluded.implied,
    pending = excluded.pending, owner = excluded.owner
"""
_CLAIM = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (?, ?, ?, ?, ?, 'primary', 0, 1, ?)
ON CONFLICT (deployment, name, path) DO UPDATE SET pending = 1, owner = excluded.owner
"""
_BOTH = (
    "FROM replicas x, replicas y WHERE x.deployment = ? AND x.name = ? AND x.path = ? "
    "AND y.deployment = ? AND y.name = ? AND y.path = ?"
)
_ADD_RELATION = f"INSERT OR IGNORE INTO relations SELECT x.id, y.id {_BOTH}"
_CHAIN_RELATION = "INSERT OR IGNORE INTO relations VALUES (?, ?)"
_SET_LINK = f"INSERT OR REPLACE INTO links SELECT x.id, y.id {_BOTH}"
_SET_ENTRY = f"INSERT OR REPLACE INTO entries SELECT id, ?, ?, ?, ? FROM replicas WHERE {_KEY}"
_SET_ANCHOR = f"INSERT OR REPLACE INTO anchors SELECT x.id, y.id, ?, ?, ? {_BOTH}"
_FORGET_ANCHOR = (
    f"INSERT OR REPLACE INTO anchors SELECT id, NULL, NULL, NULL, NULL FROM replicas WHERE {_KEY}"
)
_LAST_CHANGE = "SELECT coalesce(max(seq), 0) FROM changes"
_UNFINISHED = "SELECT id, owner FROM replicas WHERE pending ORDER BY id"
# data types as numbers while loading: position in _TYPE_NUMBERS, computed by SQLite
_TYPE_NUMBERS = tuple(DataType)
_TYPE_CASE = " ".join(
    f"WHEN '{data_type.value}' THEN {number}" for number, data_type in enumerate(_TYPE_NUMBERS)
)
_LOAD_ROWS = 50_000  # replica rows fetched and restored at a time
_FLUSH_ROWS = 10_000  # queued rows written at once; bounds the memory of a long batch
_PRUNE_EVERY = 1_000  # write transactions between prunings of the change feed


def check_integrity(db: sqlite3.Connection, budget: float = CHECK_SECONDS) -> None:
    """Run ``PRAGMA quick_check`` on an opened file, for at most ``budget`` seconds.

    A damaged b-tree page would otherwise be read as missing rows, silently. The check
    reads every page once (0.18 s for 2x10^5 replicas, 27 MiB, here); past the budget it
    stops and the file is used as it is (loading still fails on a page it cannot read).

    Raises:
        sqlite3.DatabaseError: If the file is damaged (with the first faults found).
    """
    deadline = time.monotonic() + budget
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            return
        raise
    finally:
        db.set_progress_handler(None, 0)
    faults = [row[0] for row in rows if row[0] != "ok"]
    if faults:
        raise sqlite3.DatabaseError(f"the file is damaged: {'; '.join(faults)}")


def open_store(catalog: str | os.PathLike[str] | None) -> SQLiteStore | None:
    """Open the store named by the DataManager's ``catalog`` argument (None: no store).

    Raises:
        ConfigurationError: If the file cannot be opened or is not a streamdata catalog.
    """
    if catalog is None:
        return None
    return SQLiteStore(os.fspath(catalog))


class SQLiteStore:
    """A catalog kept in one embedded SQLite file, shared by any number of processes.

    Args:
        path: The database file; created with its schema when missing.

    Raises:
        ConfigurationError: If the file cannot be used (unreadable, not a streamdata
            catalog, written by a newer streamdata, or damaged).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._replica_rows: list[tuple[object, ...]] = []
        self._pending: dict[str, list[tuple[object, ...]]] = {}
        self._batches = 0
        self._closed = False
        self._seen = 0  # the last change applied to the in-memory catalog
        self._writes = 0
        self._data_version: int | None = None
        self._locations: dict[tuple[str, str, int], ExecutionLocation] = {}
        # replicas other live processes are writing, with their owner tokens
        self._remote: dict[DataLocation, str | None] = {}
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=BUSY_SECONDS, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the catalog {path!r}: {exc}") from exc
        owners = None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            check_integrity(self._db)
            self.owners = owners = Owners(path)
            feed.name_writer(self._db, self.owners.token)
            with self._write():
                self._db.execute(_CREATE_META)
                self._migrate()
                feed.prune(self._db)
        except BaseException as exc:
            self._db.close()
            if owners is not None:
                owners.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise ConfigurationError(f"cannot use the catalog {path!r}: {exc}") from exc
            raise

    def _migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` (inside the opening transaction)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"its schema version {version} is newer than this streamdata's "
                f"({SCHEMA_VERSION}): upgrade streamdata"
            )
        if version == 0 and self._db.execute(_HAS_REPLICAS).fetchone() is not None:
            raise sqlite3.DatabaseError("it is not a streamdata catalog")
        if version == 1:  # version 2 stamps in-flight rows with their owner
            self._db.execute("ALTER TABLE replicas ADD COLUMN owner TEXT")
        if version < SCHEMA_VERSION:
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One short write transaction (BEGIN IMMEDIATE: never a stale snapshot to upgrade).

        Every :data:`_PRUNE_EVERY` writes, it also drops old changes from the feed, so a
        catalog that stays open for months keeps a bounded feed.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._writes += 1
            if self._writes % _PRUNE_EVERY == 0:
                feed.prune(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        """One read transaction: every query inside sees the same snapshot."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def _location(self, deployment: str, name: str, local: int) -> ExecutionLocation:
        key = (deployment, name, local)
        location = self._locations.get(key)
        if location is None:
            location = self._locations[key] = ExecutionLocation(name, deployment, bool(local))
        return location

    # -- loading ---------------------------------------------------------------------------

    def load(self, catalog: RemotePathMapper) -> None:
        """Rebuild ``catalog`` from the file.

        Transfers that were in flight in a process that is gone come back INVALID; those
        of live processes stay pending, and :meth:`refresh` sees how they end.

        Raises:
            ConfigurationError: If the file turns out to be damaged.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            with self._read():
                self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
                self._seen = self._db.execute(_LAST_CHANGE).fetchone()[0]
                by_id = self._load_replicas(catalog)
                self._load_links(catalog, by_id)
                unfinished = self._db.execute(_UNFINISHED).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"the catalog {self.path!r} is damaged: {exc}") from exc
        finally:
            if collecting:
                gc.enable()
        for rid, owner in unfinished:
            replica = by_id[rid]
            replica._start_pending()
            self._track(catalog, replica, owner)

    def _abandon(self, catalog: RemotePathMapper, replica: DataLocation, owner: str | None) -> None:
        """A pending replica whose writer is gone: INVALID, out of its set, waiters woken."""
        catalog.invalidate(replica.location, replica.path)
        replica._finish(WriterGone(f"the transfer producing {replica!r} was interrupted"))
        if owner is not None:
            self.owners.forget(owner)

    def _load_replicas(self, catalog: RemotePathMapper) -> dict[int, DataLocation]:
        """Restore every replica row, in id order; returns them by id."""
        db = self._db
        # Each row names its location by a small number, not by two strings: SQLite then
        # makes no str objects for them (a third of the time of loading 10^6 rows).
        db.execute("CREATE TEMP TABLE IF NOT EXISTS load_locations (deployment, name, local)")
        db.execute("DELETE FROM temp.load_locations")
        db.execute(
            "INSERT INTO temp.load_locations SELECT DISTINCT deployment, name, local "
            "FROM replicas ORDER BY deployment, name, local"
        )
        locations = {
            number: self._location(deployment, name, local)
            for number, deployment, name, local in db.execute(
                "SELECT rowid, deployment, name, local FROM temp.load_locations"
            )
        }
        cursor = db.execute(
            "SELECT r.id, l.rowid, r.path, r.relpath, "
            f"CASE r.data_type {_TYPE_CASE} END, r.implied FROM replicas r "
            "JOIN temp.load_locations l ON l.deployment = r.deployment AND l.name = r.name "
            "AND l.local = r.local ORDER BY r.id"
        )
        cursor.arraysize = _LOAD_ROWS
        by_id: dict[int, DataLocation] = {}
        while rows := cursor.fetchmany():
            if any(type(row[2]) is bytes or type(row[3]) is bytes for row in rows):
                rows = [(i, n, from_db(p), from_db(r), t, m) for i, n, p, r, t, m in rows]
            replicas = catalog._restore_replicas(rows, locations, _TYPE_NUMBERS)
            by_id.update(zip([row[0] for row in rows], replicas, strict=True))
        return by_id

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

    # -- other processes' changes ------------------------------------------------------------

    def refresh(self, catalog: RemotePathMapper) -> bool:
        """Apply to ``catalog`` what other processes changed since the last look.

        Cheap when nothing changed: one ``PRAGMA data_version``, which moves only when
        another connection commits. Pending replicas whose writer died become INVALID.

        Returns:
            True if anything was read.

        Raises:
            ConfigurationError: If the file cannot be read.
        """
        try:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
            if version == self._data_version:
                return False
            self._flush()  # this process's queued rows first: what is read is newer
            with self._read():
                self._data_version = version
                changes = feed.read_changes(self._db, self._seen, self.owners.token)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot read the catalog {self.path!r}: {exc}") from exc
        self._seen = changes.last
        for replica, owner in feed.apply(catalog, changes, self._location):
            self._track(catalog, replica, owner)
        return True

    def reap(self, catalog: RemotePathMapper) -> None:
        """Invalidate the replicas other processes were writing, if those processes died.

        Raises:
            ConfigurationError: If the file cannot be read.
        """
        for replica, owner in list(self._remote.items()):
            if replica._state.done or replica._data_type is DataType.INVALID:
                del self._remote[replica]
            elif not self.owners.alive(owner):
                try:
                    owner = self._owner(replica)  # maybe another process took it over
                except sqlite3.Error as exc:
                    raise ConfigurationError(f"cannot read {self.path!r}: {exc}") from exc
                if owner is not None and self.owners.alive(owner):
                    self._remote[replica] = owner
                else:
                    del self._remote[replica]
                    self._abandon(catalog, replica, owner)

    def _owner(self, replica: DataLocation) -> str | None:
        """The owner stamped on a replica's row while it is pending (None when it is not)."""
        row = self._db.execute(
            f"SELECT owner FROM replicas WHERE {_KEY} AND pending", _key(replica)
        ).fetchone()
        return None if row is None else row[0]

    def _track(self, catalog: RemotePathMapper, replica: DataLocation, owner: str | None) -> None:
        """A replica seen pending: another live process's is watched, a dead one's abandoned."""
        if owner == self.owners.token:
            return
        if self.owners.alive(owner):
            self._remote[replica] = owner
        else:
            self._abandon(catalog, replica, owner)

    # -- changes ---------------------------------------------------------------------------

    def put_replica(self, replica: DataLocation) -> None:
        """Queue the insert or update of one replica row (keyed by location and path)."""
        location = replica._location
        rows = self._replica_rows
        rows.append(
            (
                location.deployment,
                location.name,
                location.local,
                to_db(replica._path),
                to_db(replica._relpath),
                replica._data_type.value,
                replica._implied,
                not replica._state.done,
                self.owners.token,
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
        """Write the queued rows in one transaction (replicas first: the rest refer to them)."""
        if not self._replica_rows and not self._pending:
            return
        rows, self._replica_rows = self._replica_rows, []
        pending, self._pending = self._pending, {}
        with self._write():
            if rows:
                self._db.executemany(_UPSERT_REPLICA, rows)
            for statement, statement_rows in pending.items():
                self._db.executemany(statement, statement_rows)

    def add_relation(self, first: DataLocation, second: DataLocation) -> None:
        """Queue one edge."""
        self._queue(_ADD_RELATION, (*_key(first), *_key(second)))

    def set_link_target(self, link: DataLocation, target: DataLocation) -> None:
        """Queue the insert or replacement of a link row."""
        self._queue(_SET_LINK, (*_key(link), *_key(target)))

    def invalidate(self, replicas: Sequence[DataLocation]) -> None:
        """Mark rows INVALID and drop their edges, links and entries, at once.

        The neighbours of each dropped replica are chained together with new edges, so
        the rest of its replica set stays connected on disk as it does in memory.
        """
        keys = [_key(replica) for replica in replicas]
        self._flush()
        with self._write():
            ids = []
            for key in keys:
                row = self._db.execute(_ID_OF, key).fetchone()
                if row is None:
                    continue
                ids.append((row[0],))
                neighbours = [n for (n,) in self._db.execute(_NEIGHBOURS, row)]
                self._db.execute("DELETE FROM relations WHERE a = ?1 OR b = ?1", row)
                self._db.executemany(_CHAIN_RELATION, pairwise(neighbours))
            self._db.executemany(
                "UPDATE replicas SET data_type = 'invalid', pending = 0 WHERE id = ?", ids
            )
            self._db.executemany("DELETE FROM links WHERE link = ?", ids)
            self._db.executemany("DELETE FROM entries WHERE id = ?", ids)

    def record_entry(
        self, replica: DataLocation, entry: tuple[str, int, float], digest: str | None
    ) -> None:
        """Queue the insert or replacement of the (kind, size, mtime, digest) row."""
        self._queue(_SET_ENTRY, (*entry, digest, *_key(replica)))

    def set_anchor(
        self,
        lost: DataLocation,
        anchor: DataLocation | None,
        seen: tuple[str, int, float] | None,
    ) -> None:
        """Queue what an INVALID replica was a copy of (None: forgotten)."""
        if anchor is None:
            self._queue(_FORGET_ANCHOR, _key(lost))
        else:
            self._queue(_SET_ANCHOR, (*(seen or (None, None, None)), *_key(lost), *_key(anchor)))

    def note_temporary(self, replica: DataLocation, tmp_path: str | None) -> None:
        """Journal (or clear) the temporary path of a replica this process is writing.

        Committed at once, also inside a batch: the journal must be on disk before the
        temporary file is, or a crash would leave a file nobody knows to remove.
        """
        self._flush()
        tmp = None if tmp_path is None else to_db(tmp_path)
        with self._write():
            self._db.execute(
                "UPDATE replicas SET tmp = ?, owner = ? WHERE deployment = ? AND name = ? "
                "AND path = ?",
                (tmp, self.owners.token, *_key(replica)),
            )

    def claim(self, location: ExecutionLocation, path: str) -> bool:
        """Take the destination ``path`` for a copy by this process, atomically.

        The row of the destination is stamped pending with this process's token in one
        write transaction, unless another live process holds it pending already.

        Returns:
            False if another live process is writing that destination.

        Raises:
            ConfigurationError: If the file cannot be written.
        """
        key = (location.deployment, location.name, to_db(path))
        token = self.owners.token
        try:
            self._flush()
            with self._write():
                row = self._db.execute(f"SELECT pending, owner FROM replicas WHERE {_KEY}", key)
                found = row.fetchone()
                if found and found[0] and found[1] != token and self.owners.alive(found[1]):
                    return False
                basename = path[path.rfind("/") + 1 :] or "/"
                self._db.execute(_CLAIM, (*key[:2], location.local, key[2], to_db(basename), token))
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot write the catalog {self.path!r}: {exc}") from exc
        return True

    def leave_temporary(self, replica: DataLocation) -> None:
        """Give up a temporary this process could not remove: owned by nobody, it is stale."""
        self._flush()
        with self._write():
            self._db.execute(f"UPDATE replicas SET owner = NULL WHERE {_KEY}", _key(replica))

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str]]:
        """Temporary paths journalled by processes that are gone."""
        self._flush()
        rows = self._db.execute(
            "SELECT deployment, name, local, tmp, owner FROM replicas WHERE tmp IS NOT NULL"
        ).fetchall()
        return [
            (self._location(deployment, name, local), from_db(tmp))
            for deployment, name, local, tmp, owner in rows
            if not self.owners.alive(owner)
        ]

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Clear a stale temporary path from the journal once it is removed."""
        self._flush()
        with self._write():
            self._db.execute(
                "UPDATE replicas SET tmp = NULL WHERE deployment = ? AND name = ? AND tmp = ?",
                (location.deployment, location.name, to_db(tmp_path)),
            )

    def commit(self) -> None:
        """Write the queued rows, unless the running context is in a batch.

        A task started inside a batch inherits it; once every batch has ended its commits
        happen again at once, even if it outlives the block. Every write transaction is
        short and committed at once, so other processes never wait long for the file.
        """
        if self._batches == 0 or not in_batch(self):
            self._flush()

    def begin_batch(self) -> None:
        """Defer commits until the outermost :meth:`end_batch`."""
        self._batches += 1

    def end_batch(self) -> None:
        """Leave a batch; the context's outermost commits (nothing once the store is closed)."""
        self._batches -= 1
        if not self._closed:
            self.commit()  # deferred again if this context is still inside an outer batch

    def close(self) -> None:
        """Write what is queued and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._batches = 0
        try:
            self._flush()
        finally:
            self._db.close()
            self.owners.close()


def _key(replica: DataLocation) -> tuple[str, str, object]:
    """The row key of a replica: its location and path."""
    location = replica._location
    return (location.deployment, location.name, to_db(replica._path))

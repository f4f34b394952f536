"""Durable catalog storage: the embedded SQLite implementation of the store interface.

The catalog reports every change to a :class:`~.store.CatalogStore` as rows and calls
:meth:`commit` at the end of each operation, so a change is durable once the call that
made it returns; the rows wait in a :class:`~.write_queue.WriteQueue`, which defers the
commits made inside a batch (:mod:`.batch`).

Many processes may use one file at once:

* Rows are keyed by what they describe, ``(deployment, location name, path)``, never by
  an id a process chose: an upsert from one process lands on the row another process
  wrote for the same replica, and relations, links and entries name their replicas by
  that key too (the database resolves the ids inside the write).
* Every write is one short ``BEGIN IMMEDIATE`` transaction, committed at once; nothing
  holds the file locked across an ``await``.
* Triggers append the id of every changed replica to a ``changes`` table; :meth:`refresh`
  reads what is new since its last look (when ``PRAGMA data_version`` says another
  connection committed) and returns it as rows (:mod:`.sqlite_feed`), which the catalog
  applies to itself.
* Rows of transfers in flight carry the owner token of the process writing them
  (:mod:`.owners`): another process leaves them alone while that process lives, and
  treats them as crash leftovers (INVALID, temporaries removed) once it is gone.

The file, its schema and statements are :mod:`.sqlite_schema`'s; reading it all back is
:mod:`.sqlite_load`'s. Row ids never leave the store. Paths are any bytes POSIX allows: a
string that is not valid UTF-8 (``os.fsdecode`` of such bytes) is stored as a BLOB.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from itertools import pairwise

from .._errors import ConfigurationError
from .._models import DataType, ExecutionLocation
from . import sqlite_feed as feed
from . import sqlite_schema as sql
from .owners import Owners
from .sqlite_feed import from_db, to_db
from .sqlite_feed import row_key as _key
from .sqlite_load import LAST_CHANGE, read_snapshot
from .store import Changes, Key, Signature, Snapshot
from .write_queue import Rows, WriteQueue

__all__ = ["SQLiteStore", "open_store"]

_PRUNE_EVERY = 1_000  # write transactions between prunings of the change feed


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
        self._queue = WriteQueue(self, sql.UPSERT_REPLICA, self._write_rows)
        self._seen = 0  # the last change returned by changes()
        self._writes = 0
        self._data_version: int | None = None
        self._locations: dict[tuple[str, str, int], ExecutionLocation] = {}
        try:
            self._db = sql.connect(path)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the catalog {path!r}: {exc}") from exc
        owners = None
        try:
            self.owners = owners = Owners(path)
            feed.name_writer(self._db, owners.token)
            with self._write():
                sql.migrate(self._db)
                feed.prune(self._db)
        except BaseException as exc:
            self._db.close()
            if owners is not None:
                owners.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise ConfigurationError(f"cannot use the catalog {path!r}: {exc}") from exc
            raise

    @property
    def token(self) -> str:
        """This store's owner token (see :mod:`.owners`)."""
        return self.owners.token

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

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> Snapshot:
        """Every row of the file (see :class:`~.store.Snapshot`).

        Raises:
            ConfigurationError: If the file turns out to be damaged.
        """
        try:
            with self._read():
                self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
                self._seen = self._db.execute(LAST_CHANGE).fetchone()[0]
                return read_snapshot(self._db, self._location)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"the catalog {self.path!r} is damaged: {exc}") from exc

    def changes(self) -> Changes | None:
        """What other processes changed since the last look (None: nothing).

        Cheap when nothing changed: one ``PRAGMA data_version``, which moves only when
        another connection commits.

        Raises:
            ConfigurationError: If the file cannot be read.
        """
        try:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
            if version == self._data_version:
                return None
            self._queue.flush()  # this process's queued rows first: what is read is newer
            with self._read():
                self._data_version = version
                last, changes = feed.read_changes(
                    self._db, self._seen, self.owners.token, self._location
                )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot read the catalog {self.path!r}: {exc}") from exc
        self._seen = last
        return changes

    def alive(self, owner: str | None) -> bool:
        """True while the store that took ``owner`` is open in a live process."""
        return self.owners.alive(owner)

    def owner_of(self, key: Key) -> str | None:
        """The owner stamped on a replica's row while it is pending (None when it is not).

        Raises:
            ConfigurationError: If the file cannot be read.
        """
        try:
            row = self._db.execute(
                f"SELECT owner FROM replicas WHERE {sql.KEY} AND pending", _key(key)
            ).fetchone()
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot read {self.path!r}: {exc}") from exc
        return None if row is None else row[0]

    def forget_owner(self, owner: str) -> None:
        """Remove the lock file of an owner found dead."""
        self.owners.forget(owner)

    # -- changes ---------------------------------------------------------------------------

    def put_replica(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str,
        data_type: DataType,
        implied: bool,
        pending: bool,
        *,
        new: bool = False,  # (an upsert costs SQLite no more than an insert)
    ) -> None:
        """Queue the insert or update of one replica row (keyed by location and path)."""
        self._queue.add(
            sql.UPSERT_REPLICA,
            (
                location.deployment,
                location.name,
                location.local,
                to_db(path),
                to_db(relpath),
                data_type.value,
                implied,
                pending,
                self.owners.token,
            ),
        )

    def _write_rows(self, rows: Rows) -> None:
        """Write the queued rows in one transaction (the queue's order)."""
        with self._write():
            for statement, statement_rows in rows.items():
                self._db.executemany(statement, statement_rows)

    def add_relation(self, first: Key, second: Key) -> None:
        """Queue one edge."""
        self._queue.add(sql.ADD_RELATION, (*_key(first), *_key(second)))

    def set_link_target(self, link: Key, target: Key) -> None:
        """Queue the insert or replacement of a link row."""
        self._queue.add(sql.SET_LINK, (*_key(link), *_key(target)))

    def invalidate(self, keys: Sequence[Key], *, reaping: bool = False) -> None:
        """Mark rows INVALID and drop their edges, links and entries, at once.

        The neighbours of each dropped replica are chained together with new edges, so
        the rest of its replica set stays connected on disk as it does in memory. With
        ``reaping``, only rows pending under a writer that is gone (see the protocol).
        """
        rows = [_key(key) for key in keys]
        self._queue.flush()
        with self._write():
            ids = []
            for row in rows:
                found = self._db.execute(sql.ID_OF, row).fetchone()
                if found is None or (reaping and (not found[1] or self.owners.alive(found[2]))):
                    continue
                ids.append(found[:1])
                neighbours = [n for (n,) in self._db.execute(sql.NEIGHBOURS, found[:1])]
                self._db.execute("DELETE FROM relations WHERE a = ?1 OR b = ?1", found[:1])
                self._db.executemany(sql.CHAIN_RELATION, pairwise(neighbours))
            self._db.executemany(
                "UPDATE replicas SET data_type = 'invalid', pending = 0 WHERE id = ?", ids
            )
            self._db.executemany("DELETE FROM links WHERE link = ?", ids)
            self._db.executemany("DELETE FROM entries WHERE id = ?", ids)

    def record_entry(self, key: Key, entry: Signature, digest: str | None) -> None:
        """Queue the insert or replacement of the (kind, size, mtime, digest) row."""
        self._queue.add(sql.SET_ENTRY, (*entry, digest, *_key(key)))

    def set_anchor(self, lost: Key, anchor: Key | None, seen: Signature | None) -> None:
        """Queue what an INVALID replica was a copy of (None: forgotten)."""
        if anchor is None:
            self._queue.add(sql.FORGET_ANCHOR, _key(lost))
        else:
            self._queue.add(
                sql.SET_ANCHOR, (*(seen or (None, None, None)), *_key(lost), *_key(anchor))
            )

    # -- transfers in flight ---------------------------------------------------------------

    def claim(self, location: ExecutionLocation, path: str, adopt: str | None = None) -> bool:
        """Take the destination ``path`` for a copy by this process, atomically.

        The row of the destination is stamped pending with this process's token in one
        write transaction, unless another live process holds it pending already.

        Returns:
            False if another live process is writing that destination.

        Raises:
            ConfigurationError: If the file cannot be written.
        """
        key = _key((location, path))
        token = self.owners.token
        try:
            self._queue.flush()
            with self._write():
                found = self._db.execute(sql.CLAIMED, key).fetchone()
                adopting = None if adopt is None else to_db(adopt)
                if found and self.owners.blocks_claim(found[0], found[1], found[2], adopting):
                    return False
                basename = path[path.rfind("/") + 1 :] or "/"
                self._db.execute(
                    sql.CLAIM, (*key[:2], location.local, key[2], to_db(basename), token)
                )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot write the catalog {self.path!r}: {exc}") from exc
        return True

    def note_temporary(self, key: Key, tmp_path: str | None) -> None:
        """Journal (or clear) the temporary path of a replica this process is writing.

        Committed at once, also inside a batch: the journal must be on disk before the
        temporary file is, or a crash would leave a file nobody knows to remove.
        """
        self._queue.flush()
        tmp = None if tmp_path is None else to_db(tmp_path)
        with self._write():
            self._db.execute(
                f"UPDATE replicas SET tmp = ?, owner = ? WHERE {sql.KEY}",
                (tmp, self.owners.token, *_key(key)),
            )

    def leave_temporary(self, key: Key) -> None:
        """Give up a temporary this process could not remove: owned by nobody, it is stale."""
        self._queue.flush()
        with self._write():
            self._db.execute(f"UPDATE replicas SET owner = NULL WHERE {sql.KEY}", _key(key))

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str, str]]:
        """Temporary paths journalled by processes that are gone, with their replica's path."""
        self._queue.flush()
        rows = self._db.execute(
            "SELECT deployment, name, local, tmp, owner, path FROM replicas WHERE tmp IS NOT NULL"
        ).fetchall()
        return [
            (self._location(deployment, name, local), from_db(tmp), from_db(path))
            for deployment, name, local, tmp, owner, path in rows
            if not self.owners.alive(owner)
        ]

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Clear a stale temporary path from the journal once it is removed."""
        self._queue.flush()
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
        self._queue.commit()

    def begin_batch(self) -> None:
        """Defer commits until the outermost :meth:`end_batch`."""
        self._queue.begin_batch()

    def end_batch(self) -> None:
        """Leave a batch; the context's outermost commits (nothing once the store is closed)."""
        self._queue.end_batch()

    def close(self) -> None:
        """Write what is queued and close the file (idempotent)."""
        if self._queue.closed:
            return
        try:
            self._queue.close()
        finally:
            self._db.close()
            self.owners.close()

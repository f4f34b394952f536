"""Durable catalog storage in a PostgreSQL database, shared by processes on many machines.

The PostgreSQL implementation of :class:`~.store.CatalogStore`, the same design as the
SQLite file's (:mod:`.sqlite`): rows keyed by what they describe,
``(deployment, location name, path)``, ids resolved by the database inside each
statement; every write one short transaction, committed when the call that made it
returns (queued rows go in one ``executemany``, which psycopg pipelines); triggers feed a
``changes`` table read by :mod:`.postgres_feed`; rows of transfers in flight carry the
owner token of the process writing them, alive while its connection holds an advisory
lock (:mod:`.postgres_owners`).

The driver is psycopg 3's synchronous API: the store interface is synchronous (see
``benchmarks/PG_DRIVER.md``). The store has one connection, used in autocommit mode with
explicit transactions. Every driver error is a :class:`~streamdata.ConfigurationError`
naming the database (its URL without the password).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import Any

import psycopg

from .._models import DataType, ExecutionLocation
from . import postgres_feed as feed
from . import postgres_schema as sql
from .postgres_connect import StoreConnection
from .postgres_owners import PostgresOwners
from .postgres_rows import RowWriter
from .postgres_schema import row_key as _key
from .store import Changes, Key, Signature, Snapshot
from .write_queue import Rows, WriteQueue

__all__ = ["PostgresStore"]

_PRUNE_EVERY = 1_000  # write transactions between prunings of the change feed


def _typed(signature: Signature) -> tuple[str, int, float]:
    """A signature with the types its array columns take (an int mtime would break one)."""
    kind, size, mtime = signature
    return kind, int(size), float(mtime)


class PostgresStore:
    """A catalog kept in a PostgreSQL database (see the module docstring).

    Args:
        url: A ``postgresql://`` URL (libpq's syntax); the schema is created when missing.

    Raises:
        ConfigurationError: If the database cannot be reached or used (down, wrong
            credentials, not a streamdata catalog, written by a newer streamdata).
    """

    #: Who holds this store's token (made on the first connection).
    owners: PostgresOwners

    def __init__(self, url: str) -> None:
        self._queue = WriteQueue(self, sql.UPSERT_REPLICA, self._write_rows)
        self._writer = RowWriter()
        self._new: tuple[object, ...] | None = None  # the last replica row queued, if new
        self._writes = 0
        self._seen = ""  # the snapshot changes() last read at
        self._locations: dict[tuple[str, str, bool], ExecutionLocation] = {}
        self._db = StoreConnection(url, self._on_connect)
        self.name = self._db.name
        self._errors = self._db.errors

    def _on_connect(self, conn: psycopg.Connection[Any]) -> None:
        """Set up a new connection: schema and token the first time, the token's lock after."""
        if self._seen:
            self.owners.lock(conn)
        else:
            sql.migrate(conn)
            self.owners = PostgresOwners(conn)
            self._seen = feed.snapshot_now(conn)
        conn.execute("SELECT set_config('streamdata.writer', %s, false)", (self.owners.token,))

    @property
    def token(self) -> str:
        """This store's owner token (see :mod:`.postgres_owners`)."""
        return self.owners.token

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        """One short write transaction; every :data:`_PRUNE_EVERY` it also prunes the feed."""
        conn = self._db.connection()
        with self._errors("write"):
            with conn.transaction():
                yield conn
            self._wrote(conn)

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """One read transaction: every query inside sees the same snapshot."""
        conn = self._db.connection()
        with self._errors("read"):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _location(self, deployment: str, name: str, local: bool) -> ExecutionLocation:
        key = (deployment, name, local)
        location = self._locations.get(key)
        if location is None:
            location = self._locations[key] = ExecutionLocation(name, deployment, local)
        return location

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> Snapshot:
        """Every row of the catalog (see :class:`~.store.Snapshot`).

        Raises:
            ConfigurationError: If the database cannot be read.
        """
        self._queue.flush()
        with self._read() as conn:
            self._seen = feed.snapshot_now(conn)
            return feed.read_snapshot(conn, self._location)

    def changes(self) -> Changes | None:
        """What other processes committed since the last look (None: nothing).

        Cheap when nothing changed: one query on the indexed ``changes`` table, outside
        any transaction. Only when there is something to read are this process's queued
        rows written first (what is read is newer than them): looking does not cut a
        batch short while the others are idle.

        Raises:
            ConfigurationError: If the database cannot be read.
        """
        token = self.owners.token
        conn = self._db.connection()
        with self._errors("read"):
            now, changed, pruned = feed.look(conn, self._seen, token)
        if changed or pruned:
            self._queue.flush()
            with self._read() as conn:
                now, _, pruned = feed.look(conn, self._seen, token)
                found = feed.read_changes(
                    conn, self._seen, token, self._location, everything=pruned
                )
            self._seen = now
            return found
        self._seen = now
        return None

    def alive(self, owner: str | None) -> bool:
        """True while the store that took ``owner`` is open in a live process.

        Raises:
            ConfigurationError: If the database cannot be read.
        """
        self._db.connection()  # made again first if it broke
        with self._errors("read"):
            return self.owners.alive(owner)

    def owner_of(self, key: Key) -> str | None:
        """The owner stamped on a replica's row while it is pending (None when it is not).

        Raises:
            ConfigurationError: If the database cannot be read.
        """
        conn = self._db.connection()
        with self._errors("read"):
            row = conn.execute(
                f"SELECT owner FROM replicas WHERE {sql.KEY} AND pending", _key(key)
            ).fetchone()
        return None if row is None else row[0]

    def forget_owner(self, owner: str) -> None:
        """Forget an owner found dead.

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        self._db.connection()
        with self._errors("write"):
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
        new: bool = False,
    ) -> None:
        """Queue the insert or update of one replica row (keyed by location and path).

        ``new``: the catalog never held that replica (written alone, a plain insert).
        """
        key = (location.deployment, location.name, os.fsencode(path), location.local)
        row = (*key, os.fsencode(relpath), data_type.value, implied, pending, self.owners.token)
        self._queue.add(sql.UPSERT_REPLICA, row)
        self._new = row if new else None

    def _write_rows(self, rows: Rows) -> None:
        """Write the queued rows in one transaction (:class:`~.postgres_rows.RowWriter`)."""
        conn = self._db.connection()
        with self._errors("write"):
            self._writer.write(conn, self._db.cursor(), rows, self._new)
            self._wrote(conn)

    def _wrote(self, conn: psycopg.Connection[Any]) -> None:
        """Count a write transaction; every :data:`_PRUNE_EVERY` prune the change feed."""
        self._writes += 1
        if self._writes % _PRUNE_EVERY == 0:
            with conn.transaction():
                feed.prune(conn)

    def add_relation(self, first: Key, second: Key) -> None:
        """Queue one edge."""
        self._queue.add(sql.ADD_RELATION, (*_key(first), *_key(second)))

    def set_link_target(self, link: Key, target: Key) -> None:
        """Queue the insert or replacement of a link row."""
        self._queue.add(sql.SET_LINK, (*_key(link), *_key(target)))

    def invalidate(self, keys: Sequence[Key], *, reaping: bool = False) -> None:
        """Mark rows INVALID and drop their edges, links and entries, at once.

        The neighbours of each dropped replica are chained together with new edges, so
        the rest of its replica set stays connected on disk as it does in memory.
        Invalidations run one at a time (an advisory lock), like SQLite's writes. With
        ``reaping``, only rows pending under a writer that is gone (locked, then checked).

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        rows = [_key(key) for key in keys]
        self._queue.flush()
        with self._write() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (sql.INVALIDATE_LOCK,))
            ids = []
            for row in rows:
                query = sql.ID_OF + " FOR UPDATE" if reaping else sql.ID_OF
                found = cursor.execute(query, row).fetchone()
                if found is None or (reaping and (not found[1] or self.owners.alive(found[2]))):
                    continue
                ids.append(found[:1])
                neighbours = [n for (n,) in cursor.execute(sql.NEIGHBOURS, found[:1] * 2)]
                cursor.execute("DELETE FROM relations WHERE a = %s OR b = %s", found[:1] * 2)
                cursor.executemany(sql.CHAIN_RELATION, list(pairwise(neighbours)))
            cursor.executemany(
                "UPDATE replicas SET data_type = 'invalid', pending = false WHERE id = %s", ids
            )
            cursor.executemany("DELETE FROM links WHERE link = %s", ids)
            cursor.executemany("DELETE FROM entries WHERE id = %s", ids)

    def record_entry(self, key: Key, entry: Signature, digest: str | None) -> None:
        """Queue the insert or replacement of the (kind, size, mtime, digest) row."""
        self._queue.add(sql.SET_ENTRY, (*_typed(entry), digest, *_key(key)))

    def set_anchor(self, lost: Key, anchor: Key | None, seen: Signature | None) -> None:
        """Queue what an INVALID replica was a copy of (None: forgotten)."""
        if anchor is None:
            self._queue.add(sql.FORGET_ANCHOR, _key(lost))
        else:
            signature = (None, None, None) if seen is None else _typed(seen)
            self._queue.add(sql.SET_ANCHOR, (*signature, *_key(lost), *_key(anchor)))

    # -- transfers in flight ---------------------------------------------------------------

    def claim(self, location: ExecutionLocation, path: str, adopt: str | None = None) -> bool:
        """Take the destination ``path`` for a copy by this process, atomically.

        A new row is inserted pending with this process's token; an existing row is
        locked (``FOR UPDATE``) and taken unless another live process holds it pending.

        Returns:
            False if another live process is writing that destination.

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        key, token = _key((location, path)), self.owners.token
        basename = os.fsencode(path[path.rfind("/") + 1 :] or "/")
        self._queue.flush()
        with self._write() as conn:
            new = (*key[:2], location.local, key[2], basename, token)
            if conn.execute(sql.CLAIM_NEW, new).fetchone() is not None:
                return True
            found = conn.execute(
                f"SELECT pending, owner, tmp FROM replicas WHERE {sql.KEY} FOR UPDATE", key
            ).fetchone()
            adopting = None if adopt is None else os.fsencode(adopt)
            if found and self.owners.blocks_claim(found[0], found[1], found[2], adopting):
                return False
            conn.execute(f"UPDATE {sql.TAKE_OVER} WHERE {sql.KEY}", (token, *key))
        return True

    def note_temporary(self, key: Key, tmp_path: str | None) -> None:
        """Journal (or clear) the temporary path of a replica this process is writing.

        Committed at once, also inside a batch: the journal must be in the database before
        the temporary file is, or a crash would leave a file nobody knows to remove.

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        self._queue.flush()
        tmp = None if tmp_path is None else os.fsencode(tmp_path)
        with self._write() as conn:
            conn.execute(
                f"UPDATE replicas SET tmp = %s, owner = %s WHERE {sql.KEY}",
                (tmp, self.owners.token, *_key(key)),
            )

    def leave_temporary(self, key: Key) -> None:
        """Give up a temporary this process could not remove: owned by nobody, it is stale.

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        self._queue.flush()
        with self._write() as conn:
            conn.execute(f"UPDATE replicas SET owner = NULL WHERE {sql.KEY}", _key(key))

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str, str]]:
        """Temporary paths journalled by processes that are gone, with their replica's path.

        Raises:
            ConfigurationError: If the database cannot be read.
        """
        self._queue.flush()
        conn = self._db.connection()
        with self._errors("read"):
            rows = conn.execute(
                "SELECT deployment, name, local, tmp, owner, path FROM replicas WHERE tmp NOTNULL"
            ).fetchall()
            return [
                (self._location(deployment, name, local), os.fsdecode(tmp), os.fsdecode(path))
                for deployment, name, local, tmp, owner, path in rows
                if not self.owners.alive(owner)
            ]

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Clear a stale temporary path from the journal once it is removed.

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        self._queue.flush()
        with self._write() as conn:
            conn.execute(
                "UPDATE replicas SET tmp = NULL WHERE deployment = %s AND name = %s AND tmp = %s",
                (location.deployment, location.name, os.fsencode(tmp_path)),
            )

    def commit(self) -> None:
        """Write the queued rows, unless the running context is in a batch.

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        self._queue.commit()

    def begin_batch(self) -> None:
        """Defer commits until the outermost :meth:`end_batch`."""
        self._queue.begin_batch()

    def end_batch(self) -> None:
        """Leave a batch; the context's outermost commits (nothing once the store is closed).

        Raises:
            ConfigurationError: If the database cannot be written.
        """
        self._queue.end_batch()

    def close(self) -> None:
        """Write what is queued and close the connection (idempotent).

        Raises:
            ConfigurationError: If the queued rows cannot be written.
        """
        if self._queue.closed:
            return
        try:
            self._queue.close()
            with self._errors("write"):
                self.owners.close()
        finally:
            self._db.close()

"""The PostgreSQL catalog: its schema, created and versioned by the library, and statements.

The tables mirror the SQLite file's (:mod:`.sqlite_schema`): replicas keyed by
``(deployment, name, path)``, and relations, links, entries and anchors naming replicas
by the database's ids, resolved inside each statement. Paths are stored as ``bytea``
(``os.fsencode``), so any bytes POSIX allows come back exactly, non-UTF-8 included.

``streamdata_meta`` holds the schema version. :func:`migrate` creates or upgrades the
schema under a transaction-level advisory lock (two processes opening a new database at
once do not race), and refuses a schema newer than this library's.

Statement-level triggers append every changed replica to ``changes`` with the writer's
owner token (the session setting ``streamdata.writer``) and the writing transaction's id,
from which the change feed (:mod:`.postgres_feed`) reads what other processes committed:
one ``INSERT ... SELECT`` from the statement's transition tables, however many rows it
wrote (version 1 had row-level triggers, a plpgsql call and an insert per row).

The store writes its queued rows with the statements at the end: one statement per
kind of row, a single row as it is, more rows in one go, each column sent as one binary
array that the server unnests (:data:`BULK`, :func:`bound`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import psycopg

from .._models import DataType
from .store import Key

__all__ = ["BULK", "SCHEMA_VERSION", "NewerSchema", "bound", "migrate", "row_key"]

SCHEMA_VERSION = 2
#: The advisory lock key taken while the schema is created or upgraded ("sdschema").
_MIGRATE_LOCK = 0x7364736368656D61
#: The advisory lock key taken by every invalidation ("sdinvald"): invalidations chain
#: the neighbours of what they drop, which must not interleave with another's.
INVALIDATE_LOCK = 0x7364696E76616C64

_WRITER = "current_setting('streamdata.writer', true)"
#: What each statement-level trigger adds to ``changes`` (replica, writer, dropped), read
#: from the statement's transition tables: ``new_rows``, and ``old_rows`` for an update.
_FEEDS = {
    ("replicas", "INSERT"): f"SELECT id, {_WRITER}, false FROM new_rows",
    ("replicas", "UPDATE"): f"SELECT n.id, {_WRITER}, n.data_type = 'invalid' "
    "AND o.data_type <> 'invalid' FROM new_rows n JOIN old_rows o ON o.id = n.id",
    ("relations", "INSERT"): f"SELECT a, {_WRITER}, false FROM new_rows "
    f"UNION ALL SELECT b, {_WRITER}, false FROM new_rows",
    ("links", "INSERT"): f"SELECT link, {_WRITER}, false FROM new_rows",
    ("links", "UPDATE"): f"SELECT link, {_WRITER}, false FROM new_rows",
    ("entries", "INSERT"): f"SELECT id, {_WRITER}, false FROM new_rows",
    ("entries", "UPDATE"): f"SELECT id, {_WRITER}, false FROM new_rows",
}


def _feed_trigger(table: str, event: str, select: str) -> tuple[str, str]:
    """The function and the statement-level trigger feeding ``changes`` from ``table``."""
    name = f"streamdata_{table}_{'inserted' if event == 'INSERT' else 'updated'}"
    tables = "NEW TABLE AS new_rows" + (" OLD TABLE AS old_rows" if event == "UPDATE" else "")
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO changes (replica, writer, dropped) {select}; RETURN NULL; END $$",
        f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()",
    )


_TRIGGERS = tuple(
    statement
    for (table, event), select in _FEEDS.items()
    for statement in _feed_trigger(table, event, select)
)
#: Version 1's row-level triggers, replaced by version 2's statement-level ones.
_DROP_ROW_TRIGGERS = tuple(
    statement
    for table in ("replicas", "relations", "links", "entries")
    for statement in (
        f"DROP TRIGGER {table}_changed ON {table}",
        f"DROP FUNCTION streamdata_{table}_changed()",
    )
)
_TABLES = (
    """CREATE TABLE replicas (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment text NOT NULL, name text NOT NULL, local boolean NOT NULL,
    path bytea NOT NULL, relpath bytea NOT NULL, data_type text NOT NULL,
    implied boolean NOT NULL, pending boolean NOT NULL, tmp bytea, owner text,
    UNIQUE (deployment, name, path))""",
    "CREATE INDEX replicas_tmp ON replicas (deployment, name, tmp) WHERE tmp IS NOT NULL",
    "CREATE INDEX replicas_pending ON replicas (id) WHERE pending",
    "CREATE TABLE relations (a bigint NOT NULL, b bigint NOT NULL, PRIMARY KEY (a, b))",
    "CREATE INDEX relations_b ON relations (b)",
    "CREATE TABLE links (link bigint PRIMARY KEY, target bigint NOT NULL)",
    "CREATE TABLE entries (id bigint PRIMARY KEY, kind text NOT NULL, size bigint NOT NULL, "
    "mtime double precision NOT NULL, digest text)",
    "CREATE TABLE anchors (id bigint PRIMARY KEY, anchor bigint, kind text, size bigint, "
    "mtime double precision)",
    # the change feed: one row per changed replica, stamped with writer and transaction
    "CREATE TABLE changes (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "replica bigint NOT NULL, writer text, dropped boolean NOT NULL DEFAULT false, "
    "xid xid8 NOT NULL DEFAULT pg_current_xact_id())",
    "CREATE INDEX changes_xid ON changes (xid)",
    # owner tokens of open stores, each held alive by a session advisory lock on its key
    "CREATE TABLE owners (token text PRIMARY KEY, key bigint GENERATED ALWAYS AS IDENTITY UNIQUE)",
)
#: The statements bringing each older version to :data:`SCHEMA_VERSION`.
_UPGRADES = {0: (*_TABLES, *_TRIGGERS), 1: (*_DROP_ROW_TRIGGERS, *_TRIGGERS)}


def row_key(key: Key) -> tuple[str, str, bytes]:
    """The stored key of a replica: its location's deployment and name, its path's bytes."""
    location, path = key
    return (location.deployment, location.name, os.fsencode(path))


class NewerSchema(Exception):
    """The database holds a schema this library cannot use (newer, or not a catalog)."""


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Create or upgrade the schema to :data:`SCHEMA_VERSION`, in one transaction.

    Raises:
        NewerSchema: If the schema is newer than this library's, or the database holds
            a ``replicas`` table that is not a streamdata catalog's.
        psycopg.Error: If the database cannot be read or written.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS streamdata_meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        row = conn.execute("SELECT value FROM streamdata_meta WHERE key = 'schema_version'")
        found = row.fetchone()
        version = int(found[0]) if found else 0
        if version > SCHEMA_VERSION:
            raise NewerSchema(
                f"its schema version {version} is newer than this streamdata's "
                f"({SCHEMA_VERSION}): upgrade streamdata"
            )
        if version == 0 and conn.execute("SELECT to_regclass('replicas')").fetchone() != (None,):
            raise NewerSchema("it holds a replicas table that is not a streamdata catalog's")
        if version < SCHEMA_VERSION:
            for statement in _UPGRADES[version]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO streamdata_meta VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )


# -- statements of the store: replicas are named by their key, ids resolved in SQL

KEY = "deployment = %s AND name = %s AND path = %s"
ID_OF = f"SELECT id, pending, owner FROM replicas WHERE {KEY}"
NEIGHBOURS = "SELECT b FROM relations WHERE a = %s UNION SELECT a FROM relations WHERE b = %s"
#: A claim of an existing row: pending, this owner's, and a replica again (others who see
#: it then wait for it, even if it was INVALID).
TAKE_OVER = "replicas SET pending = true, owner = %s, data_type = 'primary'"
CLAIM_NEW = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (%s, %s, %s, %s, %s, 'primary', false, true, %s)
ON CONFLICT (deployment, name, path) DO NOTHING RETURNING id
"""
CHAIN_RELATION = "INSERT INTO relations VALUES (%s, %s) ON CONFLICT DO NOTHING"
# The queued rows' statements, for one row each: the store sends one queued row with its
# statement, and more rows with the statement's bulk form (BULK), same columns in arrays.
_REPLICA_UPSERT = """
ON CONFLICT (deployment, name, path) DO UPDATE SET local = excluded.local,
    relpath = excluded.relpath, data_type = excluded.data_type, implied = excluded.implied,
    pending = excluded.pending, owner = excluded.owner
"""
_REPLICA_COLUMNS = "(deployment, name, path, local, relpath, data_type, implied, pending, owner)"
#: A replica row: inserted (a key no row has yet), or inserted or updated (any key).
INSERT_REPLICA = f"INSERT INTO replicas {_REPLICA_COLUMNS} VALUES ({', '.join(['%s'] * 9)})"
UPSERT_REPLICA = INSERT_REPLICA + _REPLICA_UPSERT
BOTH = (
    "FROM replicas x, replicas y WHERE x.deployment = %s AND x.name = %s AND x.path = %s "
    "AND y.deployment = %s AND y.name = %s AND y.path = %s"
)
ADD_RELATION = f"INSERT INTO relations SELECT x.id, y.id {BOTH} ON CONFLICT DO NOTHING"
_LINK_UPDATE = "ON CONFLICT (link) DO UPDATE SET target = excluded.target"
SET_LINK = f"INSERT INTO links SELECT x.id, y.id {BOTH} {_LINK_UPDATE}"
_ENTRY_UPDATE = (
    "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, size = excluded.size, "
    "mtime = excluded.mtime, digest = excluded.digest"
)
SET_ENTRY = (
    f"INSERT INTO entries SELECT id, %s, %s, %s, %s FROM replicas WHERE {KEY} {_ENTRY_UPDATE}"
)
_ANCHOR_UPDATE = (
    "ON CONFLICT (id) DO UPDATE SET anchor = excluded.anchor, kind = excluded.kind, "
    "size = excluded.size, mtime = excluded.mtime"
)
SET_ANCHOR = f"INSERT INTO anchors SELECT x.id, y.id, %s, %s, %s {BOTH} {_ANCHOR_UPDATE}"
FORGET_ANCHOR = (
    f"INSERT INTO anchors SELECT id, NULL, NULL, NULL, NULL FROM replicas WHERE {KEY} "
    f"{_ANCHOR_UPDATE}"
)


def _unnest(*names_and_types: str) -> str:
    """``unnest`` of one binary array parameter per column, named: ``("size int8", ...)``."""
    arrays = ", ".join(f"%b::{column.split()[1]}[]" for column in names_and_types)
    names = ", ".join(column.split()[0] for column in names_and_types)
    return f"unnest({arrays}) AS k({names})"


def _replica(alias: str) -> tuple[tuple[str, ...], str]:
    """The key columns of a replica named ``alias`` and the join resolving its id."""
    join = (
        f"JOIN replicas {alias} ON {alias}.deployment = k.{alias}d "
        f"AND {alias}.name = k.{alias}n AND {alias}.path = k.{alias}p"
    )
    return (f"{alias}d text", f"{alias}n text", f"{alias}p bytea"), join


_X, _JOIN_X = _replica("x")
_Y, _JOIN_Y = _replica("y")
_SIGNATURE = ("kind text", "size int8", "mtime float8")
_REPLICA = (*_X, "l bool", "r bytea", "t text", "i bool", "b bool", "o text")
_PAIRS = f"FROM {_unnest(*_X, *_Y)} {_JOIN_X} {_JOIN_Y}"
#: For each statement above: its bulk form, and the columns naming the row it writes (an
#: upsert may not touch one row twice: only the last queued row of each key is sent;
#: None: a duplicate does nothing).
BULK: dict[str, tuple[str, slice | None]] = {
    UPSERT_REPLICA: (
        f"INSERT INTO replicas {_REPLICA_COLUMNS} SELECT * FROM {_unnest(*_REPLICA)}"
        + _REPLICA_UPSERT,
        slice(0, 3),
    ),
    ADD_RELATION: (
        f"INSERT INTO relations SELECT x.id, y.id {_PAIRS} ON CONFLICT DO NOTHING",
        None,
    ),
    SET_LINK: (f"INSERT INTO links SELECT x.id, y.id {_PAIRS} {_LINK_UPDATE}", slice(0, 3)),
    SET_ENTRY: (
        "INSERT INTO entries SELECT x.id, k.kind, k.size, k.mtime, k.digest "
        f"FROM {_unnest(*_SIGNATURE, 'digest text', *_X)} {_JOIN_X} {_ENTRY_UPDATE}",
        slice(4, 7),
    ),
    SET_ANCHOR: (
        "INSERT INTO anchors SELECT x.id, y.id, k.kind, k.size, k.mtime "
        f"FROM {_unnest(*_SIGNATURE, *_X, *_Y)} {_JOIN_X} {_JOIN_Y} {_ANCHOR_UPDATE}",
        slice(3, 6),
    ),
    FORGET_ANCHOR: (
        "INSERT INTO anchors SELECT x.id, NULL, NULL, NULL, NULL "
        f"FROM {_unnest(*_X)} {_JOIN_X} {_ANCHOR_UPDATE}",
        slice(0, 3),
    ),
}


def bound(statement: str, rows: list[tuple[object, ...]]) -> tuple[str, Sequence[object]]:
    """What to execute to write ``rows`` of ``statement``: itself for one row, its bulk
    form for more (one list per column; a key queued twice keeps the place of its first
    row and the values of its last).
    """
    if len(rows) == 1:
        return statement, rows[0]
    bulk, key = BULK[statement]
    if key is not None:
        rows = list({row[key]: row for row in rows}.values())
    return bulk, [list(column) for column in zip(*rows, strict=True)]


#: Data types as numbers while loading: position in TYPE_NUMBERS, computed by the server.
TYPE_NUMBERS = tuple(DataType)
TYPE_CASE = (
    "CASE data_type "
    + " ".join(
        f"WHEN '{data_type.value}' THEN {number}" for number, data_type in enumerate(TYPE_NUMBERS)
    )
    + " END"
)

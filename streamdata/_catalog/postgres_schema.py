"""The PostgreSQL catalog: its schema, created and versioned by the library, and statements.

The tables mirror the SQLite file's (:mod:`.sqlite_schema`): replicas keyed by
``(deployment, name, path)``, and relations, links, entries and anchors naming replicas
by the database's ids, resolved inside each statement. Paths are stored as ``bytea``
(``os.fsencode``), so any bytes POSIX allows come back exactly, non-UTF-8 included.

``streamdata_meta`` holds the schema version. :func:`migrate` creates or upgrades the
schema under a transaction-level advisory lock (two processes opening a new database at
once do not race), and refuses a schema newer than this library's.

Triggers append every changed replica to ``changes`` with the writer's owner token (the
session setting ``streamdata.writer``) and the writing transaction's id, from which the
change feed (:mod:`.postgres_feed`) reads what other processes committed.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

from .._models import DataType
from .store import Key

__all__ = ["SCHEMA_VERSION", "NewerSchema", "migrate", "row_key"]

SCHEMA_VERSION = 1
#: The advisory lock key taken while the schema is created or upgraded ("sdschema").
_MIGRATE_LOCK = 0x7364736368656D61
#: The advisory lock key taken by every invalidation ("sdinvald"): invalidations chain
#: the neighbours of what they drop, which must not interleave with another's.
INVALIDATE_LOCK = 0x7364696E76616C64

_WRITER = "current_setting('streamdata.writer', true)"
#: The rows each table's trigger adds to ``changes``: (replica, writer, dropped).
_CHANGED = {
    "replicas": f"(NEW.id, {_WRITER}, TG_OP = 'UPDATE' AND NEW.data_type = 'invalid' "
    "AND OLD.data_type <> 'invalid')",
    "relations": f"(NEW.a, {_WRITER}, false), (NEW.b, {_WRITER}, false)",
    "links": f"(NEW.link, {_WRITER}, false)",
    "entries": f"(NEW.id, {_WRITER}, false)",
}
_SCHEMA = (
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
    *(
        statement
        for table, values in _CHANGED.items()
        for statement in (
            f"CREATE FUNCTION streamdata_{table}_changed() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN INSERT INTO changes (replica, writer, dropped) VALUES {values}; "
            "RETURN NULL; END $$",
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION streamdata_{table}_changed()",
        )
    ),
)


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
            for statement in _SCHEMA:
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
UPSERT_REPLICA = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (deployment, name, path) DO UPDATE SET local = excluded.local,
    relpath = excluded.relpath, data_type = excluded.data_type, implied = excluded.implied,
    pending = excluded.pending, owner = excluded.owner
"""
#: A claim of an existing row: pending, this owner's, and a replica again (others who see
#: it then wait for it, even if it was INVALID).
TAKE_OVER = "replicas SET pending = true, owner = %s, data_type = 'primary'"
CLAIM_NEW = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (%s, %s, %s, %s, %s, 'primary', false, true, %s)
ON CONFLICT (deployment, name, path) DO NOTHING RETURNING id
"""
BOTH = (
    "FROM replicas x, replicas y WHERE x.deployment = %s AND x.name = %s AND x.path = %s "
    "AND y.deployment = %s AND y.name = %s AND y.path = %s"
)
ADD_RELATION = f"INSERT INTO relations SELECT x.id, y.id {BOTH} ON CONFLICT DO NOTHING"
CHAIN_RELATION = "INSERT INTO relations VALUES (%s, %s) ON CONFLICT DO NOTHING"
SET_LINK = (
    f"INSERT INTO links SELECT x.id, y.id {BOTH} "
    "ON CONFLICT (link) DO UPDATE SET target = excluded.target"
)
SET_ENTRY = (
    f"INSERT INTO entries SELECT id, %s, %s, %s, %s FROM replicas WHERE {KEY} "
    "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, size = excluded.size, "
    "mtime = excluded.mtime, digest = excluded.digest"
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
#: Data types as numbers while loading: position in TYPE_NUMBERS, computed by the server.
TYPE_NUMBERS = tuple(DataType)
TYPE_CASE = (
    "CASE data_type "
    + " ".join(
        f"WHEN '{data_type.value}' THEN {number}" for number, data_type in enumerate(TYPE_NUMBERS)
    )
    + " END"
)

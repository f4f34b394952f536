"""The SQLite catalog file: opening it, its schema and statements, migrations, integrity.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
process being killed at any instant (only a power cut may lose the last commits). The
file's structure is checked when it is opened (:func:`check_integrity`).
"""

from __future__ import annotations

import random
import sqlite3
import time

from . import sqlite_feed as feed

__all__ = [
    "BUSY_SECONDS",
    "CHECK_SECONDS",
    "SCHEMA_VERSION",
    "check_integrity",
    "connect",
    "migrate",
]

SCHEMA_VERSION = 2
#: How long a write waits for another process's transaction before it fails.
BUSY_SECONDS = 30.0
#: How long opening a catalog may spend checking the file's structure.
CHECK_SECONDS = 2.0

CREATE_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
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
    # what an INVALID replica was a copy of (lineage): one row per replica remembered,
    # anchor NULL once forgotten
    "CREATE TABLE IF NOT EXISTS anchors (id INTEGER PRIMARY KEY, anchor INTEGER, kind TEXT, "
    "size INTEGER, mtime REAL)",
    "CREATE INDEX IF NOT EXISTS replicas_tmp ON replicas (tmp) WHERE tmp IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS replicas_pending ON replicas (id) WHERE pending",
    *feed.SCHEMA,
)


# -- statements of the store: replicas are named by their key, ids resolved in SQL

KEY = "deployment = ? AND name = ? AND path = ?"
ID_OF = f"SELECT id, pending, owner FROM replicas WHERE {KEY}"
NEIGHBOURS = "SELECT b FROM relations WHERE a = ?1 UNION SELECT a FROM relations WHERE b = ?1"
UPSERT_REPLICA = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (deployment, name, path) DO UPDATE SET local = excluded.local,
    relpath = excluded.relpath, data_type = excluded.data_type, implied = excluded.implied,
    pending = excluded.pending, owner = excluded.owner
"""
#: What decides whether a claim may take an existing row (``Owners.blocks_claim``).
CLAIMED = f"SELECT pending, owner, tmp FROM replicas WHERE {KEY}"
CLAIM = """
INSERT INTO replicas (deployment, name, local, path, relpath, data_type, implied, pending, owner)
VALUES (?, ?, ?, ?, ?, 'primary', 0, 1, ?)
ON CONFLICT (deployment, name, path) DO UPDATE SET pending = 1, owner = excluded.owner,
    data_type = 'primary'
"""
BOTH = (
    "FROM replicas x, replicas y WHERE x.deployment = ? AND x.name = ? AND x.path = ? "
    "AND y.deployment = ? AND y.name = ? AND y.path = ?"
)
ADD_RELATION = f"INSERT OR IGNORE INTO relations SELECT x.id, y.id {BOTH}"
CHAIN_RELATION = "INSERT OR IGNORE INTO relations VALUES (?, ?)"
SET_LINK = f"INSERT OR REPLACE INTO links SELECT x.id, y.id {BOTH}"
SET_ENTRY = f"INSERT OR REPLACE INTO entries SELECT id, ?, ?, ?, ? FROM replicas WHERE {KEY}"
SET_ANCHOR = f"INSERT OR REPLACE INTO anchors SELECT x.id, y.id, ?, ?, ? {BOTH}"
FORGET_ANCHOR = (
    f"INSERT OR REPLACE INTO anchors SELECT id, NULL, NULL, NULL, NULL FROM replicas WHERE {KEY}"
)


def connect(path: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode and check its structure.

    Raises:
        sqlite3.Error: If the file cannot be opened or is damaged.
    """
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_SECONDS, check_same_thread=False)
    try:
        _into_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        check_integrity(db)
    except BaseException:
        db.close()
        raise
    return db


def _into_wal(db: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, waiting out other processes opening the file too.

    Switching a new file to WAL takes its exclusive lock from a shared one, and SQLite
    answers "database is locked" at once, without its busy timeout, when another
    connection waits for that lock as well (it would deadlock): several processes
    opening one new catalog at the same instant met it (6 of 160 here). So the switch is
    tried again, after a short random pause, for up to :data:`BUSY_SECONDS`.

    Raises:
        sqlite3.OperationalError: If the file stays locked that long, or any other error.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.001, 0.02))


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


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (inside the opening write transaction).

    Raises:
        sqlite3.DatabaseError: If the file is not a streamdata catalog, or was written by
            a newer streamdata.
    """
    db.execute(CREATE_META)
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"its schema version {version} is newer than this streamdata's "
            f"({SCHEMA_VERSION}): upgrade streamdata"
        )
    if version == 0 and db.execute(_HAS_REPLICAS).fetchone() is not None:
        raise sqlite3.DatabaseError("it is not a streamdata catalog")
    if version == 1:  # version 2 stamps in-flight rows with their owner
        db.execute("ALTER TABLE replicas ADD COLUMN owner TEXT")
    if version < SCHEMA_VERSION:
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

"""Reading a PostgreSQL catalog back: all of it (a Snapshot), or what others changed (Changes).

:func:`read_snapshot` returns every row; the replica rows are streamed from the primary key
in chunks (libpq 17+; a server-side cursor before), so that the server sends while the
client decodes.

The change feed: triggers stamp each ``changes`` row with the id of the transaction that
wrote it. Sequence numbers alone would miss a change: a transaction may take a lower
number and commit after a higher one was read. So a reader keeps the snapshot it last
read at (``pg_current_snapshot()``, as text) and reads the changes whose transaction was
not visible in it (``pg_visible_in_snapshot``): exactly what committed since, once each.
:func:`prune` keeps the last :data:`KEEP_CHANGES` changes and records the oldest
transaction kept; a reader whose last snapshot is older re-reads every row.

Call both inside one ``REPEATABLE READ`` transaction, so that everything comes from one
snapshot.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import psycopg

from .._models import DataType, ExecutionLocation
from .postgres_schema import TYPE_CASE, TYPE_NUMBERS
from .store import Changes, Key, ReplicaRow, Snapshot, snapshot_of

__all__ = [
    "KEEP_CHANGES",
    "LOAD_ROWS",
    "STREAM_ROWS",
    "LocationOf",
    "look",
    "prune",
    "read_changes",
    "read_snapshot",
]

KEEP_CHANGES = 200_000
#: Replica rows in a batch of a Snapshot (and fetched at a time by a server-side cursor).
LOAD_ROWS = 50_000
#: Replica rows the server sends in a chunk while loading (libpq 17 and later).
STREAM_ROWS = 20_000
#: Makes (and keeps) the location of a stored ``(deployment, name, local)``.
LocationOf = Callable[[str, str, bool], ExecutionLocation]
_Conn = psycopg.Connection[Any]

_REPLICAS = (
    "SELECT id, deployment, name, local, path, relpath, "
    + TYPE_CASE
    + ", implied::int FROM replicas ORDER BY id"
)
#: Changes since the snapshot %(seen)s by writers other than %(token)s. The upper bound
#: changes no result (a later transaction is not visible) but makes the condition a
#: range, which the planner estimates small: an index scan, never a scan of every change.
_NEW = (
    "c.xid >= pg_snapshot_xmin(%(seen)s::pg_snapshot) "
    "AND c.xid < pg_snapshot_xmax(pg_current_snapshot()) "
    "AND NOT pg_visible_in_snapshot(c.xid, %(seen)s::pg_snapshot) "
    "AND c.writer IS DISTINCT FROM %(token)s"
)
_IN_IDS = "= ANY(%(ids)s::bigint[])"
_TYPES = {data_type.value: data_type for data_type in DataType}
_decode = bytes.decode


def _text(stored: bytes) -> str:
    """A stored path as a string: ``os.fsdecode`` on POSIX, without its checks."""
    return _decode(stored, "utf-8", "surrogateescape")


_LOOK = (
    "SELECT pg_current_snapshot()::text, "
    f"EXISTS (SELECT 1 FROM changes c WHERE {_NEW}), "
    "coalesce((SELECT value::xid8 > pg_snapshot_xmin(%(seen)s::pg_snapshot) "
    "FROM streamdata_meta WHERE key = 'pruned_below'), false)"
)
# What others changed, by ids: each query reads one table by an index (the ids of the
# changed replicas are computed once, by the first), never a join the planner could turn
# into a scan of every replica; the ids are resolved to keys last (_KEYS).
_ROWS = (
    "SELECT id, deployment, name, local, path, relpath, data_type, implied, pending, owner "
    "FROM replicas"
)
_EDGES = "SELECT a, b FROM relations"
_LINKS = "SELECT link, target FROM links"
_ENTRIES = "SELECT id, kind, size, mtime, digest FROM entries"
#: Rows, edges, links and entries: of every replica, or of the changed ones only.
_EVERYTHING = (_ROWS, _EDGES, _LINKS, _ENTRIES)
_CHANGED = (
    f"{_ROWS} WHERE id = ANY(ARRAY(SELECT DISTINCT c.replica FROM changes c WHERE {_NEW}))",
    f"{_EDGES} WHERE a {_IN_IDS} UNION {_EDGES} WHERE b {_IN_IDS}",
    f"{_LINKS} WHERE link {_IN_IDS}",
    f"{_ENTRIES} WHERE id {_IN_IDS}",
)
_DROPPED = f"SELECT DISTINCT c.replica FROM changes c WHERE c.dropped AND {_NEW}"
_KEYS = "SELECT id, deployment, name, local, path FROM replicas WHERE id = ANY(%(ids)s::bigint[])"


def _id_array(ids: Iterable[int]) -> str:
    """Replica ids as the text of a ``bigint[]``: one string, made once for every query
    that takes them (psycopg adapts a list of ints element by element, at each query)."""
    return "{" + ",".join(map(str, ids)) + "}"


def snapshot_now(conn: _Conn) -> str:
    """The snapshot the running transaction reads at, as text."""
    row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert row is not None
    return str(row[0])


class _Numbers(dict[tuple[str, str, bool], int]):
    """Numbers the locations met while loading, 1, 2, ... in order, each made once."""

    def __init__(self, location_of: LocationOf) -> None:
        super().__init__()
        self._location_of = location_of
        self.locations: dict[int, ExecutionLocation] = {}

    def __missing__(self, triple: tuple[str, str, bool]) -> int:
        number = self[triple] = len(self) + 1
        self.locations[number] = self._location_of(*triple)
        return number


def read_snapshot(conn: _Conn, location_of: LocationOf) -> Snapshot:
    """Every row of the catalog (see :class:`~.store.Snapshot`).

    Raises:
        psycopg.Error: If the database cannot be read.
    """
    collecting = gc.isenabled()
    gc.disable()  # many new tuples, none of them garbage: no collection passes
    try:
        numbers = _Numbers(location_of)
        batches = _replica_batches(conn, numbers)
        with conn.cursor(binary=True) as cursor:
            return snapshot_of(numbers.locations, TYPE_NUMBERS, batches, cursor.execute)
    finally:
        if collecting:
            gc.enable()


def _replica_batches(
    conn: _Conn, numbers: _Numbers
) -> list[list[tuple[int, int, str, str, int, int]]]:
    """The replica rows as a Snapshot holds them, :data:`LOAD_ROWS` a batch.

    They come in id order straight from the primary key (no join, no sort), in binary;
    their locations are numbered as they are met.
    """
    decode = bytes.decode
    batches = []
    rows = _replica_rows(conn)
    while batch := [
        (
            i,
            numbers[d, n, lo],
            decode(p, "utf-8", "surrogateescape"),  # _text, inlined
            decode(r, "utf-8", "surrogateescape"),
            t,
            m,
        )
        for i, d, n, lo, p, r, t, m in islice(rows, LOAD_ROWS)
    ]:
        batches.append(batch)
    return batches


def _replica_rows(conn: _Conn) -> Iterator[tuple[Any, ...]]:
    """Every replica row, streamed in chunks: the server sends while they are decoded.

    A libpq older than 17 cannot stream in chunks: a server-side cursor then fetches
    :data:`LOAD_ROWS` at a time (the server waits while a batch is decoded).
    """
    if psycopg.capabilities.has_stream_chunked():
        with conn.cursor(binary=True) as cursor:
            yield from cursor.stream(_REPLICAS, size=STREAM_ROWS)
        return
    with conn.cursor("streamdata_load", binary=True) as named:
        named.execute(_REPLICAS)
        while fetched := named.fetchmany(LOAD_ROWS):
            yield from fetched


def look(conn: _Conn, seen: str, token: str) -> tuple[str, bool, bool]:
    """One cheap query: the snapshot now, whether others changed anything since ``seen``,
    and whether changes since ``seen`` were pruned (then everything must be read again).

    Raises:
        psycopg.Error: If the database cannot be read.
    """
    row = conn.execute(_LOOK, {"seen": seen, "token": token}).fetchone()
    assert row is not None
    return str(row[0]), bool(row[1]), bool(row[2])


def read_changes(
    conn: _Conn, seen: str, token: str, location_of: LocationOf, *, everything: bool = False
) -> Changes:
    """Everything about the replicas other writers changed since the snapshot ``seen``.

    ``everything``: every row, whatever changed (the changes since ``seen`` were pruned).

    Raises:
        psycopg.Error: If the database cannot be read.
    """
    params: dict[str, object] = {"seen": seen, "token": token}
    keys: dict[int, Key] = {}
    rows_of, edges_of, links_of, entries_of = _EVERYTHING if everything else _CHANGED
    with conn.cursor(binary=True) as cursor:
        rows = []
        for rid, d, n, lo, p, rel, kind, imp, busy, owner in cursor.execute(
            rows_of, params
        ).fetchall():  # (fetchall: a row costs a third of iterating the cursor)
            key = keys[rid] = (location_of(d, n, lo), _text(p))
            rows.append(ReplicaRow(*key, _text(rel), _TYPES[kind], imp, busy, owner))
        params["ids"] = _id_array(keys)
        edges: list[tuple[int, int]] = cursor.execute(edges_of, params).fetchall()
        links: list[tuple[int, int]] = cursor.execute(links_of, params).fetchall()
        entries = cursor.execute(entries_of, params).fetchall()
        dropped = [rid for (rid,) in cursor.execute(_DROPPED, params)]
        named = {rid for pair in (*edges, *links) for rid in pair}.union(dropped)
        _resolve(cursor, keys, named, location_of)
    return Changes(
        rows,
        [(keys[a], keys[b]) for a, b in edges if a in keys and b in keys],
        [(keys[a], keys[b]) for a, b in links if a in keys and b in keys],
        [
            (keys[rid], (kind, size, mtime), digest)
            for rid, kind, size, mtime, digest in entries
            if rid in keys
        ],
        [keys[rid] for rid in dropped if rid in keys],
    )


def _resolve(
    cursor: psycopg.Cursor[Any], keys: dict[int, Key], ids: set[int], location_of: LocationOf
) -> None:
    """Add the keys of the replicas ``ids`` names that ``keys`` lacks."""
    missing = [rid for rid in ids if rid not in keys]
    if missing:
        for rid, d, n, lo, p in cursor.execute(_KEYS, {"ids": _id_array(missing)}).fetchall():
            keys[rid] = (location_of(d, n, lo), _text(p))


def prune(conn: _Conn) -> None:
    """Drop all but the last :data:`KEEP_CHANGES` changes, remembering where it cut.

    Raises:
        psycopg.Error: If the database cannot be written.
    """
    row = conn.execute(
        "SELECT xid FROM changes ORDER BY seq DESC OFFSET %s LIMIT 1", (KEEP_CHANGES,)
    ).fetchone()
    if row is None:
        return
    conn.execute("DELETE FROM changes WHERE xid < %s", (row[0],))
    conn.execute(
        "INSERT INTO streamdata_meta VALUES ('pruned_below', %s::text) "
        "ON CONFLICT (key) DO UPDATE SET value = greatest(streamdata_meta.value::xid8, "
        "excluded.value::xid8)::text",
        (row[0],),
    )

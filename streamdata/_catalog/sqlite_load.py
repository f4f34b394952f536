"""Reading a whole SQLite catalog file back, as the rows of a :class:`~.store.Snapshot`.

The bulk path of reopening a catalog: a replica row names its location and data type by
small numbers computed by SQLite (no str objects made for them: a third of the time of
loading 10^6 rows), and rows are fetched :data:`LOAD_ROWS` at a time. Every row id stays
inside the snapshot; the catalog keeps none of them.
"""

from __future__ import annotations

import gc
import sqlite3

from .._models import DataType
from .sqlite_feed import LocationOf, from_db
from .store import Snapshot, snapshot_of

__all__ = ["LAST_CHANGE", "read_snapshot"]

LAST_CHANGE = "SELECT coalesce(max(seq), 0) FROM changes"
#: Replica rows fetched at a time.
LOAD_ROWS = 50_000
# data types as numbers while loading: position in _TYPE_NUMBERS, computed by SQLite
_TYPE_NUMBERS = tuple(DataType)
_TYPE_CASE = " ".join(
    f"WHEN '{data_type.value}' THEN {number}" for number, data_type in enumerate(_TYPE_NUMBERS)
)
_LOCATIONS = (
    "INSERT INTO temp.load_locations SELECT DISTINCT deployment, name, local "
    "FROM replicas ORDER BY deployment, name, local"
)
_REPLICAS = (
    "SELECT r.id, l.rowid, r.path, r.relpath, "
    f"CASE r.data_type {_TYPE_CASE} END, r.implied FROM replicas r "
    "JOIN temp.load_locations l ON l.deployment = r.deployment AND l.name = r.name "
    "AND l.local = r.local ORDER BY r.id"
)


def read_snapshot(db: sqlite3.Connection, location_of: LocationOf) -> Snapshot:
    """Every row of the catalog (call it inside a read transaction: one snapshot).

    Raises:
        sqlite3.Error: If the file cannot be read.
    """
    collecting = gc.isenabled()
    gc.disable()  # many new tuples, none of them garbage: no collection passes
    try:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS load_locations (deployment, name, local)")
        db.execute("DELETE FROM temp.load_locations")
        db.execute(_LOCATIONS)
        locations = {
            number: location_of(deployment, name, local)
            for number, deployment, name, local in db.execute(
                "SELECT rowid, deployment, name, local FROM temp.load_locations"
            )
        }
        cursor = db.execute(_REPLICAS)
        cursor.arraysize = LOAD_ROWS
        batches = []
        while rows := cursor.fetchmany():
            if any(type(row[2]) is bytes or type(row[3]) is bytes for row in rows):
                rows = [(i, n, from_db(p), from_db(r), t, m) for i, n, p, r, t, m in rows]
            batches.append(rows)
        return snapshot_of(locations, _TYPE_NUMBERS, batches, db.execute)
    finally:
        if collecting:
            gc.enable()

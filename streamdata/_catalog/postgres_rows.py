"""Writing the store's queued rows: one transaction; one replica row alone straight through libpq.

Each kind of queued row is one prepared statement, however many rows
(:func:`~.postgres_schema.bound`); a single statement is a transaction of its own
(autocommit): one round trip, the commit included.

Registering one path at a time is one statement in autocommit mode, durable when it
returns. Through a psycopg cursor that call costs about 40 us of Python on top of libpq's
own work (adapting each parameter, the cursor's prepared-statement cache, building the
result); here the statement is prepared once per connection, under a name of its own, and
run with libpq's ``PQexecPrepared`` on parameters already in binary form: text and bytea
as their bytes, booleans as one byte. libpq waits with the GIL released, as psycopg does.

A replica the catalog has never held goes as a plain ``INSERT``: no speculative insertion
(``ON CONFLICT``), and no ``UPDATE`` feed trigger, which PostgreSQL fires for every
``INSERT ... ON CONFLICT DO UPDATE`` whether it updates or not. When another process
inserted that key meanwhile (a unique violation: nothing written), the row goes again as
the upsert. A statement the session lost (psycopg deallocates every prepared statement
after a ``ROLLBACK``) is prepared again.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import errors, pq

from .postgres_schema import INSERT_REPLICA, UPSERT_REPLICA, bound
from .write_queue import Rows

__all__ = ["RowWriter"]

_TEXT, _BYTEA, _BOOL = 25, 17, 16
#: Parameter types of a replica row (UPSERT_REPLICA's columns), all sent in binary.
_TYPES = (_TEXT, _TEXT, _BYTEA, _BOOL, _BYTEA, _TEXT, _BOOL, _BOOL, _TEXT)
_BINARY = (1,) * len(_TYPES)
_BYTE = {False: b"\x00", True: b"\x01"}
_UNIQUE_VIOLATION = b"23505"
_UNKNOWN_STATEMENT = b"26000"
_OK = pq.ExecStatus.COMMAND_OK


def _numbered(statement: str) -> bytes:
    """A statement with psycopg's ``%s`` placeholders as libpq's ``$1``, ``$2``, ..."""
    counter = iter(range(1, statement.count("%s") + 1))
    return re.sub("%s", lambda _: f"${next(counter)}", statement).encode()


#: Statement name -> text: a new replica's plain insert, any replica's upsert.
_STATEMENTS = {
    b"streamdata_insert_replica": _numbered(INSERT_REPLICA),
    b"streamdata_upsert_replica": _numbered(UPSERT_REPLICA),
}
_INSERT, _UPSERT = _STATEMENTS


def _binary(row: tuple[Any, ...]) -> list[bytes]:
    """A replica row (the store's queued tuple, owner included) as binary parameters."""
    deployment, name, path, local, relpath, data_type, implied, pending, owner = row
    return [
        deployment.encode(),
        name.encode(),
        path,
        _BYTE[local],
        relpath,
        data_type.encode(),
        _BYTE[implied],
        _BYTE[pending],
        owner.encode(),
    ]


class RowWriter:
    """Writes the queued rows of a store (see the module docstring)."""

    def __init__(self) -> None:
        self._prepared: dict[bytes, object] = {}  # statement name -> the pgconn it is on

    def write(
        self,
        conn: psycopg.Connection[Any],
        cursor: psycopg.Cursor[Any],
        rows: Rows,
        new: tuple[object, ...] | None,
    ) -> None:
        """Write ``rows`` in one transaction, in their order; ``new``: the row of a replica
        the catalog never held, if one was queued last.

        Raises:
            psycopg.Error: If the rows cannot be written (nothing is).
        """
        alone = rows.get(UPSERT_REPLICA) if len(rows) == 1 else None
        if alone is not None and len(alone) == 1:
            self.write_replica(conn, alone[0], alone[0] is new)
            return
        statements = [bound(statement, each) for statement, each in rows.items()]
        if len(statements) == 1:
            cursor.execute(*statements[0], prepare=True)
            return
        with conn.transaction():
            for statement, params in statements:
                cursor.execute(statement, params, prepare=True)

    def write_replica(self, conn: psycopg.Connection[Any], row: tuple[Any, ...], new: bool) -> None:
        """Insert (``new``: the catalog never held it) or upsert ``row``, committed.

        Raises:
            psycopg.Error: If the row cannot be written (the connection broke, ...).
        """
        params = _binary(row)
        with conn.lock:  # (psycopg's own: one thread at a time on the connection)
            if new:
                result = self._run(conn.pgconn, _INSERT, params)
                if result.status == _OK:
                    return
                if result.error_field(pq.DiagnosticField.SQLSTATE) != _UNIQUE_VIOLATION:
                    raise errors.error_from_result(result)
            result = self._run(conn.pgconn, _UPSERT, params)
        if result.status != _OK:
            raise errors.error_from_result(result)

    def _run(self, pgconn: pq.abc.PGconn, name: bytes, params: list[bytes]) -> Any:
        """Run the prepared statement ``name``, prepared first on a new connection."""
        if self._prepared.get(name) is not pgconn:
            self._prepare(pgconn, name)
        result = pgconn.exec_prepared(name, params, _BINARY)
        if result.error_field(pq.DiagnosticField.SQLSTATE) == _UNKNOWN_STATEMENT:
            self._prepare(pgconn, name)  # deallocated since (psycopg, after a ROLLBACK)
            result = pgconn.exec_prepared(name, params, _BINARY)
        return result

    def _prepare(self, pgconn: pq.abc.PGconn, name: bytes) -> None:
        result = pgconn.prepare(name, _STATEMENTS[name], _TYPES)
        if result.status != _OK:
            raise errors.error_from_result(result)
        self._prepared[name] = pgconn

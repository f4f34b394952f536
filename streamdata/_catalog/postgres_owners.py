"""Which processes using a PostgreSQL catalog are alive: owner tokens held by advisory locks.

The PostgreSQL counterpart of :mod:`.owners`. Every store registers its token in the
``owners`` table, which gives it a unique key, and holds a session-level advisory lock on
that key on its own connection for as long as it is open. The server drops a session's
locks when its connection ends, also when the client process is killed (``kill -9``
closes its socket), so a token whose lock nobody holds belongs to a store that is gone.
Tokens are never reused.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

import psycopg

__all__ = ["NAMESPACE", "PostgresOwners"]

#: The first half of the two-part advisory lock keys of owners ("sd" 1): the second half
#: is the owner's key, so other users of advisory locks in the database do not collide.
NAMESPACE = 0x73640001
_REGISTER = (
    "INSERT INTO owners (token) VALUES (%s) "
    "ON CONFLICT (token) DO UPDATE SET token = excluded.token RETURNING key"
)
#: True while some session holds the advisory lock on the token's key (this database).
_ALIVE = f"""
SELECT EXISTS (SELECT 1 FROM owners o JOIN pg_locks l ON l.locktype = 'advisory'
    AND l.granted AND l.objsubid = 2 AND l.classid = {NAMESPACE}
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.objid::bigint = o.key
WHERE o.token = %s)
"""


class PostgresOwners:
    """This store's owner token, held by ``conn``, and the liveness of the others.

    Args:
        conn: The store's connection (autocommit); the lock lives as long as it does.

    Raises:
        psycopg.Error: If the token cannot be registered or locked.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.token = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
        self._conn = conn
        self.lock(conn)
        self._open = True

    def lock(self, conn: psycopg.Connection[Any]) -> None:
        """Hold this store's token on ``conn`` (again, on a new connection after one broke).

        Raises:
            psycopg.Error: If the token cannot be registered or locked.
        """
        with conn.transaction():
            row = conn.execute(_REGISTER, (self.token,)).fetchone()
        assert row is not None
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (NAMESPACE, row[0]))
        self._conn = conn

    def alive(self, token: str | None) -> bool:
        """True while the store that took ``token`` has its connection open.

        Raises:
            psycopg.Error: If the database cannot be read.
        """
        if token is None:
            return False
        if token == self.token:
            return self._open
        row = self._conn.execute(_ALIVE, (token,)).fetchone()
        return bool(row and row[0])

    def blocks_claim(
        self, pending: object, owner: str | None, tmp: object, adopt: object = None
    ) -> bool:
        """True if a claim of a row must wait: another live store writes it, or the
        temporary of one that is gone is still journalled there (it must be removed first:
        the claim's own would replace the only record of it), unless it is ``adopt``: the
        one the claiming copy resumes from.

        Raises:
            psycopg.Error: If the database cannot be read.
        """
        if owner == self.token:
            return False
        return (bool(pending) and self.alive(owner)) or (tmp is not None and tmp != adopt)

    def forget(self, token: str) -> None:
        """Remove the row of an owner found dead (nothing if it is alive).

        Raises:
            psycopg.Error: If the database cannot be written.
        """
        if token != self.token and not self.alive(token):
            self._conn.execute("DELETE FROM owners WHERE token = %s", (token,))

    def close(self) -> None:
        """Forget this store's token (its lock goes with the connection)."""
        if self._open:
            self._open = False
            self._conn.execute("DELETE FROM owners WHERE token = %s", (self.token,))

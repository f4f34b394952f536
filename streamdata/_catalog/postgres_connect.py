"""The PostgreSQL store's one connection: made with time limits, made again after it broke.

Connecting waits at most :data:`CONNECT_SECONDS`; TCP keepalives and a user timeout make
a server that vanished from the network a failed call within seconds, not a hang. When the
server restarts, the call that meets the broken connection fails (its transaction may or
may not have committed: the caller is told, with a
:class:`~streamdata.ConfigurationError`); the next call connects again and runs the
store's ``on_connect`` again (its owner lock, its writer name).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from .._errors import ConfigurationError
from .postgres_schema import NewerSchema

__all__ = ["CONNECT_SECONDS", "StoreConnection", "display_url"]

#: Seconds to wait for the server when connecting.
CONNECT_SECONDS = 10
#: libpq settings that bound how long a dead peer goes unnoticed.
_LIMITS: dict[str, Any] = {
    "connect_timeout": CONNECT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # milliseconds unacknowledged before the socket fails
}


def display_url(url: str) -> str:
    """``url`` with its password, if any (user info or parameter), replaced by ``***``."""
    head, question, query = url.partition("?")
    scheme, separator, rest = head.partition("://")
    userinfo, at, hosts = rest.rpartition("@")  # the last "@": a password may hold one
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{hosts}"
    return (
        scheme + separator + rest + question + re.sub(r"((?:^|&)password=)[^&]*", r"\1***", query)
    )


class StoreConnection:
    """A connection to ``url`` in autocommit mode, made again when it is found broken.

    Args:
        url: A ``postgresql://`` URL.
        on_connect: Run on every new connection (the first one included) before use.

    Raises:
        ConfigurationError: If the database cannot be reached or ``on_connect`` fails.
    """

    def __init__(self, url: str, on_connect: Callable[[psycopg.Connection[Any]], None]) -> None:
        self._url = url
        self.name = display_url(url)
        self._on_connect = on_connect
        self._conn = self._open()
        self._cursor = self._conn.cursor()

    def _open(self) -> psycopg.Connection[Any]:
        with self.errors("connect to"):
            conn = psycopg.connect(
                self._url, autocommit=True, application_name="streamdata", **_LIMITS
            )
        try:
            with self.errors("use"):
                self._on_connect(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def connection(self) -> psycopg.Connection[Any]:
        """The connection, made again first if the last one broke.

        Raises:
            ConfigurationError: If it has to be made again and cannot be.
        """
        if self._conn.broken:
            self._conn.close()
            self._conn = self._open()
            self._cursor = self._conn.cursor()
        return self._conn

    def cursor(self) -> psycopg.Cursor[Any]:
        """A cursor of :meth:`connection`, kept with it (making one per statement costs).

        Raises:
            ConfigurationError: If the connection has to be made again and cannot be.
        """
        self.connection()
        return self._cursor

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate driver errors into a ConfigurationError naming the database.

        Raises:
            ConfigurationError: For every psycopg error raised inside, ``from`` it.
        """
        try:
            yield
        except NewerSchema as exc:
            raise ConfigurationError(f"cannot use the catalog {self.name}: {exc}") from exc
        except psycopg.Error as exc:
            raise ConfigurationError(f"cannot {action} the catalog {self.name}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

"""The SSH connections of one host: which one a new channel goes on, and its opening.

A channel goes on the least loaded connection. Another connection is opened once the
least loaded one carries :data:`SPREAD` channels (fewer if the pool's slots over
``max_connections`` are fewer) and fewer than ``max_connections`` are open; callers
arriving while it opens take the connections there are, unless every one carries
:data:`SESSIONS_PER_CONNECTION` channels (OpenSSH's ``MaxSessions`` is per connection, 10
by default): those wait for it. The first connection is made by one caller and its
outcome shared with every caller waiting for it (an unreachable host fails them all with
one error, quickly). How one connection is made (and retried) is in :mod:`._connect`.
A channel the server refuses as one too many is retried with backoff while the server
frees a closed one (:meth:`Connections.open_channel`), and its confirmation times the
round trip.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

from ..._errors import ConnectorError, StreamDataError
from ._asyncssh import asyncssh
from ._channel import CommandSession, open_session
from ._connect import Backoff, SingleFlight, connect
from ._errors import SSH_ERRORS
from ._host import PoolSettings, SSHHost

__all__ = ["SESSIONS_PER_CONNECTION", "Channel", "Connection", "Connections", "is_busy"]

#: Channels one connection carries at most: OpenSSH's default ``MaxSessions``.
SESSIONS_PER_CONNECTION = 10
#: Channels on the least loaded connection before another is opened. Each connection is
#: one ``sshd`` process doing all its channels' crypto, so a tree's ``tar`` streams should
#: reach a second one early (measured at 40 ms, 10,000 files of 4 KiB up: 0.86x
#: ``tar | ssh`` with 6, 1.01x with 4).
SPREAD = 4
#: Channel-open refusals that mean "too many sessions right now" (OpenSSH says "connect
#: failed" when MaxSessions is reached).
_BUSY_CODES = (
    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
    asyncssh.OPEN_CONNECT_FAILED,
    asyncssh.OPEN_RESOURCE_SHORTAGE,
)
_BUSY_RETRY_SECONDS = 10.0


class Connection:
    """An SSH connection and the number of channels open on it."""

    __slots__ = ("conn", "load")

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.load = 0

    @property
    def alive(self) -> bool:
        """Whether the connection is still open."""
        return not self.conn.is_closed()


#: An open channel: its connection, the asyncssh channel, and the session behind it.
Channel = tuple[Connection, asyncssh.SSHClientChannel[bytes], CommandSession]


def is_busy(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the server refusing a channel as one too many."""
    return isinstance(exc, asyncssh.ChannelOpenError) and exc.code in _BUSY_CODES


class Connections:
    """The open connections to one host.

    Args:
        host: Where and how to connect.
        settings: Limits and timeouts.
        error: Makes the error to raise about this host.
        sessions: The channels the pool opens at once, at most.
    """

    def __init__(
        self,
        host: SSHHost,
        settings: PoolSettings,
        error: Callable[[str, BaseException | None], StreamDataError],
        sessions: int,
    ) -> None:
        self._host = host
        self._settings = settings
        self._error = error
        self._spread = min(SPREAD, math.ceil(sessions / settings.max_connections))
        self._open: list[Connection] = []
        self._first = SingleFlight[Connection]()
        self._extra = SingleFlight[Connection]()
        self._closed = False

    async def pick(self) -> Connection:
        """The connection for a new channel, connecting if need be (module docstring).

        Raises:
            ConnectorError: If the pool is closed (it never connects again), or the
                first connection cannot be made.
        """
        while True:
            if self._closed:
                raise self._error("the connector was closed", None)
            self._open = [c for c in self._open if c.alive]
            best = min(self._open, key=lambda c: c.load, default=None)
            if best is None:
                await self._first.run(self._add)
                continue
            full = best.load >= SESSIONS_PER_CONNECTION
            may_open = len(self._open) < self._settings.max_connections
            if not may_open or (best.load < self._spread and not full):
                return best
            if self._extra.running and not full:
                return best  # another caller is opening one; no need to wait for it
            try:
                await self._extra.run(self._add)  # then pick again: its waiters all see it
            except ConnectorError:
                return best  # the connections we have still work (a full one: the server says)

    async def open_channel(
        self, command: str, on_round_trip: Callable[[float], None], *, patient: bool = True
    ) -> Channel:
        """Open a session channel running ``command`` on the connection :meth:`pick` gives.

        A server still freeing the session of a channel we saw close may refuse the new
        one for a moment: that is retried with backoff, unless ``patient`` is False. A
        connection found dead is replaced once. Any other failure is final.
        ``on_round_trip`` gets the time the server took to confirm the channel.

        Raises:
            ConnectorError: If no connection or channel can be opened.
        """
        retry = Backoff(_BUSY_RETRY_SECONDS if patient else 0.0)
        replaced = False
        while True:
            connection = await self.pick()
            connection.load += 1
            window = self._settings.window + 2 * self._settings.max_pktsize
            session = CommandSession(window, on_round_trip)
            try:
                channel = await open_session(connection.conn, session, command, self._settings)
            except SSH_ERRORS.handled as exc:
                connection.load -= 1
                if not connection.alive and not replaced:
                    replaced = True  # the connection died: once more on a new one
                    continue
                if not is_busy(exc) or not await retry.wait():
                    raise self._error("cannot open a channel", exc) from exc
                continue
            except BaseException:
                connection.load -= 1
                raise
            return connection, channel, session

    async def _add(self) -> Connection:
        conn = await connect(self._host, self._settings, self._error)
        if self._closed:  # closed while connecting: this one would never be closed
            conn.close()
            raise self._error("the connector was closed", None)
        connection = Connection(conn)
        self._open.append(connection)
        return connection

    async def close(self) -> None:
        """Close every connection; none is opened again. Idempotent."""
        self._closed = True
        connections, self._open = self._open, []
        for connection in connections:
            connection.conn.close()
        for connection in connections:
            with contextlib.suppress(OSError, asyncssh.Error):
                await connection.conn.wait_closed()

"""The connections to one SSH host, and the channels opened on them.

A :class:`HostPool` connects lazily, on the first call that needs the host, and keeps up
to ``max_connections`` connections. The channels open at once on the host, across all its
connections, never exceed ``max_sessions``:

* one channel is reserved for a persistent SFTP session that carries the small metadata
  requests (stat, mkdir, rename, symlink), so they never queue behind bulk data;
* bulk commands (streams, copies) use at most ``max_sessions - 2`` channels, leaving one
  more for short commands (listing, removal);
* one connection carries at most :data:`SESSIONS_PER_CONNECTION` channels (OpenSSH's
  ``MaxSessions`` is per connection, 10 by default), so ``max_sessions`` beyond that
  needs ``max_connections`` > 1: a command finding every connection full while another
  opens waits for it.

A remote command starts the user's login shell, which costs 3 ms on a lean server and
half a second where ``~/.bashrc`` is heavy. So that a transfer does not pay that twice in
a row (once for the SFTP session of its metadata, once for its data command), the pool
opens a *standby* channel together with the SFTP session: a shell that waits for one
command line on its input (its length, a newline, then the line, read exactly by
``dd bs=1``) and runs it by ``exec /bin/sh -c`` (``$0`` is ``sh``, the name its error
messages start with, as a command run by ``sh`` on a channel of its own would say), the
rest of the input being the command's, and its exit status or signal the channel's. Not
``$SHELL -c``: bash started under sshd reads ``~/.bashrc`` again even then (measured: a
2 MB upload 0.45 s that way, 0.36 s with ``/bin/sh``); the environment the login shell
set up is inherited all the same, and every command line the connector sends is POSIX
``sh``. The next command takes the standby instead of opening a channel. The standby
holds one channel slot while idle; it is closed rather than parked if a command is
waiting for a slot, and not used once older than a keep-alive interval (its connection
may have died unnoticed).

No lock is held while connecting: the first connection is made by one caller and its
outcome shared with every caller waiting for it (an unreachable host fails them all with
one error, quickly); more connections are opened as the load grows. How one connection
is made (and retried) is in :mod:`._connect`; a failed command is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..._errors import ConnectorError, StreamDataError
from ._asyncssh import asyncssh
from ._channel import CommandSession, RemoteCommand, close_session, open_session
from ._connect import Backoff, SingleFlight, connect
from ._errors import SSH_ERRORS
from ._host import PoolSettings, SSHHost
from ._parallel import RoundTrips

__all__ = ["SESSIONS_PER_CONNECTION", "HostPool"]

#: Channels one connection carries at most: OpenSSH's default ``MaxSessions``.
SESSIONS_PER_CONNECTION = 10

_T = TypeVar("_T")
#: Small-file transfers in flight on the SFTP session at once.
_SFTP_TRANSFERS = 8
#: Channel-open refusals that mean "too many sessions right now" (OpenSSH says "connect
#: failed" when MaxSessions is reached).
_BUSY_CODES = (
    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
    asyncssh.OPEN_CONNECT_FAILED,
    asyncssh.OPEN_RESOURCE_SHORTAGE,
)
_BUSY_RETRY_SECONDS = 10.0
#: The standby channel's command: read a length, exactly that many bytes, run them.
_LAUNCHER = 'IFS= read -r n && c=$(dd bs=1 count="$n" 2>/dev/null) && exec /bin/sh -c "$c" sh'

_Channel = tuple["_Connection", asyncssh.SSHClientChannel[bytes], CommandSession]


class _Connection:
    """An SSH connection and the number of channels open on it."""

    __slots__ = ("conn", "load")

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.load = 0

    @property
    def alive(self) -> bool:
        return not self.conn.is_closed()


class HostPool:
    """Connections and channels to one SSH host.

    Args:
        host: Where and how to connect.
        settings: Limits and timeouts.
    """

    def __init__(self, host: SSHHost, settings: PoolSettings) -> None:
        self._host = host
        self._settings = settings
        self._label = f"{host.location_name} ({host.host}:{host.port})"
        self._connections: list[_Connection] = []
        self._first = SingleFlight[_Connection]()
        self._extra = SingleFlight[_Connection]()
        self._sftp_flight = SingleFlight[tuple[_Connection, asyncssh.SFTPClient]]()
        self._sftp: tuple[_Connection, asyncssh.SFTPClient] | None = None
        sessions = min(settings.max_sessions, SESSIONS_PER_CONNECTION * settings.max_connections)
        self._channels = asyncio.Semaphore(sessions - 1)
        self._bulk = asyncio.Semaphore(max(1, sessions - 2))
        self._sftp_transfers = asyncio.Semaphore(_SFTP_TRANSFERS)
        self._spread = math.ceil(sessions / settings.max_connections)
        self._standby: _Channel | None = None
        self._standby_since = 0.0
        self._waiting = 0  # commands waiting for a channel slot
        self._closed = False
        self.round_trips = RoundTrips()  #: fed by the SFTP stats (:mod:`._parallel`)

    def error(self, message: str, cause: BaseException | None = None) -> StreamDataError:
        """The error to raise about this host: ``cause`` translated by :data:`SSH_ERRORS`.

        A cause the table does not handle (or none) makes a plain, permanent
        :class:`ConnectorError`.
        """
        text = f"{message} on ssh host {self._label}"
        host = self._host.location_name
        if isinstance(cause, SSH_ERRORS.handled):
            return SSH_ERRORS.translate(cause, text, host=host)
        reason = f": {cause}" if cause is not None and str(cause) else ""
        error = ConnectorError(text + reason, host=host)
        error.__cause__ = cause
        return error

    # -- commands ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def command(self, command: str, *, what: str, bulk: bool) -> AsyncIterator[RemoteCommand]:
        """Run ``command`` (already quoted) through the remote user's shell.

        Args:
            command: The command line.
            what: What it does, for error messages.
            bulk: True for data transfers, which may not use the reserved capacity.

        Yields:
            The running command; its channel is closed when the context exits.

        Raises:
            ConnectorError: If no connection or channel can be opened.
        """
        async with self._command(command, what, bulk=bulk, spare=False) as remote:
            assert remote is not None  # only a spare is given up
            yield remote

    @contextlib.asynccontextmanager
    async def spare_command(
        self, command: str, *, what: str
    ) -> AsyncIterator[RemoteCommand | None]:
        """Like :meth:`command` (bulk), but only if a slot is free now; else yield None.

        For extra parallel streams: waiting for a slot held by another transfer that
        waits for one too could deadlock, so the extra stream is simply not opened. Nor
        is it if the server refuses the channel as too many (its ``MaxSessions`` is lower
        than the pool's share of a connection): no waiting for the server either.

        Raises:
            ConnectorError: If no connection or channel can be opened, for another reason.
        """
        free = not self._bulk.locked() and (not self._channels.locked() or self._standby_usable())
        if not free:
            yield None
            return
        async with self._command(command, what, bulk=True, spare=True) as remote:
            yield remote

    @contextlib.asynccontextmanager
    async def _command(
        self, command: str, what: str, *, bulk: bool, spare: bool
    ) -> AsyncIterator[RemoteCommand | None]:
        """:meth:`command`; a ``spare`` one yields None if the server refuses the channel."""
        async with contextlib.AsyncExitStack() as stack:
            if bulk:
                await stack.enter_async_context(self._bulk)
            standby = self._take_standby()
            if standby is None:
                self._waiting += 1
                try:
                    await stack.enter_async_context(self._channels)
                finally:
                    self._waiting -= 1
                try:
                    connection, channel, session = await self._open_channel(
                        command, patient=not spare
                    )
                except ConnectorError as error:
                    if not (spare and _is_busy(error.__cause__)):
                        raise
                    yield None
                    return
            else:
                stack.callback(self._channels.release)  # the slot the standby held
                connection, channel, session = standby
                line = command.encode("utf-8", "surrogateescape")
                channel.write(b"%d\n%b" % (len(line), line))
            try:
                yield RemoteCommand(
                    channel, session, f"{what} on {self._label}", self._host.location_name
                )
            finally:
                try:
                    await close_session(connection.conn, channel, session)
                finally:
                    connection.load -= 1

    async def run(self, command: str, *, what: str, data: bytes = b"", bulk: bool = False) -> bytes:
        """Run a command, feeding it ``data``, and return its standard output.

        Raises:
            ConnectorError: If it cannot run or exits with a non-zero status.
        """
        output = bytearray()
        async with self.command(command, what=what, bulk=bulk) as remote:
            if data:
                await remote.write(data)
            remote.write_eof()
            while chunk := await remote.read():
                output += chunk
            await remote.finish()
        return bytes(output)

    def _standby_usable(self) -> bool:
        """True when a standby is parked, alive and not older than a keep-alive interval.

        An old standby may sit on a connection that died silently; a fresh channel would
        notice and reconnect, a command written to the standby would just be lost.
        """
        if self._standby is None:
            return False
        connection, _, session = self._standby
        age = time.monotonic() - self._standby_since
        return connection.alive and not session.closed and age < self._settings.keepalive_interval

    def _take_standby(self) -> _Channel | None:
        """The standby channel, if usable (an unusable one is closed and its slot freed)."""
        usable, standby = self._standby_usable(), self._standby
        self._standby = None
        if standby is None or usable:
            return standby
        self._discard(standby)
        return None

    def _discard(self, standby: _Channel) -> None:
        connection, channel, _ = standby
        channel.close()
        connection.load -= 1
        self._channels.release()

    async def _open_standby(self) -> None:
        """Open a standby channel if a slot is free now; give up quietly on any failure.

        If a command started waiting for a slot meanwhile, the new standby is closed
        rather than parked, so that the command gets the slot now.
        """
        if self._standby is not None or self._channels.locked() or self._closed:
            return
        await self._channels.acquire()
        try:
            standby = await self._open_channel(_LAUNCHER, patient=False)
        except ConnectorError:
            self._channels.release()  # only a head start was lost
            return
        except BaseException:
            self._channels.release()
            raise
        if self._standby is None and not self._closed and not self._waiting:
            self._standby, self._standby_since = standby, time.monotonic()
        else:
            self._discard(standby)

    async def _open_channel(self, command: str, *, patient: bool = True) -> _Channel:
        """Open a session channel running ``command``.

        A server still freeing the session of a channel we saw close may refuse the new
        one for a moment: that is retried with backoff, unless ``patient`` is False. A
        connection found dead is replaced once. Any other failure is final.
        """
        retry = Backoff(_BUSY_RETRY_SECONDS if patient else 0.0)
        replaced = False
        while True:
            connection = await self._connection()
            connection.load += 1
            session = CommandSession(self._settings.window + 2 * self._settings.max_pktsize)
            try:
                channel = await open_session(connection.conn, session, command, self._settings)
            except SSH_ERRORS.handled as exc:
                connection.load -= 1
                if not connection.alive and not replaced:
                    replaced = True  # the connection died: once more on a new one
                    continue
                if not _is_busy(exc) or not await retry.wait():
                    raise self.error("cannot open a channel", exc) from exc
                continue
            except BaseException:
                connection.load -= 1
                raise
            return connection, channel, session

    # -- SFTP ----------------------------------------------------------------------------

    def sftp_transfer_slot(self) -> asyncio.Semaphore:
        """Hold one while moving file data over SFTP.

        File data shares the SFTP channel with metadata requests; bounding it bounds how
        long a metadata request can wait behind it.
        """
        return self._sftp_transfers

    async def sftp(
        self,
        call: Callable[[asyncssh.SFTPClient], Awaitable[_T]],
        *,
        what: str,
        retry: bool = True,
    ) -> _T:
        """Run ``call`` with the host's persistent SFTP client.

        Every failure is translated (:data:`SSH_ERRORS`): a request that expects an
        answer such as "no such file" handles it inside ``call``. If the connection is
        lost, ``call`` is run once more on a new one when ``retry`` allows it.

        Raises:
            ConnectorError: If the host cannot be reached or refuses the request
                (``cannot {what}``).
        """
        for attempt in range(2 if retry else 1):
            client = await self._sftp_client()
            try:
                return await call(client)
            except (asyncssh.SFTPConnectionLost, asyncssh.ConnectionLost, BrokenPipeError) as exc:
                self._drop_sftp(client)
                if attempt == 1 or not retry:
                    raise self.error(f"cannot {what}", exc) from exc
            except SSH_ERRORS.handled as exc:
                raise self.error(f"cannot {what}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        current = self._sftp
        if current is not None and current[0].alive:
            return current[1]
        self._sftp = None
        _, client = await self._sftp_flight.run(self._start_sftp)
        return client

    async def _start_sftp(self) -> tuple[_Connection, asyncssh.SFTPClient]:
        """Start the SFTP session, and a standby channel alongside (module docstring)."""
        connection = await self._connection()
        _, started = await asyncio.gather(
            self._open_standby(),
            connection.conn.start_sftp_client(path_errors="surrogateescape"),
            return_exceptions=True,
        )
        if isinstance(started, SSH_ERRORS.handled):
            raise self.error("cannot start SFTP", started) from started
        if isinstance(started, BaseException):
            raise started
        client = started
        connection.load += 1
        self._sftp = (connection, client)
        return connection, client

    def _drop_sftp(self, client: asyncssh.SFTPClient) -> None:
        if self._sftp is not None and self._sftp[1] is client:
            self._sftp[0].load -= 1
            self._sftp = None
            client.exit()

    # -- connections ---------------------------------------------------------------------

    async def _connection(self) -> _Connection:
        """Pick the least loaded connection, opening another while the load is high.

        While another is being opened, callers take the connections there are, unless
        every one carries :data:`SESSIONS_PER_CONNECTION` channels: those wait for it.

        Raises:
            ConnectorError: If the pool is closed (it never connects again).
        """
        while True:
            if self._closed:
                raise self.error("the connector was closed")
            self._connections = [c for c in self._connections if c.alive]
            best = min(self._connections, key=lambda c: c.load, default=None)
            if best is None:
                await self._first.run(self._add_connection)
                continue
            full = best.load >= SESSIONS_PER_CONNECTION
            may_open = len(self._connections) < self._settings.max_connections
            if not may_open or (best.load < self._spread and not full):
                return best
            if self._extra.running and not full:
                return best  # another caller is opening one; no need to wait for it
            try:
                return await self._extra.run(self._add_connection)
            except ConnectorError:
                return best  # the connections we have still work (a full one: the server says)

    async def _add_connection(self) -> _Connection:
        connection = _Connection(await connect(self._host, self._settings, self.error))
        self._connections.append(connection)
        return connection

    async def close(self) -> None:
        """Close every connection of the pool; idempotent."""
        self._closed = True
        standby, self._standby = self._standby, None
        if standby is not None:
            self._discard(standby)
        if self._sftp is not None:
            self._drop_sftp(self._sftp[1])
        connections, self._connections = self._connections, []
        for connection in connections:
            connection.conn.close()
        for connection in connections:
            with contextlib.suppress(OSError, asyncssh.Error):
                await connection.conn.wait_closed()


def _is_busy(exc: BaseException | None) -> bool:
    return isinstance(exc, asyncssh.ChannelOpenError) and exc.code in _BUSY_CODES

"""The connections to one SSH host, and the channels opened on them.

A :class:`HostPool` connects lazily, on the first call that needs the host, and keeps up
to ``max_connections`` connections. The channels open at once on the host, across all its
connections, never exceed ``max_sessions``:

* one channel is reserved for a persistent SFTP session that carries the small metadata
  requests (stat, mkdir, rename, symlink), so they never queue behind bulk data;
* bulk commands (streams, copies) use at most ``max_sessions - 2`` channels, leaving one
  more for short commands (listing, removal);
* one connection carries at most
  :data:`~._connections.SESSIONS_PER_CONNECTION` channels (OpenSSH's ``MaxSessions`` is
  per connection), so more need ``max_connections`` > 1 (:mod:`._connections`).

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

No lock is held while connecting; more connections are opened as the load grows
(:mod:`._connections`). A failed command is never retried.

A transfer's first step on a far host should not wait for the SFTP session (four round
trips: the channel, the subsystem, its version, its limits): :meth:`HostPool.warm_up`
starts it (with the standby) in the background while a cold host's first step runs as a
command (:mod:`._prepare`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..._errors import ConnectorError, StreamDataError
from ._asyncssh import asyncssh
from ._channel import RemoteCommand, close_session
from ._connect import SingleFlight
from ._connections import SESSIONS_PER_CONNECTION, Channel, Connection, Connections, is_busy
from ._errors import SSH_ERRORS
from ._host import PoolSettings, SSHHost
from ._parallel import RoundTrips
from ._warmup import WarmUp

__all__ = ["HostPool"]

_T = TypeVar("_T")
#: Small-file transfers in flight on the SFTP session at once.
_SFTP_TRANSFERS = 8
#: The standby channel's command: read a length, exactly that many bytes, run them.
_LAUNCHER = 'IFS= read -r n && c=$(dd bs=1 count="$n" 2>/dev/null) && exec /bin/sh -c "$c" sh'


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
        self._sftp_flight = SingleFlight[tuple[Connection, asyncssh.SFTPClient]]()
        self._sftp: tuple[Connection, asyncssh.SFTPClient] | None = None
        sessions = min(settings.max_sessions, SESSIONS_PER_CONNECTION * settings.max_connections)
        self._connections = Connections(host, settings, self.error, sessions)
        self._channels = asyncio.Semaphore(sessions - 1)
        self._bulk = asyncio.Semaphore(max(1, sessions - 2))
        self._sftp_transfers = asyncio.Semaphore(_SFTP_TRANSFERS)
        self._standby: Channel | None = None
        self._standby_since = 0.0
        self._waiting = 0  # commands waiting for a channel slot
        self._closed = False
        self.round_trips = RoundTrips()  #: fed by SFTP stats and channel opens (:mod:`._parallel`)
        self._warm = WarmUp(self._sftp_client, self.round_trips)

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
        async with self._command(command, what, bulk=bulk, spare=False, fresh=False) as remote:
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
        async with self._command(command, what, bulk=True, spare=True, fresh=False) as remote:
            yield remote

    @contextlib.asynccontextmanager
    async def _command(
        self, command: str, what: str, *, bulk: bool, spare: bool, fresh: bool
    ) -> AsyncIterator[RemoteCommand | None]:
        """:meth:`command`; a ``spare`` one yields None if the server refuses the channel,
        a ``fresh`` one leaves the standby alone."""
        async with contextlib.AsyncExitStack() as stack:
            if bulk:
                await stack.enter_async_context(self._bulk)
            standby = self._take_standby()
            if fresh and standby is not None:
                if self._channels.locked():
                    self._discard(standby)  # its slot is the one this command needs
                else:
                    self._standby = standby  # parked again, for the next command
                standby = None
            if standby is None:
                self._waiting += 1
                try:
                    await stack.enter_async_context(self._channels)
                finally:
                    self._waiting -= 1
                try:
                    connection, channel, session = await self._connections.open_channel(
                        command, self.round_trips.add, patient=not spare
                    )
                except ConnectorError as error:
                    if not (spare and is_busy(error.__cause__)):
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

    async def run(
        self, command: str, *, what: str, data: bytes = b"", bulk: bool = False, fresh: bool = False
    ) -> bytes:
        """Run a command, feeding it ``data``, and return its standard output.

        With ``fresh``, on a channel of its own, leaving the standby to the next command.

        Raises:
            ConnectorError: If it cannot run or exits with a non-zero status.
        """
        output = bytearray()
        running = self._command(command, what, bulk=bulk, spare=False, fresh=fresh)
        async with running as remote:
            assert remote is not None  # only a spare is given up
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

    def _take_standby(self) -> Channel | None:
        """The standby channel, if usable (an unusable one is closed and its slot freed)."""
        usable, standby = self._standby_usable(), self._standby
        self._standby = None
        if standby is None or usable:
            return standby
        self._discard(standby)
        return None

    def _discard(self, standby: Channel) -> None:
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
            standby = await self._connections.open_channel(
                _LAUNCHER, self.round_trips.add, patient=False
            )
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

    # -- SFTP ----------------------------------------------------------------------------

    @property
    def sftp_ready(self) -> bool:
        """Whether the SFTP session is up: a request on it costs one round trip."""
        return self._sftp is not None and self._sftp[0].alive

    def warm_up(self) -> None:
        """Start the SFTP session (and the standby) in the background, unless under way
        (:class:`~._warmup.WarmUp`: its failure is raised by :meth:`is_far`)."""
        if not self._closed and not self.sftp_ready:
            self._warm.start()

    async def is_far(self) -> bool:
        """Whether the host is :data:`~._parallel.NEAR` or more away, once measured
        (:meth:`~._warmup.WarmUp.is_far`).

        Raises:
            ConnectorError: If the warm-up failed before any round trip was measured.
        """
        return await self._warm.is_far()

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

    async def _start_sftp(self) -> tuple[Connection, asyncssh.SFTPClient]:
        """Start the SFTP session, and a standby channel alongside (module docstring)."""
        connection = await self._connections.pick()
        connection.load += 1  # counted from the start, so no other channel takes its place
        try:
            _, started = await asyncio.gather(
                self._open_standby(),
                connection.conn.start_sftp_client(path_errors="surrogateescape"),
                return_exceptions=True,
            )
        except BaseException:  # cancelled
            connection.load -= 1
            raise
        if isinstance(started, BaseException):
            connection.load -= 1
            if isinstance(started, SSH_ERRORS.handled):
                raise self.error("cannot start SFTP", started) from started
            raise started
        self._sftp = (connection, started)
        return connection, started

    def _drop_sftp(self, client: asyncssh.SFTPClient) -> None:
        if self._sftp is not None and self._sftp[1] is client:
            self._sftp[0].load -= 1
            self._sftp = None
            client.exit()

    async def close(self) -> None:
        """Close every connection of the pool; idempotent."""
        self._closed = True
        await self._warm.close()
        standby, self._standby = self._standby, None
        if standby is not None:
            self._discard(standby)
        if self._sftp is not None:
            self._drop_sftp(self._sftp[1])
        await self._connections.close()

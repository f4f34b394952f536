"""The connections to one SSH host, and the channels opened on them.

A :class:`HostPool` connects lazily, on the first call that needs the host, and keeps up
to ``max_connections`` connections. The channels open at once on the host, across all its
connections, never exceed ``max_sessions``:

* one channel is reserved for a persistent SFTP session that carries the small metadata
  requests (stat, mkdir, rename, symlink), so they never queue behind bulk data;
* bulk commands (streams, copies) use at most ``max_sessions - 2`` channels, leaving one
  more for short commands (listing, removal).

No lock is held while connecting: the first connection is made by one caller and its
outcome shared with every caller waiting for it (so an unreachable host fails them all
with one error, quickly); further connections are opened as the load grows. Connection-
level failures (refused, reset, timed out) are retried with exponential backoff;
authentication and host-key failures are not, and neither is a failed command.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import asyncssh

from .._errors import ConnectorError
from ._ssh_channel import CommandSession, RemoteCommand

if TYPE_CHECKING:
    from .ssh import SSHHost

__all__ = ["HostPool", "PoolSettings"]

_T = TypeVar("_T")
_LOG = logging.getLogger("streamdata.ssh")
#: Preferred ciphers: AES-GCM is the fastest on CPUs with AES instructions (measured).
_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
#: Failures that retrying cannot fix.
_PERMANENT = (
    asyncssh.HostKeyNotVerifiable,
    asyncssh.PermissionDenied,
    asyncssh.KeyExchangeFailed,
    asyncssh.ProtocolNotSupported,
    asyncssh.IllegalUserName,
    asyncssh.KeyImportError,
)
_CLOSE_TIMEOUT = 10.0
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


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How a :class:`HostPool` connects and how much it may open at once."""

    max_connections: int = 2
    max_sessions: int = 8
    connect_timeout: float = 15.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    connect_retries: int = 3
    retry_delay: float = 0.1
    window: int = 16 << 20
    max_pktsize: int = 256 << 10

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_sessions < 2:
            raise ValueError("max_sessions must be at least 2 (one is kept for metadata)")
        if self.connect_timeout <= 0 or self.connect_retries < 0 or self.retry_delay < 0:
            raise ValueError("connect_timeout must be positive, retries and delay not negative")


class _Connection:
    """An SSH connection and the number of channels open on it."""

    __slots__ = ("conn", "load")

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.load = 0

    @property
    def alive(self) -> bool:
        return not self.conn.is_closed()


class _Backoff:
    """Exponentially growing pauses, until a time budget is spent."""

    def __init__(self, budget: float, first: float = 0.002, longest: float = 0.05) -> None:
        self._deadline = time.monotonic() + budget
        self._delay = first
        self._longest = longest

    async def wait(self) -> bool:
        """Sleep before the next attempt; False (without sleeping) when out of time."""
        if time.monotonic() + self._delay > self._deadline:
            return False
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._longest)
        return True


class _Abandoned(Exception):
    """The caller making a shared attempt was cancelled; the waiters try again."""


class _SingleFlight(Generic[_T]):
    """At most one attempt at a time; callers arriving meanwhile share its outcome."""

    def __init__(self) -> None:
        self._future: asyncio.Future[_T] | None = None

    async def run(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        while self._future is not None:
            try:
                return await asyncio.shield(self._future)
            except _Abandoned:
                continue
            except ConnectorError as exc:  # a fresh error per caller, chained to the shared one
                raise ConnectorError(str(exc), host=exc.host) from exc
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_mark_retrieved)
        self._future = future
        try:
            result = await attempt()
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else _Abandoned())
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._future = None


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


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
        self._extra_opening = 0
        self._first = _SingleFlight[_Connection]()
        self._sftp_flight = _SingleFlight[tuple[_Connection, asyncssh.SFTPClient]]()
        self._sftp: tuple[_Connection, asyncssh.SFTPClient] | None = None
        self._channels = asyncio.Semaphore(settings.max_sessions - 1)
        self._bulk = asyncio.Semaphore(max(1, settings.max_sessions - 2))
        self._sftp_transfers = asyncio.Semaphore(_SFTP_TRANSFERS)
        self._spread = math.ceil(settings.max_sessions / settings.max_connections)

    def error(self, message: str, cause: BaseException | None = None) -> ConnectorError:
        """Build a :class:`ConnectorError` about this host."""
        reason = f": {cause}" if cause is not None and str(cause) else ""
        error = ConnectorError(
            f"{message} on ssh host {self._label}{reason}", host=self._host.location_name
        )
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
        async with self._slot(bulk):
            connection, channel, session = await self._open_channel(command)
            try:
                yield RemoteCommand(
                    channel, session, f"{what} on {self._label}", self._host.location_name
                )
            finally:
                await self._close_channel(connection, channel, session)

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

    @contextlib.asynccontextmanager
    async def _slot(self, bulk: bool) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if bulk:
                await stack.enter_async_context(self._bulk)
            await stack.enter_async_context(self._channels)
            yield

    async def _open_channel(
        self, command: str
    ) -> tuple[_Connection, asyncssh.SSHClientChannel[bytes], CommandSession]:
        """Open a session channel running ``command``.

        A server still freeing the session of a channel we saw close may refuse the new
        one for a moment: that is retried with backoff. A connection found dead is
        replaced once. Any other failure is final.
        """
        retry = _Backoff(_BUSY_RETRY_SECONDS)
        replaced = False
        while True:
            connection = await self._connection()
            connection.load += 1
            session = CommandSession(self._settings.window + 2 * self._settings.max_pktsize)
            try:
                channel = await self._create_session(connection, session, command)
            except (OSError, asyncssh.Error) as exc:
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

    async def _create_session(
        self, connection: _Connection, session: CommandSession, command: str
    ) -> asyncssh.SSHClientChannel[bytes]:
        """Open the channel; if cancelled meanwhile, close it once open so none leaks."""
        opening = asyncio.ensure_future(
            connection.conn.create_session(
                functools.partial(_same, session),
                _encode(command),
                encoding=None,
                window=self._settings.window,
                max_pktsize=self._settings.max_pktsize,
            )
        )
        try:
            channel, _ = await asyncio.shield(opening)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                channel, _ = await opening  # a round trip at most
                channel.close()
            raise
        return channel

    async def _close_channel(
        self,
        connection: _Connection,
        channel: asyncssh.SSHClientChannel[bytes],
        session: CommandSession,
    ) -> None:
        """Close the channel and wait for the server to confirm, so the slot is really free."""
        channel.close()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await asyncio.shield(session.done.wait())
        except TimeoutError:
            connection.conn.abort()  # the server does not answer: drop the connection
        finally:
            connection.load -= 1

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

        SFTP errors (e.g. no such file) reach the caller as they are; if the connection is
        lost, ``call`` is run once more on a new one when ``retry`` allows it.

        Raises:
            ConnectorError: If the host cannot be reached.
            asyncssh.SFTPError: The server's answer to the request.
        """
        for attempt in range(2 if retry else 1):
            client = await self._sftp_client()
            try:
                return await call(client)
            except (asyncssh.SFTPConnectionLost, asyncssh.ConnectionLost, BrokenPipeError) as exc:
                self._drop_sftp(client)
                if attempt == 1 or not retry:
                    raise self.error(f"cannot {what}", exc) from exc
            except asyncssh.SFTPError:
                raise
            except (OSError, asyncssh.Error) as exc:
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
        connection = await self._connection()
        try:
            client = await connection.conn.start_sftp_client(path_errors="surrogateescape")
        except (OSError, asyncssh.Error) as exc:
            raise self.error("cannot start SFTP", exc) from exc
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
        """Pick the least loaded connection, opening another while the load is high."""
        while True:
            self._connections = [c for c in self._connections if c.alive]
            best = min(self._connections, key=lambda c: c.load, default=None)
            if best is None:
                await self._first.run(self._add_connection)
                continue
            may_open = len(self._connections) + self._extra_opening < self._settings.max_connections
            if best.load < self._spread or not may_open:
                return best
            self._extra_opening += 1
            try:
                return await self._add_connection()
            except ConnectorError:
                return best  # the connections we have still work
            finally:
                self._extra_opening -= 1

    async def _add_connection(self) -> _Connection:
        connection = _Connection(await self._connect())
        self._connections.append(connection)
        return connection

    async def _connect(self) -> asyncssh.SSHClientConnection:
        """Connect, retrying connection-level failures with exponential backoff."""
        options = self._connect_options()
        delay = self._settings.retry_delay
        for attempt in range(self._settings.connect_retries + 1):
            try:
                return await asyncssh.connect(self._host.host, self._host.port, **options)
            except _PERMANENT as exc:
                raise self.error("cannot log in", exc) from exc
            except (OSError, TimeoutError, asyncssh.Error) as exc:
                if attempt == self._settings.connect_retries:
                    raise self.error("cannot connect", exc) from exc
                _LOG.info(
                    "connecting to %s failed (%s); retrying in %.2fs", self._label, exc, delay
                )
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect_options(self) -> dict[str, Any]:
        host, settings = self._host, self._settings
        options: dict[str, Any] = {
            "known_hosts": self._known_hosts(),
            "client_keys": [os.fspath(key) for key in host.client_keys] or (),
            "connect_timeout": settings.connect_timeout,
            "login_timeout": settings.connect_timeout,
            "keepalive_interval": settings.keepalive_interval,
            "keepalive_count_max": settings.keepalive_count_max,
            "encryption_algs": list(_CIPHERS),
            "compression_algs": ["none"],
            "window": settings.window,
            "max_pktsize": settings.max_pktsize,
        }
        if host.username is not None:
            options["username"] = host.username
        return options

    def _known_hosts(self) -> object:
        if not self._host.check_host_key:
            _LOG.warning(
                "host key of ssh host %s is NOT verified (check_host_key=False): "
                "the connection is open to man-in-the-middle attacks",
                self._label,
            )
            return None
        path = Path(self._host.known_hosts or "~/.ssh/known_hosts").expanduser()
        if not path.is_file():
            return asyncssh.import_known_hosts("")  # nothing is trusted
        return str(path)

    async def close(self) -> None:
        """Close every connection of the pool; idempotent."""
        if self._sftp is not None:
            self._drop_sftp(self._sftp[1])
        connections, self._connections = self._connections, []
        for connection in connections:
            connection.conn.close()
        for connection in connections:
            with contextlib.suppress(OSError, asyncssh.Error):
                await connection.conn.wait_closed()


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, asyncssh.ChannelOpenError) and exc.code in _BUSY_CODES


def _same(session: CommandSession) -> CommandSession:
    return session


def _encode(command: str) -> str:
    """Encode a command line, keeping undecodable file-name bytes as they were."""
    return cast(str, command.encode("utf-8", "surrogateescape"))

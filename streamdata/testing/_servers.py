"""Real SSH servers on the loopback interface, for tests.

Async context managers, each yielding a :class:`SSHTestServer` that knows how to reach
it (host, port, user name, a client key, a ``known_hosts`` file holding the server's host
key) and can build an :class:`~streamdata.SSHHost` for it:

* :func:`open_ssh_server` runs an SSH server inside this process (asyncssh) on
  ``127.0.0.1`` and a free port. It executes commands for real (``/bin/sh -c COMMAND``)
  and serves SFTP on the real filesystem. It counts its open channels, so a test can check
  a client's concurrency limit on the server side, and it can drop every connection.
* :func:`~._openssh.openssh_server` starts the system's OpenSSH ``sshd`` the same way.

Keys are generated for each server; nothing outside a temporary directory is touched and
nothing listens on anything but the loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from streamdata import SSHHost

from ..connectors.ssh._asyncssh import asyncssh

__all__ = ["LOOPBACK", "AsyncSSHTestServer", "SSHTestServer", "open_ssh_server"]

LOOPBACK = "127.0.0.1"
_KEY_TYPE = "ssh-ed25519"
_READ_SIZE = 1 << 18


class SSHTestServer:
    """How to reach a running test server.

    Attributes:
        host: Always ``127.0.0.1``.
        port: The port the server listens on.
        username: The user to log in as (the user running this process).
        client_key: Path of the private key the server accepts.
        known_hosts: Path of a ``known_hosts`` file naming the server's host key.
        directory: A private temporary directory, removed when the server stops.
    """

    __module__ = "streamdata.testing"

    def __init__(
        self,
        *,
        port: int,
        username: str,
        client_key: Path,
        known_hosts: Path,
        directory: Path,
        kill_connections: Callable[[], None],
    ) -> None:
        self.host = LOOPBACK
        self.port = port
        self.username = username
        self.client_key = client_key
        self.known_hosts = known_hosts
        self.directory = directory
        self._kill_connections = kill_connections

    def ssh_host(self, **options: Any) -> SSHHost:
        """Build an :class:`~streamdata.SSHHost` that reaches this server.

        Args:
            **options: Keyword arguments of :class:`~streamdata.SSHHost` overriding the
                defaults (port, user name, client key, known hosts), e.g. ``name=``.

        Returns:
            The host entry.
        """
        settings: dict[str, Any] = {"port": self.port, "username": self.username}
        settings |= {"client_keys": [self.client_key], "known_hosts": self.known_hosts}
        return SSHHost(self.host, **(settings | options))

    def kill_connections(self) -> None:
        """Drop every client connection abruptly, as a crashing server or network would."""
        self._kill_connections()


class ServerKeys:
    """A host key and a client key written to ``directory``, with the files clients need."""

    def __init__(self, directory: Path) -> None:
        self.host_key = asyncssh.generate_private_key(_KEY_TYPE)
        self.client_key = asyncssh.generate_private_key(_KEY_TYPE)
        self.host_key_path = directory / "host_key"
        self.client_key_path = directory / "client_key"
        self.authorized_keys_path = directory / "authorized_keys"
        self.known_hosts_path = directory / "known_hosts"
        self.host_key.write_private_key(self.host_key_path)
        self.client_key.write_private_key(self.client_key_path)
        self.host_key_path.chmod(0o600)
        self.client_key_path.chmod(0o600)
        self.authorized_keys_path.write_bytes(self.client_key.export_public_key())

    def write_known_hosts(self, port: int) -> None:
        public = self.host_key.export_public_key().decode().strip()
        self.known_hosts_path.write_text(f"[{LOOPBACK}]:{port} {public}\n")


# -- the in-process asyncssh server ------------------------------------------------------


class AsyncSSHTestServer(SSHTestServer):
    """A :class:`SSHTestServer` running in this process, which counts its channels.

    Attributes:
        open_channels: Channels (exec and SFTP) open right now.
        max_open_channels: The most channels that were open at once.
        max_channels_per_connection: The most channels open at once on one connection.
        sftp_requests: The SFTP operations started so far (``"open"``, ``"stat"``, ...).
    """

    __module__ = "streamdata.testing"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sftp_requests: list[str] = []
        self.open_channels = 0
        self.max_open_channels = 0
        self.max_channels_per_connection = 0
        self._per_connection: dict[object, int] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: One future per command still being served, resolved when it is done.
        self._handlers: set[asyncio.Future[None]] = set()

    def channel_opened(self, connection: object = None) -> None:
        """Record a new channel on ``connection`` (called by the server)."""
        self.open_channels += 1
        self.max_open_channels = max(self.max_open_channels, self.open_channels)
        count = self._per_connection.get(connection, 0) + 1
        self._per_connection[connection] = count
        self.max_channels_per_connection = max(self.max_channels_per_connection, count)

    def channel_closed(self, connection: object = None) -> None:
        """Record the end of a channel on ``connection`` (called by the server)."""
        self.open_channels -= 1
        count = self._per_connection.pop(connection, 1) - 1
        if count:
            self._per_connection[connection] = count
        for at_most, waiter in self._waiters:
            if self.open_channels <= at_most and not waiter.done():
                waiter.set_result(None)

    async def wait_open_channels(self, at_most: int) -> None:
        """Wait until no more than ``at_most`` channels are open."""
        if self.open_channels <= at_most:
            return
        entry = (at_most, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        finally:
            self._waiters.remove(entry)

    def reset_channel_count(self) -> None:
        """Start counting the most channels open again from those open now."""
        self.max_open_channels = self.open_channels
        self.max_channels_per_connection = max(self._per_connection.values(), default=0)


class _ConnectionTracker(asyncssh.SSHServer):
    """Keeps every server-side connection so they can be dropped on purpose."""

    def __init__(self, connections: set[asyncssh.SSHServerConnection]) -> None:
        self._connections = connections
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._connections.discard(self._connection)


def _sftp_factory(server: AsyncSSHTestServer) -> Callable[[asyncssh.SSHServerChannel[bytes]], Any]:
    class _CountingSFTPServer(asyncssh.SFTPServer):
        def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
            super().__init__(chan)
            self._connection = chan.get_connection()
            server.channel_opened(self._connection)

        def __getattribute__(self, name: str) -> Any:
            if name in ("open", "stat", "lstat", "realpath", "mkdir", "remove", "symlink"):
                server.sftp_requests.append(name)
            return super().__getattribute__(name)

        def exit(self) -> None:
            server.channel_closed(self._connection)

    return _CountingSFTPServer


async def _pump(reader: Any, writer: Any, *, close: Callable[[], None] | None = None) -> None:
    """Copy ``reader`` to ``writer`` until end of file, with back-pressure."""
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await reader.read(_READ_SIZE):
            writer.write(data)
            await writer.drain()
    if close is not None:
        with contextlib.suppress(OSError, asyncssh.Error):
            close()


async def _execute(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run the requested command with ``/bin/sh -c``, wiring its standard streams."""
    if process.command is None:
        process.exit(1)  # no interactive shells on the test server
        return
    child = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        process.command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        await _serve(process, child)
    except* _ChannelClosed:
        pass  # the client went away: the command is killed below
    finally:
        await _reap(child)


class _ChannelClosed(Exception):
    """The client closed the channel (or the connection dropped)."""


async def _serve(
    process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process
) -> None:
    """Pump the streams until the command exits, then report its exit status."""
    assert child.stdin is not None
    assert child.stdout is not None
    assert child.stderr is not None
    async with asyncio.TaskGroup() as group:
        feeding = group.create_task(_pump(process.stdin, child.stdin, close=child.stdin.close))
        group.create_task(_watch_channel(process))
        async with asyncio.TaskGroup() as output:
            output.create_task(_pump(child.stdout, process.stdout))
            output.create_task(_pump(child.stderr, process.stderr))
        status = await child.wait()
        feeding.cancel()
        process.exit(status if status >= 0 else 128 - status)


async def _watch_channel(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Abort the serving of a command once its channel is closed."""
    await process.channel.wait_closed()
    raise _ChannelClosed


async def _reap(child: asyncio.subprocess.Process) -> None:
    """Kill the command's process group, drain its pipes and wait for it.

    The pipes are drained first: ``wait()`` returns only once they are closed.
    """
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    while await pipe.read(_READ_SIZE):
                        pass
    await child.wait()


def _process_factory(
    server: AsyncSSHTestServer,
) -> Callable[[asyncssh.SSHServerProcess[bytes]], Any]:
    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        connection = process.channel.get_connection()
        server.channel_opened(connection)
        done = asyncio.get_running_loop().create_future()
        server._handlers.add(done)
        try:
            await _execute(process)
        finally:
            server.channel_closed(connection)
            server._handlers.discard(done)
            done.set_result(None)

    return handle


@contextlib.asynccontextmanager
async def open_ssh_server() -> AsyncIterator[AsyncSSHTestServer]:
    """Run an SSH server in this process on ``127.0.0.1`` and a free port.

    It accepts the generated client key for the current user, runs each command with
    ``/bin/sh -c`` as this process's user, and serves SFTP on the real filesystem.

    Yields:
        The running server; it stops when the context exits.
    """
    with tempfile.TemporaryDirectory(prefix="streamdata-asyncssh-") as temp:
        directory = Path(temp)
        keys = ServerKeys(directory)
        connections: set[asyncssh.SSHServerConnection] = set()
        server = AsyncSSHTestServer(
            port=0,
            username=getpass.getuser(),
            client_key=keys.client_key_path,
            known_hosts=keys.known_hosts_path,
            directory=directory,
            kill_connections=lambda: _abort_all(connections),
        )
        acceptor = await asyncssh.listen(
            LOOPBACK,
            0,
            server_factory=lambda: _ConnectionTracker(connections),
            server_host_keys=[keys.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                keys.authorized_keys_path.read_text()
            ),
            process_factory=_process_factory(server),
            sftp_factory=_sftp_factory(server),
            encoding=None,
            allow_scp=False,
        )
        try:
            server.port = acceptor.get_port()
            keys.write_known_hosts(server.port)
            yield server
        finally:
            _abort_all(connections)
            acceptor.close()
            await acceptor.wait_closed()
            if server._handlers:  # every command is killed and reaped before we return
                await asyncio.wait(set(server._handlers), timeout=10)


open_ssh_server.__module__ = "streamdata.testing"


def _abort_all(connections: set[asyncssh.SSHServerConnection]) -> None:
    for conn in list(connections):
        conn.abort()

"""SSH-specific behaviour: laziness, host keys, pool limits, broken connections, memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shlex
import shutil
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest

from streamdata import ConfigurationError, ConnectorError, ExecutionLocation, SSHConnector, SSHHost
from streamdata.connectors import Entry, EntryKind
from streamdata.connectors.ssh._connections import SESSIONS_PER_CONNECTION
from streamdata.testing import AsyncSSHTestServer, SSHTestServer, _openssh

LOCATION = ExecutionLocation("remote", "ssh")
BIG = 64 << 20


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def existing(path: Path) -> Entry:
    """The entry of a local file, as the engine's stat gives it to ``read``."""
    info = path.stat()
    return Entry(str(path), EntryKind.FILE, info.st_size, info.st_mtime, info.st_mode & 0o7777)


def new_file(path: str, size: int, mtime: float = 0.0) -> Entry:
    """The entry of a file of ``size`` bytes to ``write`` at ``path``."""
    return Entry(path, EntryKind.FILE, size, mtime, 0o644)


def write_foreign_known_hosts(path: Path, port: int) -> Path:
    """A known_hosts file naming another key for the server's address."""
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    path.write_text(f"[127.0.0.1]:{port} {key}\n")
    return path


async def chunks_forever(
    size: int = 1 << 20, after: int = 0, started: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """Endless chunks; ``started`` is set once ``after`` chunks have been produced."""
    block = os.urandom(size)
    sent = 0
    while True:
        yield block
        sent += 1
        if started is not None and sent >= after:
            started.set()


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    """An async stream of the given chunks."""
    for part in parts:
        yield part


async def gated_chunks(gate: asyncio.Event, started: asyncio.Event) -> AsyncIterator[bytes]:
    """More than a small file's worth of bytes, then a wait for ``gate``."""
    yield os.urandom(2 << 20)
    started.set()
    await gate.wait()
    yield b"end"


@contextlib.asynccontextmanager
async def connector_for(server: SSHTestServer, **options: object) -> AsyncIterator[SSHConnector]:
    """An SSH connector whose location ``remote`` is ``server``."""
    async with SSHConnector([server.ssh_host(name="remote")], **options) as connector:  # type: ignore[arg-type]
        yield connector


# -- laziness and configuration ---------------------------------------------------------


async def test_constructing_never_connects() -> None:
    """Creating and closing a connector to a dead address contacts nothing and raises nothing."""
    connector = SSHConnector([SSHHost("127.0.0.1", port=closed_port(), name="remote")])
    assert connector.filesystem(LOCATION)[0] == "ssh"  # type: ignore[index]
    await connector.close()
    await connector.close()


def test_bad_options_are_rejected() -> None:
    """Duplicate location names and out-of-range limits raise ValueError."""
    with pytest.raises(ValueError, match="named"):
        SSHConnector([SSHHost("a", name="x"), SSHHost("b", name="x")])
    with pytest.raises(ValueError, match="max_sessions"):
        SSHConnector([SSHHost("a")], max_sessions=1)
    with pytest.raises(ValueError, match="port"):
        SSHHost("a", port=0)
    with pytest.raises(TypeError):
        SSHHost("a", client_keys="/one/key")


async def test_unknown_location_is_a_configuration_error() -> None:
    """A location name no host carries raises ConfigurationError."""
    async with SSHConnector([SSHHost("127.0.0.1", name="remote")]) as connector:
        with pytest.raises(ConfigurationError):
            await connector.stat(ExecutionLocation("other", "ssh"), "/")


def test_two_names_for_one_server_share_a_filesystem() -> None:
    """Host entries with the same address and port share a filesystem key; others do not."""
    connector = SSHConnector(
        [SSHHost("h", name="a"), SSHHost("h", name="b"), SSHHost("h", port=2222, name="c")]
    )
    keys = [connector.filesystem(ExecutionLocation(n, "ssh")) for n in "abc"]
    assert keys[0] == keys[1] == ("ssh", "h", 22)
    assert keys[2] != keys[0]


async def test_same_server_copy_between_two_names(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Two names for one server share connections, and copy works across them."""
    hosts = [asyncssh_server.ssh_host(name="a"), asyncssh_server.ssh_host(name="b")]
    (tmp_path / "src").write_bytes(b"shared")
    async with SSHConnector(hosts) as connector:
        await connector.copy(
            ExecutionLocation("b", "ssh"), str(tmp_path / "src"), str(tmp_path / "dst")
        )
        assert (
            await connector.stat(ExecutionLocation("a", "ssh"), str(tmp_path / "dst")) is not None
        )
    assert (tmp_path / "dst").read_bytes() == b"shared"


# -- failures to connect ------------------------------------------------------------------


@pytest.mark.timing  # a wall-clock bound of a few seconds
async def test_unreachable_port_fails_promptly_naming_the_host() -> None:
    """A refused connection is retried briefly, then ConnectorError names the host."""
    host = SSHHost("127.0.0.1", port=closed_port(), name="deadhost", check_host_key=False)
    async with SSHConnector([host], connect_retries=2) as connector:
        started = time.monotonic()
        with pytest.raises(ConnectorError, match="deadhost") as caught:
            await connector.stat(ExecutionLocation("deadhost", "ssh"), "/")
    assert time.monotonic() - started < 5
    assert caught.value.host == "deadhost"
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.timing  # a wall-clock bound of a few seconds
async def test_concurrent_callers_share_one_failed_connection_attempt() -> None:
    """Fifty calls to an unreachable host fail together, not one retry cycle after another."""
    host = SSHHost("127.0.0.1", port=closed_port(), name="remote", check_host_key=False)
    async with SSHConnector([host], connect_retries=3, max_sessions=3) as connector:
        started = time.monotonic()
        calls = [connector.stat(LOCATION, f"/x{i}") for i in range(50)]
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, ConnectorError) for result in results)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("server_kind", ["asyncssh", "openssh"])
async def test_wrong_host_key_is_refused(
    server_kind: str,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
    tmp_path: Path,
) -> None:
    """A host key other than the known one is refused with ConnectorError; nothing is written."""
    server = asyncssh_server if server_kind == "asyncssh" else openssh_server
    known = write_foreign_known_hosts(tmp_path / "known_hosts", server.port)
    target = tmp_path / "never"
    host = server.ssh_host(name="spoofed", known_hosts=known)
    async with SSHConnector([host]) as connector:
        location = ExecutionLocation("spoofed", "ssh")
        with pytest.raises(ConnectorError, match="spoofed") as caught:
            await connector.write(location, str(target), new_file(str(target), 1), chunks_of(b"x"))
    assert "host key" in str(caught.value).lower()
    assert not target.exists()


async def test_missing_known_hosts_file_trusts_nothing(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """A known_hosts file that does not exist means no host key is accepted."""
    host = asyncssh_server.ssh_host(name="remote", known_hosts=tmp_path / "absent")
    async with SSHConnector([host]) as connector:
        with pytest.raises(ConnectorError, match="remote"):
            await connector.stat(LOCATION, str(tmp_path))


async def test_unskipped_check_host_key_false_logs_a_warning(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """check_host_key=False connects despite an unknown key and logs a warning about it."""
    known = write_foreign_known_hosts(tmp_path / "known_hosts", asyncssh_server.port)
    host = asyncssh_server.ssh_host(name="remote", known_hosts=known, check_host_key=False)
    with caplog.at_level(logging.WARNING, logger="streamdata.ssh"):
        async with SSHConnector([host]) as connector:
            assert await connector.stat(LOCATION, str(tmp_path)) is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("NOT verified" in r.getMessage() for r in warnings)


# -- limits -----------------------------------------------------------------------------------


def mixed_operations(
    connector: SSHConnector, root: Path, count: int, kinds: str = "WwRrsl"
) -> list[Callable[[], Awaitable[object]]]:
    """``count`` operations cycling through ``kinds``.

    ``W``/``w``: write a big (command) or small (SFTP) file; ``R``/``r``: read one;
    ``s``: stat; ``l``: list the tree.
    """
    big, small = root / "big.bin", root / "small.bin"
    big.write_bytes(os.urandom(2 << 20))
    small.write_bytes(b"small")

    async def read(source: Path) -> object:
        async with connector.read(LOCATION, existing(source)) as chunks:
            return sum([len(chunk) async for chunk in chunks])

    async def write(index: int, size: int) -> object:
        path, data = str(root / f"out-{index}"), os.urandom(size)
        await connector.write(LOCATION, path, new_file(path, size, 0.5), chunks_of(data))
        return path

    async def walk() -> object:
        return [entry async for entry in connector.walk(LOCATION, str(root))]

    makers: dict[str, Callable[[int], Awaitable[object]]] = {
        "W": lambda i: write(i, 2 << 20),
        "w": lambda i: write(i, 10),
        "R": lambda i: read(big),
        "r": lambda i: read(small),
        "s": lambda i: connector.stat(LOCATION, str(big)),
        "l": lambda i: walk(),
    }
    return [bind(makers[kinds[i % len(kinds)]], i) for i in range(count)]


def bind(
    function: Callable[[int], Awaitable[object]], index: int
) -> Callable[[], Awaitable[object]]:
    """Bind ``index``, so each operation is created when it starts."""
    return lambda: function(index)


async def test_max_sessions_is_never_exceeded_on_the_server(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """60 concurrent operations with max_sessions=4 never hold more than 4 server channels."""
    async with connector_for(asyncssh_server, max_sessions=4, max_connections=2) as connector:
        operations = mixed_operations(connector, tmp_path, 60)
        await asyncio.gather(*(operation() for operation in operations))
    assert 2 < asyncssh_server.max_open_channels <= 4


@pytest.mark.parametrize("connections", [1, 2])
async def test_one_connection_carries_at_most_openssh_default_sessions(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, connections: int
) -> None:
    """max_sessions=20: 60 concurrent operations never put more channels on one
    connection than OpenSSH's default MaxSessions; over two connections they use more."""
    async with connector_for(
        asyncssh_server, max_sessions=20, max_connections=connections
    ) as connector:
        operations = mixed_operations(connector, tmp_path, 60, kinds="WRWRsw")
        await asyncio.gather(*(operation() for operation in operations))
    # + 2: a channel the client closed (a standby given up) counts on the server until
    # its command has exited; the old pool put 19-20 on one connection
    assert asyncssh_server.max_channels_per_connection <= SESSIONS_PER_CONNECTION + 2
    if connections == 2:
        assert asyncssh_server.max_open_channels > SESSIONS_PER_CONNECTION


async def test_openssh_session_limit_is_respected(tmp_path: Path) -> None:
    """On sshd with MaxSessions 4 and one connection, 60 concurrent operations all succeed."""
    async with (
        _openssh.openssh_server(max_sessions=4) as server,
        connector_for(server, max_sessions=4, max_connections=1) as connector,
    ):
        # a fifth of them run a command (~0.2 s each on this box: root's .bashrc)
        operations = mixed_operations(connector, tmp_path, 60, kinds="WwrssrwslW")
        await asyncio.gather(*(operation() for operation in operations))
    assert len(list(tmp_path.glob("out-*"))) == 24


async def test_metadata_is_not_starved_by_bulk_transfers(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """With every bulk slot taken by stalled transfers, metadata calls still complete."""
    gate = asyncio.Event()
    async with (
        connector_for(asyncssh_server, max_sessions=4) as connector,
        asyncio.TaskGroup() as group,
    ):
        for index in range(4):  # two stall on their channels, two wait for a slot
            started = asyncio.Event()
            path = str(tmp_path / f"stalled-{index}")
            stream = gated_chunks(gate, started)
            group.create_task(connector.write(LOCATION, path, new_file(path, BIG), stream))
        await asyncio.sleep(0.2)
        async with asyncio.timeout(5):
            assert await connector.stat(LOCATION, str(tmp_path)) is not None
            assert len([e async for e in connector.walk(LOCATION, str(tmp_path))]) >= 1
            await connector.remove(LOCATION, str(tmp_path / "missing"))
        assert asyncssh_server.open_channels == 3  # SFTP and the two stalled writes
        gate.set()
    assert asyncssh_server.max_open_channels <= 4


# -- broken connections, cancellation, memory ---------------------------------------------


@pytest.mark.parametrize("server_kind", ["asyncssh", "openssh"])
async def test_connection_killed_mid_read_fails_promptly(
    server_kind: str,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
    tmp_path: Path,
) -> None:
    """Dropping the connection during a large read raises ConnectorError, never hangs."""
    server = asyncssh_server if server_kind == "asyncssh" else openssh_server
    source = tmp_path / "big"
    source.write_bytes(os.urandom(BIG))

    async def read_while_killing(connector: SSHConnector) -> None:
        async with connector.read(LOCATION, existing(source)) as chunks:
            async for _ in chunks:
                server.kill_connections()
                await asyncio.sleep(0.05)

    async with connector_for(server) as connector:
        with pytest.raises(ConnectorError):
            async with asyncio.timeout(20):
                await read_while_killing(connector)
        assert await connector.stat(LOCATION, str(source)) is not None  # it reconnects


@pytest.mark.parametrize("server_kind", ["asyncssh", "openssh"])
async def test_connection_killed_mid_write_fails_promptly(
    server_kind: str,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
    tmp_path: Path,
) -> None:
    """Dropping the connection during a large write raises ConnectorError, never hangs."""
    server = asyncssh_server if server_kind == "asyncssh" else openssh_server
    started = asyncio.Event()

    async def kill_when_started() -> None:
        await started.wait()
        server.kill_connections()

    async with (
        connector_for(server) as connector,
        asyncio.timeout(20),
        asyncio.TaskGroup() as group,
    ):
        group.create_task(kill_when_started())
        stream = chunks_forever(after=8, started=started)
        partial = str(tmp_path / "partial")
        with pytest.raises(ConnectorError):
            await connector.write(LOCATION, partial, new_file(partial, BIG), stream)


async def test_cancelling_a_read_closes_its_channel(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Cancelling a transfer closes its channel on the server promptly."""
    source = tmp_path / "big"
    source.write_bytes(os.urandom(BIG))
    first = asyncio.Event()

    async def consume(connector: SSHConnector) -> None:
        async with connector.read(LOCATION, existing(source)) as chunks:
            async for _ in chunks:
                first.set()
                await asyncio.sleep(1)

    async with connector_for(asyncssh_server) as connector:
        task = asyncio.create_task(consume(connector))
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5):
            await asyncssh_server.wait_open_channels(1)  # the SFTP session stays open


async def test_slow_reader_holds_bounded_memory(
    openssh_server: SSHTestServer, tmp_path: Path
) -> None:
    """A slow consumer of a large stream keeps the client's buffered bytes bounded."""
    source = tmp_path / "big"
    source.write_bytes(os.urandom(2 * BIG))
    received = peak = 0
    async with connector_for(openssh_server) as connector:
        tracemalloc.start()
        try:
            async with connector.read(LOCATION, existing(source)) as chunks:
                async for chunk in chunks:
                    received += len(chunk)
                    await asyncio.sleep(0.5 if received == len(chunk) else 0.01)
                    peak = max(peak, tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
    assert received == 2 * BIG
    assert peak < 40 << 20  # one 16 MiB window queued in the channel, one in the session


# -- the standby shell ------------------------------------------------------------------

PROBE = 'echo "$0"'


def _fresh_channel_shell(server_kind: str) -> bytes:
    """``$0`` of a command on a channel of its own: what the server runs it with."""
    if server_kind == "asyncssh":
        return b"/bin/sh"  # the test server runs /bin/sh -c COMMAND
    return os.path.basename(pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh").encode()


@pytest.mark.parametrize("server_kind", ["asyncssh", "openssh"])
async def test_first_command_runs_on_the_standby_shell(
    server_kind: str, asyncssh_server: AsyncSSHTestServer, openssh_server: SSHTestServer
) -> None:
    """The shell started alongside SFTP runs the next command exactly; later ones get a channel."""
    server = asyncssh_server if server_kind == "asyncssh" else openssh_server
    hostile = "a b\n'c'\"d\" $(touch /tmp/pwned) ; -e é"
    async with connector_for(server) as connector:
        await connector.stat(LOCATION, "/")  # starts the SFTP session and the standby
        pool = connector._pool(LOCATION)
        first = await pool.run(f"{PROBE}; printf %s {shlex.quote(hostile)}", what="probe")
        second = await pool.run(PROBE, what="probe")
    assert first.startswith(b"sh\n")  # run by the waiting launcher shell, as sh
    assert first.endswith(hostile.encode())  # the command line arrived intact
    assert second == _fresh_channel_shell(server_kind) + b"\n"  # a channel of its own


async def test_the_standby_starts_no_second_user_shell(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command the standby runs does not start the user's shell (bash) again, whose
    start-up files can cost a tenth of a second each time: it runs under /bin/sh."""
    starts = tmp_path / "bash-starts"
    startup = tmp_path / "startup.sh"
    startup.write_text(f"echo started >> {shlex.quote(str(starts))}\n")
    monkeypatch.setenv("SHELL", shutil.which("bash") or "/bin/bash")
    monkeypatch.setenv("BASH_ENV", str(startup))  # read by every non-interactive bash
    async with connector_for(asyncssh_server) as connector:
        await connector.stat(LOCATION, "/")  # starts the SFTP session and the standby
        pool = connector._pool(LOCATION)
        first = await pool.run(PROBE, what="probe")
    assert first == b"sh\n"  # the standby ran it (a channel of its own: /bin/sh)
    assert not starts.exists()  # and no bash started to run it


async def test_a_dead_standby_is_replaced_by_a_new_channel(
    asyncssh_server: AsyncSSHTestServer,
) -> None:
    """A standby lost with its connection is discarded; the command runs on a new one."""
    async with connector_for(asyncssh_server, max_sessions=3) as connector:
        await connector.stat(LOCATION, "/")
        asyncssh_server.kill_connections()
        await asyncio.sleep(0.1)
        pool = connector._pool(LOCATION)
        async with asyncio.timeout(10):
            for _ in range(4):  # the dead standby's slot was given back: no wait, no leak
                assert await pool.run("echo ok", what="probe") == b"ok\n"


async def test_closing_with_an_idle_standby_leaves_no_channel(
    asyncssh_server: AsyncSSHTestServer,
) -> None:
    """An unused standby is closed with the connector."""
    async with connector_for(asyncssh_server) as connector:
        await connector.stat(LOCATION, "/")
        assert asyncssh_server.open_channels == 2  # SFTP and the standby
    async with asyncio.timeout(5):
        await asyncssh_server.wait_open_channels(0)


async def test_a_command_waiting_while_the_standby_opens_gets_its_slot(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """max_sessions=2: a listing that queues while the standby opens is not left waiting."""
    async with connector_for(asyncssh_server, max_sessions=2) as connector:
        pool = connector._pool(LOCATION)
        stat = asyncio.create_task(connector.stat(LOCATION, "/"))  # cold: SFTP + standby
        async with asyncio.timeout(10):
            # Poll the pool's state: the moment the standby holds the only slot, still opening.
            while not (pool._channels.locked() and pool._standby is None):  # noqa: ASYNC110
                await asyncio.sleep(0)

            async def listing() -> list[str]:
                return [entry.path async for entry in connector.walk(LOCATION, str(tmp_path))]

            walking = asyncio.create_task(listing())
            await stat
            assert await walking == [str(tmp_path)]

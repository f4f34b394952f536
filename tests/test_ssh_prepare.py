"""Where a copy lands on an SSH host: the same answers cold or warm, near or far.

A cold far host (no SFTP session yet, a round trip of 5 ms or more) is asked by a
command while its SFTP session starts; a warm or near one over SFTP. Both against the
in-process asyncssh server (which records its SFTP requests) and a real OpenSSH sshd,
the far one behind :class:`~streamdata.testing.DelayLine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import posixpath
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from far import far_host

from streamdata import ConnectorError, ExecutionLocation, SSHConnector, SSHHost
from streamdata.testing import AsyncSSHTestServer, SSHTestServer

LOCATION = ExecutionLocation("remote", "ssh")
#: One way: a 20 ms round trip, far enough for the command.
DELAY = 0.01
HOSTILE = "a b/$(touch pwned)/'q\"/-x\nline"
#: Byte 0xE9 alone: not UTF-8 (asyncssh's server cannot take it in a command line).
NOT_UTF8 = "caf\udce9"


@contextlib.asynccontextmanager
async def connector_to(
    server: SSHTestServer, directory: Path, *, far: bool, **options: int
) -> AsyncIterator[SSHConnector]:
    """A connector whose location ``remote`` is ``server``, through a delay line if far."""
    async with contextlib.AsyncExitStack() as stack:
        host = server.ssh_host(name="remote")
        if far:
            _, host = await stack.enter_async_context(far_host(server, directory, delay=DELAY))
        yield await stack.enter_async_context(SSHConnector([host], **options))


@pytest.fixture(params=["asyncssh_server", "openssh_server"])
def server(request: pytest.FixtureRequest) -> SSHTestServer:
    """The in-process asyncssh server, then OpenSSH's sshd."""
    chosen: SSHTestServer = request.getfixturevalue(request.param)
    return chosen


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
async def test_cold_and_warm_give_the_same_answers(
    server: SSHTestServer, tmp_path: Path, far: bool
) -> None:
    """Into a directory: inside it; to a new path: its missing parents made (hostile and
    non-UTF-8 names included, nothing run); the same on a cold host and once warm."""
    (tmp_path / "dir").mkdir()
    cases = [
        (str(tmp_path / "dir"), str(tmp_path / "dir" / "base")),
        (str(tmp_path / "new" / "deep" / "file"), str(tmp_path / "new" / "deep" / "file")),
        (str(tmp_path / HOSTILE / "file"), str(tmp_path / HOSTILE / "file")),
    ]
    if not isinstance(server, AsyncSSHTestServer):
        cases.append((str(tmp_path / NOT_UTF8 / "f"), str(tmp_path / NOT_UTF8 / "f")))
    for warm, (dst_path, expected) in itertools.product((False, True), cases):
        async with connector_to(server, tmp_path, far=far) as connector:  # cold each time
            if warm:
                await connector.stat(LOCATION, str(tmp_path))
            final = await connector.prepare_destination(LOCATION, dst_path, "base")
        assert final == expected
        assert Path(posixpath.dirname(final)).is_dir()
    # where an unquoted $(touch pwned) would have run: the shell's working directory
    assert [p for p in (Path.home() / "pwned", Path.cwd() / "pwned") if p.exists()] == []
    assert list(tmp_path.rglob("pwned")) == []


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
async def test_a_file_in_the_way_of_the_parents_fails_cold(
    server: SSHTestServer, tmp_path: Path, far: bool
) -> None:
    """A file where a parent should be: ConnectorError naming the path, nothing made."""
    (tmp_path / "plain").write_text("data")
    dst_path = str(tmp_path / "plain" / "sub" / "file")
    async with connector_to(server, tmp_path, far=far) as connector:
        with pytest.raises(ConnectorError) as caught:
            await connector.prepare_destination(LOCATION, dst_path, "base")
    assert "not a directory" in str(caught.value).lower()
    assert (tmp_path / "plain").read_text() == "data"


async def test_a_cold_far_host_is_asked_by_a_command(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Far and cold: no SFTP stat (the SFTP session starts meanwhile, for what follows),
    and the standby channel is left for the data."""
    asyncssh_server.sftp_requests.clear()
    async with connector_to(asyncssh_server, tmp_path, far=True) as connector:
        asyncssh_server.reset_channel_count()
        final = await connector.prepare_destination(LOCATION, str(tmp_path), "base")
        stats = asyncssh_server.sftp_requests.count("stat")
        channels = asyncssh_server.max_open_channels  # SFTP, the standby, the command
        await connector.stat(LOCATION, str(tmp_path))  # the session is there by now
    assert final == str(tmp_path / "base")
    assert (stats, channels) == (0, 3)


async def test_an_unreachable_host_fails_once(tmp_path: Path) -> None:
    """A host that accepts TCP but never speaks SSH: the cold prepare fails after one
    connect timeout, not two (the warm-up's failure is raised, not tried again)."""
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        host = SSHHost("127.0.0.1", port=silent.getsockname()[1], name="remote")
        async with SSHConnector([host], connect_timeout=1.0, connect_retries=0) as connector:
            started = time.monotonic()
            with pytest.raises(ConnectorError):
                await connector.prepare_destination(LOCATION, str(tmp_path / "x"), "x")
            seconds = time.monotonic() - started
    finally:
        silent.close()
    assert seconds < 1.8, seconds


async def test_a_stale_standby_does_not_block_a_cold_command(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """max_sessions=2 (one channel slot), far: the connection dies with the standby
    parked on it; the next cold prepare takes the standby's slot instead of waiting
    for it forever."""
    async with connector_to(asyncssh_server, tmp_path, far=True, max_sessions=2) as connector:
        await connector.stat(LOCATION, str(tmp_path))  # SFTP and a parked standby
        asyncssh_server.kill_connections()
        pool = connector._pool(LOCATION)
        async with asyncio.timeout(10):
            while pool.sftp_ready:  # noqa: ASYNC110 -- until the client has seen the loss
                await asyncio.sleep(0.005)
            final = await connector.prepare_destination(LOCATION, str(tmp_path), "base")
    assert final == str(tmp_path / "base")


async def test_a_cancelled_sftp_start_gives_its_slot_back(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """A request cancelled while the SFTP session starts: the connection's channel count
    is back to what is open (it kept one channel too many, for ever)."""
    async with connector_to(asyncssh_server, tmp_path, far=True) as connector:
        pool = connector._pool(LOCATION)
        request = asyncio.ensure_future(connector.stat(LOCATION, str(tmp_path)))
        while not pool._connections._open:  # noqa: ASYNC110 -- polls the pool's own state
            await asyncio.sleep(0.005)
        await asyncio.sleep(2 * DELAY)  # the session's channel is opening
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await asyncio.sleep(4 * DELAY)
        loads = [c.load for c in pool._connections._open]
        # what is open: the session, if it started before the cancellation; a standby
        held = [int(pool.sftp_ready) + int(pool._standby is not None)]
    assert loads == held


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
async def test_a_relative_name_without_a_directory(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, far: bool
) -> None:
    """A relative destination with no directory part lands as given, cold or warm (the
    warm path looked for its parent '' for ever)."""
    name = f"streamdata-relative-{uuid.uuid4().hex}"
    async with connector_to(asyncssh_server, tmp_path, far=far) as connector:
        async with asyncio.timeout(10):
            cold = await connector.prepare_destination(LOCATION, name, "base")
            warm = await connector.prepare_destination(LOCATION, name, "base")
    assert (cold, warm) == (name, name)

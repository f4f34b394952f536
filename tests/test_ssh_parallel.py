"""Parallel streams over SSH: far hosts get several channels, near ones keep one.

The far host is a real server behind :class:`~streamdata.testing.DelayLine` (a loopback
proxy adding a delay each way); the channel counts are read on the in-process asyncssh
server, which counts its open channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import far
import pytest

from streamdata import (
    ConnectorError,
    DataManager,
    ExecutionLocation,
    LocalConnector,
    SSHConnector,
    SSHHost,
    TransferError,
)
from streamdata.connectors import Entry, EntryKind
from streamdata.connectors.ssh._parallel import MAX_STREAMS, SERVER_WINDOW, stream_count
from streamdata.connectors.ssh._ranges import READ_WINDOW, WRITE_BLOCK, Ledger
from streamdata.testing import AsyncSSHTestServer, DelayLine, Direction, SSHTestServer, _openssh

LOCAL = ExecutionLocation("localhost", "local", local=True)
REMOTE = ExecutionLocation("remote", "ssh")
MiB = 1 << 20
#: One way: a 50 ms round trip, far enough for two download channels and five uploads.
DELAY = 0.025
#: Channel counts follow a measured round trip, and the delay line's byte counts are
#: asserted: CI runs these alone (see the ``timing`` marker in pyproject.toml).
pytestmark = pytest.mark.timing


def far_host(
    server: SSHTestServer, directory: Path, *, delay: float = DELAY
) -> contextlib.AbstractAsyncContextManager[tuple[DelayLine, SSHHost]]:
    """The server behind a delay line (50 ms by default), and the host that reaches it."""
    return far.far_host(server, directory, delay=delay)


@contextlib.asynccontextmanager
async def manager_for(host: SSHHost) -> AsyncIterator[DataManager]:
    """A manager with a local deployment and the SSH deployment of ``host``."""
    deployments = {"local": LocalConnector(), "ssh": SSHConnector([host])}
    async with DataManager(deployments) as manager:
        yield manager


async def copy(manager: DataManager, source: Path, target: Path, *, up: bool) -> None:
    """Copy ``source`` to ``target``, up (local to SSH) or down."""
    origin, destination = (LOCAL, REMOTE) if up else (REMOTE, LOCAL)
    manager.register_path(origin, str(source))
    await manager.transfer_data(origin, str(source), [destination], str(target), writable=True)


async def read_all(connector: SSHConnector, entry: Entry) -> int:
    """Read the whole stream of ``entry`` on the remote location; return its size."""
    size = 0
    async with connector.read(REMOTE, entry) as chunks:
        async for chunk in chunks:
            size += len(chunk)
    return size


def leftovers(directory: Path) -> list[str]:
    """The temporary files a transfer left in ``directory``."""
    return sorted(name for name in os.listdir(directory) if name.startswith(".streamdata-tmp"))


def test_channels_follow_the_round_trip_time() -> None:
    """One channel on loopback or a LAN, even a busy one (any size), and for a file of one
    block; several at 10 ms and more; at most MAX_STREAMS; one while the round trip is
    unknown."""
    block, big = 4 * MiB, 256 * MiB
    assert stream_count(big, block, SERVER_WINDOW, 0.0003) == 1
    assert stream_count(big, block, SERVER_WINDOW, 0.0049) == 1
    assert stream_count(big, block, SERVER_WINDOW, None) == 1
    assert stream_count(block, block, SERVER_WINDOW, 0.1) == 1
    assert stream_count(2 * block, block, SERVER_WINDOW, 0.1) == 2
    assert stream_count(big, block, SERVER_WINDOW, 0.01) == 3
    assert stream_count(big, block, SERVER_WINDOW, 0.04) == MAX_STREAMS
    assert stream_count(big, 8 * MiB, 16 * MiB, 0.01) == 1
    assert stream_count(big, 8 * MiB, 16 * MiB, 0.05) == 2


def test_the_ledger_knows_the_written_prefix() -> None:
    """Acknowledgements in any order move the high-water mark over the complete prefix."""
    ledger = Ledger()
    for offset in (0, 10, 20, 30):
        ledger.sent(offset, 10)
    ledger.acknowledge(10)
    ledger.acknowledge(30)
    assert ledger.high_water == 0
    ledger.acknowledge(0)
    assert ledger.high_water == 20
    ledger.acknowledge(20)
    assert ledger.high_water == 40


@pytest.mark.parametrize("far", [False, True], ids=["loopback", "50ms"])
async def test_big_files_use_several_channels_only_when_far(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, far: bool
) -> None:
    """A 24 MiB file goes up and comes back down intact: over one data channel on
    loopback, over several (up: four or more, down: two or more) 50 ms away."""
    data = os.urandom(24 * MiB)
    source, back = tmp_path / "source.bin", tmp_path / "back.bin"
    source.write_bytes(data)
    source.chmod(0o640)
    os.utime(source, (1_600_000_000.25, 1_600_000_000.25))
    remote = tmp_path / "remote.bin"
    async with contextlib.AsyncExitStack() as stack:
        host = asyncssh_server.ssh_host(name="remote")
        if far:
            _, host = await stack.enter_async_context(far_host(asyncssh_server, tmp_path))
        manager = await stack.enter_async_context(manager_for(host))
        asyncssh_server.reset_channel_count()
        await copy(manager, source, remote, up=True)
        up = asyncssh_server.max_open_channels
        await asyncssh_server.wait_open_channels(2)
        asyncssh_server.reset_channel_count()
        await copy(manager, remote, back, up=False)
        down = asyncssh_server.max_open_channels
    assert remote.read_bytes() == data
    assert back.read_bytes() == data
    assert (remote.stat().st_mode & 0o777, remote.stat().st_mtime) == (0o640, 1_600_000_000.25)
    if far:
        assert (up >= 1 + 4, down >= 1 + 2) == (True, True)  # the SFTP session, the streams
    else:
        assert (up, down) == (2, 2)
    assert leftovers(tmp_path) == []


async def test_a_big_file_through_openssh_far_away(
    openssh_server: SSHTestServer, tmp_path: Path
) -> None:
    """Split writes and reads work against OpenSSH's sshd (GNU dd on the host)."""
    data = os.urandom(20 * MiB + 12345)
    source, remote, back = tmp_path / "source.bin", tmp_path / "remote.bin", tmp_path / "b.bin"
    source.write_bytes(data)
    async with far_host(openssh_server, tmp_path) as (_, host), manager_for(host) as manager:
        await copy(manager, source, remote, up=True)
        await copy(manager, remote, back, up=False)
    assert remote.read_bytes() == data
    assert back.read_bytes() == data


async def test_extra_channels_the_server_refuses_are_done_without(tmp_path: Path) -> None:
    """An sshd allowing 3 sessions per connection, one connection, a far upload that wants
    more channels: the refused extra channels are given up at once, not retried until
    the transfer's own channels close and free a slot, one by one (measured: 3.0-3.3 s
    that way, 1.2-1.3 s now)."""
    data = os.urandom(24 * MiB)
    source, remote = tmp_path / "source.bin", tmp_path / "remote.bin"
    source.write_bytes(data)
    async with (
        _openssh.openssh_server(max_sessions=3) as server,
        far_host(server, tmp_path) as (_, host),
    ):
        connector = SSHConnector([host], max_connections=1)
        async with DataManager({"local": LocalConnector(), "ssh": connector}) as manager:
            started = time.monotonic()
            await copy(manager, source, remote, up=True)
            seconds = time.monotonic() - started
    assert remote.read_bytes() == data
    assert leftovers(tmp_path) == []
    assert seconds < 2.5, seconds


async def test_a_tree_far_away_is_unpacked_over_several_channels(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """A tree of big files goes to a far host over several ``tar`` at once, exactly."""
    tree = tmp_path / "tree"
    files = {}
    for index in range(24):
        path = tree / f"d{index % 3}" / f"f{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        files[path.relative_to(tree)] = os.urandom(512 * 1024 + index)
        path.write_bytes(files[path.relative_to(tree)])
    (tree / "d0").chmod(0o750)
    async with far_host(asyncssh_server, tmp_path) as (_, host), manager_for(host) as manager:
        asyncssh_server.reset_channel_count()
        await copy(manager, tree, tmp_path / "copy", up=True)
    copied = {
        p.relative_to(tmp_path / "copy"): p.read_bytes() for p in (tmp_path / "copy").rglob("*.bin")
    }
    assert copied == files
    assert (tmp_path / "copy" / "d0").stat().st_mode & 0o777 == 0o750
    assert asyncssh_server.max_open_channels >= 1 + 3


@pytest.mark.parametrize("up", [True, False], ids=["up", "down"])
async def test_a_link_cut_mid_file_is_resumed_within_the_call(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, up: bool
) -> None:
    """The connection cut at 60% of a split transfer: the same call reconnects and
    finishes it, sending again no more than was in flight (counted at the line)."""
    data = os.urandom(48 * MiB)
    source, target = tmp_path / "source.bin", tmp_path / "target.bin"
    source.write_bytes(data)
    direction = Direction.UP if up else Direction.DOWN
    async with far_host(asyncssh_server, tmp_path) as (line, host), manager_for(host) as manager:
        before = line.carried(direction)
        line.cut_after(before + len(data) * 6 // 10, direction)
        await copy(manager, source, target, up=up)
        carried = line.carried(direction) - before
    assert line.cuts == 1
    assert target.read_bytes() == data
    in_flight = MAX_STREAMS * 2 * WRITE_BLOCK if up else MAX_STREAMS * READ_WINDOW
    assert carried <= len(data) + in_flight + MiB  # + SSH's own bytes
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("up", [True, False], ids=["up", "down"])
async def test_a_host_gone_mid_file_fails_the_transfer_and_leaves_nothing(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, up: bool
) -> None:
    """The connection cut halfway, and the host refusing new ones: TransferError caused
    by a ConnectorError and nothing at the target (a local temporary is removed; the
    remote one stays, its host being gone)."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(24 * MiB))
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    async with far_host(asyncssh_server, tmp_path) as (line, host):
        ssh = SSHConnector([host], connect_retries=0)
        deployments = {"local": LocalConnector(), "ssh": ssh}
        async with DataManager(deployments) as manager:
            direction = Direction.UP if up else Direction.DOWN
            line.cut_after(line.carried(direction) + 12 * MiB, direction)
            transfer = asyncio.ensure_future(copy(manager, source, target_dir / "copy.bin", up=up))
            while not line.connections:  # noqa: ASYNC110 -- the line has no event for it
                await asyncio.sleep(0.005)
            line.refusing = True  # the connection made stays, until the cut
            with pytest.raises(TransferError) as caught:
                await transfer
            line.refusing = False  # the engine may remove its temporary now
    assert line.cuts == 1
    (cause,) = caught.value.failures.values()
    assert isinstance(cause, ConnectorError)
    assert not (target_dir / "copy.bin").exists()
    if not up:
        assert os.listdir(target_dir) == []


async def test_a_file_shorter_than_its_entry_fails_a_split_read(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """A split read of a file that no longer holds what its entry says is a
    ConnectorError naming the missing bytes, not a hang or short data."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(20 * MiB))
    entry = Entry(str(source), EntryKind.FILE, 40 * MiB, 0.0, 0o644)
    async with far_host(asyncssh_server, tmp_path) as (_, host), SSHConnector([host]) as ssh:
        await ssh.stat(REMOTE, str(source))  # measures the round trip
        with pytest.raises(ConnectorError, match="ends before byte"):
            await read_all(ssh, entry)


async def test_a_cancelled_split_upload_leaves_nothing(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Cancelling a split upload midway stops every channel and leaves no file."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(32 * MiB))
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    async with far_host(asyncssh_server, tmp_path) as (line, host), manager_for(host) as manager:
        transfer = asyncio.ensure_future(copy(manager, source, target_dir / "c.bin", up=True))
        while line.carried(Direction.UP) < 8 * MiB:
            assert not transfer.done()
            await asyncio.sleep(0.01)
        transfer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await transfer
        await asyncio.sleep(0.5)  # the removal of the temporary is shielded: let it end
        assert os.listdir(target_dir) == []
        await asyncssh_server.wait_open_channels(1)  # only the SFTP session stays

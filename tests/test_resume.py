"""Resuming file copies: a dropped connection costs only what had not arrived.

Within one call (the connection cut at 70% by a :class:`~streamdata.testing.DelayLine`,
which also counts the bytes), and across a crash with a durable catalog (``kill -9`` of
a worker process at 70%, tests/resume_worker.py, then the same transfer run again
adopts the temporary the dead process left). Real servers: the in-process asyncssh
server far away (25 ms each way: split transfers over several channels) and OpenSSH's
``sshd`` on loopback (one channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalog_kinds import DURABLE, Catalogs
from conftest import ConnectorEnv
from far import known_hosts_for

from streamdata import (
    DataManager,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    ReplicaEvent,
    SSHConnector,
    SSHHost,
    TransferEvent,
)
from streamdata._catalog.mapper import RemotePathMapper
from streamdata._catalog.stores import open_store
from streamdata._engine.resume import BLOCK, missing_spans
from streamdata._engine.transfer import Endpoint
from streamdata.connectors import Entry, EntryKind
from streamdata.connectors.ssh._parallel import MAX_STREAMS, SERVER_WINDOW
from streamdata.connectors.ssh._ranges import READ_BLOCK, READ_DEPTH
from streamdata.testing import DelayLine, Direction, SSHTestServer

LOCAL = ExecutionLocation("localhost", "local", local=True)
REMOTE = ExecutionLocation("remote", "ssh")
MiB = 1 << 20
SIZE = 96 * MiB
#: Where the connection is cut, or the process killed.
CUT = 0.7
#: Bytes a line holds per direction: about a TCP window, so that what the line counted
#: is what the far end was sent.
LINE_BUFFER = 4 * MiB
WORKER = str(Path(__file__).with_name("resume_worker.py"))
#: Bytes a split transfer far away has in flight (the line carried them, the far end had
#: not written them yet), lost with the connection or the process: one bandwidth-delay
#: product of its channels. Down, two channels at 50 ms each ask READ_DEPTH blocks ahead;
#: up, each of MAX_STREAMS channels has up to the server's window on its way.
IN_FLIGHT = {"down": 2 * READ_DEPTH * READ_BLOCK, "up": MAX_STREAMS * SERVER_WINDOW}


@dataclass
class Setup:
    """A server, the delay its line adds, and the files of one test."""

    server: SSHTestServer
    delay: float
    root: Path

    @property
    def source(self) -> Path:
        """The file to copy (made by :meth:`make_source`)."""
        return self.root / "source.bin"

    @property
    def target(self) -> Path:
        """Where the copy goes."""
        return self.root / "target" / "copy.bin"

    def make_source(self, size: int = SIZE) -> bytes:
        """Write a random source file (mode 0640, a fractional mtime); return its bytes."""
        data = os.urandom(size)
        self.source.write_bytes(data)
        self.source.chmod(0o640)
        os.utime(self.source, (1_600_000_000.5, 1_600_000_000.5))
        self.target.parent.mkdir()
        return data

    def known_hosts(self, line: DelayLine) -> Path:
        """A known_hosts file naming the server's key at the line's port."""
        return known_hosts_for(self.server, line.port, self.root / f"known_hosts_{line.port}")

    def lost(self, *, up: bool) -> int:
        """What a cut may lose beyond the written data (see :data:`IN_FLIGHT`)."""
        return IN_FLIGHT["up" if up else "down"] if self.delay else 0

    def temporaries(self) -> list[Path]:
        """The temporary files in the target's directory."""
        return sorted(self.target.parent.glob(".streamdata-tmp-*"))

    @contextlib.asynccontextmanager
    async def line(self) -> AsyncIterator[tuple[DelayLine, SSHHost]]:
        """The server behind a delay line, and the host that reaches it through the line."""
        server = self.server
        async with DelayLine(
            server.host, server.port, delay=self.delay, buffer=LINE_BUFFER
        ) as line:
            known = self.known_hosts(line)
            yield line, server.ssh_host(port=line.port, known_hosts=known, name="remote")


@pytest.fixture(params=["asyncssh-far", "openssh"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Setup:
    """The in-process server 50 ms away (split transfers), or OpenSSH on loopback."""
    if request.param == "openssh":
        return Setup(request.getfixturevalue("openssh_server"), 0.0, tmp_path)
    return Setup(request.getfixturevalue("asyncssh_server"), 0.025, tmp_path)


def ends(up: bool) -> tuple[ExecutionLocation, ExecutionLocation, Direction]:
    """Source, destination and the direction the data flows, up (local to SSH) or down."""
    return (LOCAL, REMOTE, Direction.UP) if up else (REMOTE, LOCAL, Direction.DOWN)


async def transfer(host: SSHHost, setup: Setup, *, up: bool, catalog: str | None = None) -> None:
    """Copy the source to the target with a new manager."""
    origin, destination, _ = ends(up)
    deployments = {"local": LocalConnector(), "ssh": SSHConnector([host])}
    async with DataManager(deployments, catalog=catalog) as manager:
        manager.register_path(origin, str(setup.source))
        await manager.transfer_data(
            origin, str(setup.source), [destination], str(setup.target), writable=True
        )


def settled(setup: Setup, data: bytes) -> None:
    """The target holds the data with the source's mode and mtime (whole seconds: SFTP
    reads a remote source's); no temporary is left."""
    assert setup.target.read_bytes() == data
    stat = setup.target.stat()
    assert (stat.st_mode & 0o777, int(stat.st_mtime)) == (0o640, 1_600_000_000)
    assert os.listdir(setup.target.parent) == ["copy.bin"]


@pytest.mark.timing
@pytest.mark.parametrize("up", [True, False], ids=["up", "down"])
async def test_a_connection_dropped_at_70_percent_is_resumed_within_the_call(
    setup: Setup, up: bool
) -> None:
    """The connection cut at 70%: the call succeeds, the copy is exact, and the line
    carried at most 1.15 times the file (and what a split transfer had in flight)."""
    data = setup.make_source()
    direction = ends(up)[2]
    async with setup.line() as (line, host):
        start = line.carried(direction)
        line.cut_after(start + int(CUT * SIZE), direction)
        await transfer(host, setup, up=up)
        carried = line.carried(direction) - start
    assert line.cuts == 1
    settled(setup, data)
    assert carried <= 1.15 * SIZE + setup.lost(up=up), carried / SIZE


async def kill_at(line: DelayLine, direction: Direction, count: int, argv: list[str]) -> None:
    """Run the worker; kill -9 it once the line carried ``count`` bytes that way."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, WORKER, *argv, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(120):
            while line.carried(direction) < count:
                assert worker.returncode is None, "the worker ended before the kill"
                await asyncio.sleep(0.005)
    finally:
        worker.kill()
        await worker.wait()


async def crash_at_70_percent(setup: Setup, catalog: str, *, up: bool) -> None:
    """A worker copies the source through a line of its own; it is killed at 70%."""
    direction = ends(up)[2]
    async with setup.line() as (line, host):
        server = setup.server
        argv = [catalog, "up" if up else "down", str(setup.source), str(setup.target)]
        argv += [server.host, str(line.port), server.username, str(server.client_key)]
        argv.append(str(host.known_hosts))
        await kill_at(line, direction, line.carried(direction) + int(CUT * SIZE), argv)


@pytest.mark.timing
@DURABLE
@pytest.mark.parametrize("up", [True, False], ids=["up", "down"])
async def test_after_kill_9_at_70_percent_the_rerun_sends_at_most_40_percent(
    setup: Setup, catalogs: Catalogs, up: bool
) -> None:
    """kill -9 of the copying process at 70%, then the same transfer again: it adopts
    the temporary left behind and the line carries at most 40% of the file (and what a
    split transfer had in flight)."""
    data = setup.make_source()
    catalog = catalogs.durable()
    await crash_at_70_percent(setup, catalog, up=up)
    direction = ends(up)[2]
    async with setup.line() as (line, host):
        await transfer(host, setup, up=up, catalog=catalog)
        carried = line.carried(direction)
    settled(setup, data)
    assert carried <= 0.4 * SIZE + setup.lost(up=up), carried / SIZE


@pytest.mark.timing
@DURABLE
async def test_a_block_altered_in_the_adopted_temporary_is_sent_again(
    setup: Setup, catalogs: Catalogs
) -> None:
    """The temporary a killed process left is altered before the rerun: the copy is
    exact, and only that block is sent again with what had not arrived."""
    data = setup.make_source()
    catalog = catalogs.durable()
    await crash_at_70_percent(setup, catalog, up=True)
    (temporary,) = setup.temporaries()
    with temporary.open("r+b") as file:
        file.seek(5 * MiB)
        file.write(b"altered")
    async with setup.line() as (line, host):
        await transfer(host, setup, up=True, catalog=catalog)
        carried = line.carried(Direction.UP)
    settled(setup, data)
    assert carried <= 0.4 * SIZE + setup.lost(up=True) + BLOCK


@pytest.mark.parametrize("catalogs", ["sqlite"], indirect=True)
async def test_a_resumed_copy_whose_source_breaks_goes_on_from_another_replica(
    setup: Setup, catalogs: Catalogs
) -> None:
    """kill -9 at 70% of a download; on the rerun, the source's connection is cut while
    the adopted temporary is resumed and its host refuses new ones: the copy is finished
    from the other replica of the data (failover), not failed."""
    data = setup.make_source()
    catalog = catalogs.durable()
    await crash_at_70_percent(setup, catalog, up=False)
    other = setup.root / "other.bin"
    other.write_bytes(data)
    failed: list[ExecutionLocation] = []
    async with setup.line() as (line, host):

        def break_when_resuming(event: TransferEvent | ReplicaEvent) -> None:
            if isinstance(event, TransferEvent) and event.source == REMOTE:
                if event.kind is EventKind.TRANSFER_STARTED:
                    line.refusing = True  # the connection is up: no new one
                    line.cut_after(line.carried(Direction.DOWN) + MiB, Direction.DOWN)
                elif event.kind is EventKind.TRANSFER_FAILED:
                    failed.append(event.source)

        deployments = {"local": LocalConnector(), "ssh": SSHConnector([host])}
        async with DataManager(deployments, catalog=catalog) as manager:
            first = manager.register_path(REMOTE, str(setup.source))
            manager.register_relation(first, manager.register_path(LOCAL, str(other)))
            manager.add_listener(break_when_resuming)
            await manager.transfer_data(
                REMOTE, str(setup.source), [LOCAL], str(setup.target), writable=True
            )
            (copy,) = manager.get_data_locations(str(setup.target), deployment="local")
            assert copy.is_available
    assert failed == [REMOTE]
    assert setup.target.read_bytes() == data
    assert setup.temporaries() == []


async def test_the_blocks_that_differ_and_all_past_the_end_are_sent_again(
    tmp_path: Path,
) -> None:
    """The spans a temporary lacks: each block that differs from the source's (an altered
    byte, a gap of zeros), then all past its end; one that differs everywhere lacks all."""
    data = os.urandom(10 * BLOCK + 123)
    source, temporary = tmp_path / "source", tmp_path / "temporary"
    source.write_bytes(data)
    held = bytearray(data[: 7 * BLOCK + 5])
    held[2 * BLOCK + 7] ^= 0xFF
    held[4 * BLOCK : 5 * BLOCK] = bytes(BLOCK)
    temporary.write_bytes(held)
    local = LocalConnector()
    entry = await local.stat(LOCAL, str(source))
    assert entry is not None
    ends = Endpoint(local, LOCAL, str(source)), Endpoint(local, LOCAL, str(temporary))
    spans = await missing_spans(ends[0], entry, ends[1])
    assert spans == [
        (2 * BLOCK, BLOCK),
        (4 * BLOCK, BLOCK),
        (7 * BLOCK + 5, len(data) - 7 * BLOCK - 5),
    ]
    temporary.write_bytes(os.urandom(len(held)))
    assert await missing_spans(ends[0], entry, ends[1]) == [(0, len(data))]


async def test_block_digests_and_spans_on_every_connector(connector_env: ConnectorEnv) -> None:
    """Every connector hashes a file's blocks where it is (SHA-256, the last one short),
    reads spans of it, and writes spans into a file it then cuts to size and stamps."""
    data = os.urandom(5 * MiB + 7)
    path = connector_env.write_file("file.bin", data)
    connector, location = connector_env.connector, connector_env.location
    digests = await connector.block_digests(location, path, 4 * MiB + 1, 2 * MiB)
    expected = [data[: 2 * MiB], data[2 * MiB : 4 * MiB], data[4 * MiB : 4 * MiB + 1]]
    assert digests == [hashlib.sha256(part).hexdigest() for part in expected]
    assert await connector.block_digests(location, path + ".missing", 10, 4) == []
    spans = [(1, 2 * MiB), (3 * MiB + 5, MiB), (5 * MiB, 7)]
    entry = Entry(path, EntryKind.FILE, len(data), 1_600_000_000.0, 0o640)
    async with connector.read_spans(location, entry, spans) as chunks:
        read = b"".join([chunk async for chunk in chunks])
    assert read == b"".join(data[offset : offset + length] for offset, length in spans)
    copy = connector_env.write_file("copy.bin", bytes(len(data) + MiB))  # zeros, too long
    await connector.write_spans(location, copy, entry, _chunks(read), spans)
    written = Path(copy).read_bytes()
    assert len(written) == len(data)
    assert all(written[o : o + n] == data[o : o + n] for o, n in spans)
    assert (Path(copy).stat().st_mode & 0o777, Path(copy).stat().st_mtime) == (0o640, 1.6e9)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MiB):
        yield data[start : start + MiB]


@DURABLE
def test_a_live_writers_temporary_is_never_offered_for_adoption(catalogs: Catalogs) -> None:
    """A temporary journalled by a live catalog user is nobody's to adopt; once its
    writer is gone, it is offered with the path it was meant for."""
    catalog = catalogs.durable()
    writer_store, reader_store = open_store(catalog), open_store(catalog)
    assert writer_store is not None and reader_store is not None
    writer, reader = RemotePathMapper(writer_store), RemotePathMapper(reader_store)
    writer.claim(REMOTE, "/data/copy.bin", tmp_path="/data/.streamdata-tmp-1", source=None)
    assert reader.stale_temporaries() == []
    writer_store.close()
    stale = (REMOTE, "/data/.streamdata-tmp-1", "/data/copy.bin")
    assert reader.stale_temporaries() == [stale]
    reader_store.close()

"""Failover: a transfer whose source fails goes on from the next replica of the data.

Two replicas of one file, on two real SSH servers (in-process asyncssh, or OpenSSH
logged into as a plain user), are copied to a local destination while the first one's
server is stopped, its file deleted, or its connection cut mid-stream.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_sites import SERVER_KINDS, FaultSite, fault_site, leftovers, same_file, user_directory

from streamdata import (
    ConnectorError,
    DataManager,
    DataNotFoundError,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    ReplicaEvent,
    TransferError,
    TransferEvent,
)

LOCAL = ExecutionLocation("localhost", "local", local=True)
DATA = os.urandom(1 << 20)


@dataclass
class Replicas:
    """Two related replicas of one file, on sites ``a`` and ``b``, and a manager."""

    a: FaultSite
    b: FaultSite
    path_a: str
    path_b: str
    dm: DataManager
    out: Path

    async def copy(self) -> bytes:
        """transfer_data from site a's replica to ``out/data.bin``; the bytes that arrived."""
        await self.dm.transfer_data(self.a.location, self.path_a, [LOCAL], str(self.out))
        return (self.out / "data.bin").read_bytes()


@pytest.fixture(params=SERVER_KINDS)
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Replicas]:
    """Sites a and b, each holding a replica of one file (related), and a manager."""
    with user_directory() as root:
        async with (
            fault_site(request.param, "site-a", tmp_path) as a,
            fault_site(request.param, "site-b", tmp_path) as b,
        ):
            path_a = same_file(root / "a" / "data.bin", DATA)
            path_b = same_file(root / "b" / "data.bin", DATA)
            connectors = {"site-a": a.connector, "site-b": b.connector, "local": LocalConnector()}
            async with DataManager(connectors) as dm:
                first = dm.register_path(a.location, path_a)
                dm.register_relation(first, dm.register_path(b.location, path_b))
                out = tmp_path / "out"
                out.mkdir()
                yield Replicas(a, b, path_a, path_b, dm, out)


async def test_a_stopped_source_host_fails_over_to_the_next_replica(replicas: Replicas) -> None:
    """The first replica's server is stopped: the data comes from the second one."""
    await replicas.a.stop()
    assert await replicas.copy() == DATA
    assert leftovers(replicas.out) == []
    (copy,) = replicas.dm.get_data_locations(str(replicas.out / "data.bin"), deployment="local")
    assert copy.is_available


async def test_a_deleted_source_file_is_invalidated_and_the_next_replica_read(
    replicas: Replicas,
) -> None:
    """The first replica's file is gone: it is invalidated, the second one is read."""
    os.remove(replicas.path_a)
    assert await replicas.copy() == DATA
    assert replicas.dm.get_data_locations(replicas.path_a, deployment="site-a") == []
    assert leftovers(replicas.out) == []


async def test_a_connection_cut_mid_stream_fails_over_without_reading_the_source_again(
    replicas: Replicas,
) -> None:
    """A cut mid-stream: the copy restarts clean from the other replica, not the cut one."""
    events: list[TransferEvent | ReplicaEvent] = []
    replicas.dm.add_listener(events.append)
    replicas.a.cut_after(len(DATA) // 3)
    assert await replicas.copy() == DATA
    assert replicas.a.line.cuts == 1  # the stream from a really broke (the events: once)
    assert leftovers(replicas.out) == []
    ends = [
        (e.kind, e.source.deployment)
        for e in events
        if isinstance(e, TransferEvent) and e.kind is not EventKind.TRANSFER_PROGRESS
    ]
    assert ends == [
        (EventKind.TRANSFER_STARTED, "site-a"),
        (EventKind.TRANSFER_FAILED, "site-a"),
        (EventKind.TRANSFER_STARTED, "site-b"),
        (EventKind.TRANSFER_FINISHED, "site-b"),
    ]


async def test_a_transfer_waiting_for_a_copy_whose_source_broke_gets_the_data_too(
    replicas: Replicas,
) -> None:
    """Two identical transfers, the source cut under the one copying: both succeed."""
    replicas.a.cut_after(len(DATA) // 3)
    assert list(await asyncio.gather(replicas.copy(), replicas.copy())) == [DATA, DATA]
    assert leftovers(replicas.out) == []


async def test_every_source_down_is_a_transfer_error_naming_each(replicas: Replicas) -> None:
    """Both servers stopped: TransferError, its message and cause naming both sources."""
    await replicas.a.stop()
    await replicas.b.stop()
    with pytest.raises(TransferError) as caught:
        await replicas.copy()
    cause = caught.value.failures[LOCAL]
    assert isinstance(cause, ConnectorError) and cause.transient
    for text in (str(caught.value), str(cause)):
        assert "site-a" in text and "site-b" in text
        assert replicas.path_a in text and replicas.path_b in text
    assert isinstance(cause.__cause__, ExceptionGroup)
    assert len(cause.__cause__.exceptions) == 2
    assert list(replicas.out.iterdir()) == []


async def test_data_gone_from_every_source_is_data_not_found_naming_each(
    replicas: Replicas,
) -> None:
    """Both files deleted: DataNotFoundError naming both; both replicas invalidated."""
    os.remove(replicas.path_a)
    os.remove(replicas.path_b)
    with pytest.raises(DataNotFoundError, match=r"site-a.*site-b"):
        await replicas.copy()
    assert replicas.dm.get_data_locations(replicas.path_b) == []

"""The pytest plugin: its fixtures reach a real SSH location; FaultyConnector faults on cue."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from streamdata import (
    ConnectorError,
    DataManager,
    DataType,
    ExecutionLocation,
    LocalConnector,
    TransferError,
)
from streamdata.connectors import EntryKind
from streamdata.testing import (
    LOCAL_LOCATION,
    SSH_DEPLOYMENT,
    FaultyConnector,
    SSHLocation,
)

SRC = ExecutionLocation("src", "src")
DST = ExecutionLocation("dst", "dst")


def _manager(faulty: FaultyConnector) -> DataManager:
    return DataManager({"src": LocalConnector(), "dst": faulty})


def _file(path: Path, size: int) -> str:
    path.write_bytes(os.urandom(size))
    return str(path)


async def test_ssh_location_is_a_real_ssh_directory(ssh_location: SSHLocation) -> None:
    """ssh_location's connector reaches its empty working directory over SSH."""
    entry = await ssh_location.connector.stat(ssh_location.location, str(ssh_location.workdir))
    assert entry is not None and entry.kind is EntryKind.DIRECTORY
    assert ssh_location.deployment == SSH_DEPLOYMENT
    assert ssh_location.host.host == "127.0.0.1"
    assert list(ssh_location.workdir.iterdir()) == []


async def test_data_manager_copies_local_to_ssh(
    data_manager: DataManager, ssh_location: SSHLocation, tmp_path: Path
) -> None:
    """data_manager has the local and the SSH deployment and copies between them."""
    source = _file(tmp_path / "in.bin", 100_000)
    data_manager.register_path(LOCAL_LOCATION, source)
    target = ssh_location.path("in.bin")
    await data_manager.transfer_data(LOCAL_LOCATION, source, [ssh_location.location], target)
    assert Path(target).read_bytes() == Path(source).read_bytes()
    assert len(data_manager.get_data_locations(source, location_type=DataType.PRIMARY)) == 2


async def test_fail_at_nth_call_only(tmp_path: Path) -> None:
    """fail_at('write', 2) fails the second write only, with a ConnectorError as cause."""
    faulty = FaultyConnector(LocalConnector(), own_filesystem=True).fail_at("write", 2)
    source = _file(tmp_path / "f", 10_000)
    async with _manager(faulty) as dm:
        dm.register_path(SRC, source)
        await dm.transfer_data(SRC, source, [DST], str(tmp_path / "one"), writable=True)
        with pytest.raises(TransferError) as failed:
            await dm.transfer_data(SRC, source, [DST], str(tmp_path / "two"), writable=True)
        await dm.transfer_data(SRC, source, [DST], str(tmp_path / "three"), writable=True)
    assert isinstance(failed.value.failures[DST], ConnectorError)
    assert "injected fault: write call 2" in str(failed.value.failures[DST])
    assert faulty.calls["write"] == 3
    assert (tmp_path / "one").exists() and (tmp_path / "three").exists()
    assert not (tmp_path / "two").exists()


async def test_fail_mid_stream_raises_the_given_error(tmp_path: Path) -> None:
    """A fault with after_bytes fires inside the stream, with the exception given."""
    faulty = FaultyConnector(LocalConnector(), own_filesystem=True)
    faulty.fail_at("read", 1, error=ConnectorError("disk on fire"), after_bytes=4096)
    source = _file(tmp_path / "f", 200_000)
    out = tmp_path / "out"
    out.mkdir()
    async with DataManager({"src": faulty, "dst": LocalConnector()}) as dm:
        dm.register_path(SRC, source)
        with pytest.raises(TransferError, match="disk on fire"):
            await dm.transfer_data(SRC, source, [DST], str(out / "f"))
    assert list(out.iterdir()) == []


@pytest.mark.timing  # a wall-clock bound of a few seconds
async def test_hang_is_cut_by_timeout_without_partial_files(
    ssh_location: SSHLocation, tmp_path: Path
) -> None:
    """A write hanging mid-stream over SSH is cancelled by asyncio.timeout; nothing is left."""
    faulty = FaultyConnector(ssh_location.connector).hang_at("write", 1, after_bytes=65536)
    source = _file(tmp_path / "big.bin", 1 << 20)
    target = ssh_location.path("big.bin")
    async with DataManager({"local": LocalConnector(), SSH_DEPLOYMENT: faulty}) as dm:
        dm.register_path(LOCAL_LOCATION, source)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await dm.transfer_data(LOCAL_LOCATION, source, [ssh_location.location], target)
        assert time.monotonic() - started < 5
        assert dm.get_data_locations(target) == []
    assert list(ssh_location.workdir.iterdir()) == []


async def test_bandwidth_limit_slows_a_stream(tmp_path: Path) -> None:
    """A 256 KiB copy through a 1 MiB/s limit takes about 0.25 s; unlimited, much less."""
    source = _file(tmp_path / "f", 256 << 10)

    async def timed(faulty: FaultyConnector, name: str) -> float:
        async with _manager(faulty) as dm:
            dm.register_path(SRC, source)
            started = time.monotonic()
            await dm.transfer_data(SRC, source, [DST], str(tmp_path / name))
            return time.monotonic() - started

    limited = await timed(
        FaultyConnector(LocalConnector(), bandwidth=1 << 20, own_filesystem=True), "a"
    )
    unlimited = await timed(FaultyConnector(LocalConnector(), own_filesystem=True), "b")
    assert limited >= 0.22
    assert unlimited < limited / 2
    assert (tmp_path / "a").read_bytes() == (tmp_path / "f").read_bytes()


def test_bad_fault_plans_are_rejected() -> None:
    """Unknown methods, calls below 1 and after_bytes on metadata methods are ValueErrors."""
    faulty = FaultyConnector(LocalConnector())
    with pytest.raises(ValueError, match="cannot fault"):
        faulty.fail_at("filesystem", 1)
    with pytest.raises(ValueError, match="from 1"):
        faulty.hang_at("stat", 0)
    with pytest.raises(ValueError, match="read and write"):
        faulty.fail_at("stat", 1, after_bytes=10)
    with pytest.raises(TypeError):
        FaultyConnector(object())  # type: ignore[arg-type]

"""Integrity: corrupted copies are caught, named, and never left valid."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Hashable
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
from streamdata.connectors import Entry

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


def _flip_byte(path: str, offset: int = 10) -> None:
    info = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # same size, same mtime


class _RemoteLike(LocalConnector):
    """A local connector that claims its own filesystem, so data streams through us."""

    def filesystem(self, location: ExecutionLocation) -> Hashable:
        return ("elsewhere",)


class _CorruptingCopy(LocalConnector):
    """Flips a byte of every file it copies in the kernel (a faulty disk, say)."""

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        await super().copy(location, src_path, dst_path)
        _flip_byte(dst_path)


class _CorruptingWrite(_RemoteLike):
    """Flips a byte of every streamed file it writes (a faulty network path, say)."""

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        await super().write(location, path, entry, chunks)
        _flip_byte(path)


@pytest.mark.parametrize("broken", [_CorruptingCopy, _CorruptingWrite])
async def test_verified_transfer_rejects_a_corrupted_copy(
    tmp_path: Path, broken: type[LocalConnector]
) -> None:
    """verify=True fails the destination, names the file, leaves nothing valid or partial."""
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(100_000))
    dst = tmp_path / "out" / "data.bin"
    async with DataManager({"site-a": LocalConnector(), "site-b": broken()}, verify=True) as dm:
        dm.register_path(A, str(src))
        with pytest.raises(TransferError) as caught:
            await dm.transfer_data(A, str(src), [B], str(dst))
        cause = caught.value.failures[B]
        assert "integrity check failed" in str(cause)
        assert str(dst) in str(cause)
        assert dm.get_data_locations(str(dst)) == []
    assert not dst.exists()
    assert [p.name for p in dst.parent.iterdir()] == []


async def test_unverified_transfer_is_the_default(tmp_path: Path) -> None:
    """Without verify, the same corruption goes unnoticed by the transfer (it costs a read)."""
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(1000))
    dst = tmp_path / "data.copy"
    async with DataManager({"site-a": LocalConnector(), "site-b": _CorruptingCopy()}) as dm:
        dm.register_path(A, str(src))
        await dm.transfer_data(A, str(src), [B], str(dst))
        assert dst.read_bytes() != src.read_bytes()


async def test_verified_tree_transfer_passes(tmp_path: Path) -> None:
    """An honest streamed tree copy passes verification and is registered PRIMARY."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"x" * 5000)
    (tree / "g").write_text("g")
    async with DataManager({"site-a": LocalConnector(), "site-b": _RemoteLike()}) as dm:
        dm.register_path(A, str(tree))
        await dm.transfer_data(A, str(tree), [B], str(tmp_path / "copy"), verify=True)
        kinds = [r.data_type for r in dm.get_data_locations(str(tmp_path / "copy"))]
    assert kinds == [DataType.PRIMARY, DataType.PRIMARY]
    assert (tmp_path / "copy" / "sub" / "f").read_bytes() == b"x" * 5000


async def test_check_with_content_verification_catches_a_flipped_byte(tmp_path: Path) -> None:
    """A byte flipped after a streamed transfer (same size and mtime) is caught by check."""
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(200_000))
    dst = tmp_path / "site-b" / "data.bin"
    async with DataManager({"site-a": LocalConnector(), "site-b": _RemoteLike()}) as dm:
        dm.register_path(A, str(src))
        await dm.transfer_data(A, str(src), [B], str(dst))
        _flip_byte(str(dst))
        shallow = await dm.check(B, str(dst.parent))
        assert shallow.missing == []
        deep = await dm.check(B, str(dst.parent), verify_content=True, repair=True)
        assert deep.missing == [str(dst)]
        assert deep.repaired == [str(dst)]
    assert dst.read_bytes() == src.read_bytes()


async def test_a_broken_stream_is_retried_once_from_a_clean_state(tmp_path: Path) -> None:
    """A write that dies mid-stream with a ConnectorError is redone; the copy is whole."""
    from streamdata.testing import FaultyConnector

    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(3 << 20))
    dropped = ConnectorError("connection lost", transient=True)
    faulty = FaultyConnector(LocalConnector(), own_filesystem=True).fail_at(
        "write", 1, error=dropped, after_bytes=1 << 20
    )
    async with DataManager({"site-a": LocalConnector(), "site-b": faulty}) as dm:
        dm.register_path(A, str(src))
        await dm.transfer_data(A, str(src), [B], str(tmp_path / "out.bin"), verify=True)
        assert [r.data_type for r in dm.get_data_locations(str(tmp_path / "out.bin"))] == [
            DataType.PRIMARY,
            DataType.PRIMARY,
        ]
    assert faulty.calls["write"] == 2
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "out.bin"]


async def test_a_destination_failing_twice_fails(tmp_path: Path) -> None:
    """The retry happens once: a second ConnectorError fails the destination cleanly."""
    from streamdata.testing import FaultyConnector

    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(1 << 20))
    faulty = FaultyConnector(LocalConnector(), own_filesystem=True)
    for call in (1, 2):
        dropped = ConnectorError("connection lost", transient=True)
        faulty.fail_at("write", call, error=dropped, after_bytes=1000)
    async with DataManager({"site-a": LocalConnector(), "site-b": faulty}) as dm:
        dm.register_path(A, str(src))
        with pytest.raises(TransferError) as caught:
            await dm.transfer_data(A, str(src), [B], str(tmp_path / "out.bin"))
        assert list(caught.value.failures) == [B]
        assert dm.get_data_locations(str(tmp_path / "out.bin")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


async def test_a_permanent_failure_is_not_retried(tmp_path: Path) -> None:
    """A ConnectorError that is not transient (say, a full disk) fails at once, no retry."""
    from streamdata.testing import FaultyConnector

    src = tmp_path / "data.bin"
    src.write_bytes(b"x" * 5000)
    faulty = FaultyConnector(LocalConnector(), own_filesystem=True).fail_at("write", 1)
    async with DataManager({"site-a": LocalConnector(), "site-b": faulty}) as dm:
        dm.register_path(A, str(src))
        with pytest.raises(TransferError):
            await dm.transfer_data(A, str(src), [B], str(tmp_path / "out.bin"))
    assert faulty.calls["write"] == 1

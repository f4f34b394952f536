"""replicate: exact, real copies that never replace an entry they do not own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ConnectorEnv

from streamdata import (
    DataManager,
    DataType,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    TransferError,
    TransferEvent,
)

SRC = ExecutionLocation("a", "site-a")
B = ExecutionLocation("b", "site-b")
OLD = 1_000_000_000.0


def _make(path: Path, kind: str, data: bytes = b"source data") -> Path:
    """A file, or a directory holding a file and a subdirectory with one, at ``path``."""
    if kind == "file":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        (path / "sub").mkdir(parents=True)
        (path / "top.txt").write_bytes(data)
        (path / "sub" / "deep.txt").write_bytes(data * 2)
    return path


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry below ``root``: file contents, None for directories."""
    found: dict[str, bytes | None] = {}
    for folder, directories, files in os.walk(root):
        for name in directories:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            found[os.path.relpath(os.path.join(folder, name), root)] = Path(
                folder, name
            ).read_bytes()
    return found


def _manager(env: ConnectorEnv) -> DataManager:
    return DataManager({"site-a": LocalConnector(), env.location.deployment: env.connector})


@pytest.mark.parametrize("source_kind", ["file", "directory"])
@pytest.mark.parametrize("precious_kind", ["file", "directory"])
async def test_replicate_never_replaces_an_entry_it_does_not_own(
    connector_env: ConnectorEnv, tmp_path: Path, precious_kind: str, source_kind: str
) -> None:
    """An unrelated file or tree at dst_path fails that destination; nothing there changes."""
    src = _make(tmp_path / "src" / "data", source_kind)
    dst = _make(connector_env.root / "precious", precious_kind, b"not yours")
    before = _snapshot(connector_env.root)
    async with _manager(connector_env) as dm:
        dm.register_path(SRC, str(src))
        with pytest.raises(TransferError) as caught:
            await dm.replicate(str(src), [connector_env.location], dst_path=str(dst))
        assert set(caught.value.failures) == {connector_env.location}
        assert [r.location for r in dm.get_data_locations(str(src))] == [SRC]
        assert dm.get_data_locations(str(dst)) == []
    assert _snapshot(connector_env.root) == before


async def test_replicate_keeps_a_replica_of_other_data_at_dst_path(tmp_path: Path) -> None:
    """A valid replica of other data at dst_path stays on disk and valid in the catalog."""
    src = _make(tmp_path / "a" / "data", "file")
    other = _make(tmp_path / "b" / "other", "directory", b"other data")
    before = _snapshot(other)
    async with DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}) as dm:
        dm.register_path(SRC, str(src))
        kept = dm.register_path(B, str(other))
        with pytest.raises(TransferError) as caught:
            await dm.replicate(str(src), [B], str(other))
        assert set(caught.value.failures) == {B}
        assert dm.get_data_locations(str(other)) == [kept]
        assert kept.data_type is DataType.PRIMARY
    assert _snapshot(other) == before


async def test_replicate_copies_again_when_the_replica_at_dst_path_is_gone(
    tmp_path: Path,
) -> None:
    """A replica the catalog holds at dst_path but storage lost is not a reason to skip."""
    src = _make(tmp_path / "a" / "data", "file", b"again")
    dst = tmp_path / "b" / "data"
    async with DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}) as dm:
        dm.register_path(SRC, str(src))
        await dm.transfer_data(SRC, str(src), [B], str(dst))
        dst.unlink()
        (replica,) = await dm.replicate(str(src), [B], str(dst))
        assert (replica.location, replica.path, replica.data_type) == (
            B,
            str(dst),
            DataType.PRIMARY,
        )
        assert replica.is_available
    assert dst.read_bytes() == b"again"
    assert not dst.is_symlink()


async def test_replicate_fails_on_a_changed_replica_and_keeps_it(tmp_path: Path) -> None:
    """A replica at dst_path changed on storage is invalidated, not overwritten: it fails."""
    src = _make(tmp_path / "a" / "data", "file", b"original")
    dst = tmp_path / "b" / "data"
    async with DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}) as dm:
        dm.register_path(SRC, str(src))
        await dm.transfer_data(SRC, str(src), [B], str(dst))
        dst.write_bytes(b"edited by somebody, longer")
        os.utime(dst, (OLD, OLD))
        with pytest.raises(TransferError) as caught:
            await dm.replicate(str(src), [B], str(dst))
        assert set(caught.value.failures) == {B}
        assert dm.get_data_locations(str(dst), deployment="site-b") == []
    assert dst.read_bytes() == b"edited by somebody, longer"


async def test_replicate_reports_its_copy_as_transfer_events(tmp_path: Path) -> None:
    """A replicate copy emits started, monotonic progress and finished, like transfer_data."""
    src = _make(tmp_path / "a" / "data", "file", b"r" * 300_000)
    dst = tmp_path / "b" / "copy"
    seen: list[TransferEvent] = []
    async with DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}) as dm:
        dm.add_listener(lambda e: seen.append(e) if isinstance(e, TransferEvent) else None)
        dm.register_path(SRC, str(src))
        await dm.replicate(str(src), [B], str(dst))
    assert [e.kind for e in seen][:1] == [EventKind.TRANSFER_STARTED]
    assert seen[-1].kind is EventKind.TRANSFER_FINISHED
    assert {(e.source, e.src_path, e.destinations, e.dst_path) for e in seen} == {
        (SRC, str(src), (B,), str(dst))
    }
    assert len({e.transfer_id for e in seen}) == 1
    assert seen[-1].bytes_done == seen[-1].bytes_total == 300_000

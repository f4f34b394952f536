"""The audit ignores what this manager is writing right now."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import ConnectorEnv

from streamdata import DataManager, ExecutionLocation, LocalConnector, TransferError

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


class _GatedCopy(LocalConnector):
    """Starts a copy, then waits for the test to open the gate before finishing."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        await super().copy(location, src_path, dst_path)
        self.started.set()
        await self.gate.wait()


async def test_in_flight_temporary_is_not_an_orphan(tmp_path: Path) -> None:
    """A check during a transfer does not report the transfer's temporary file."""
    src = tmp_path / "src.txt"
    src.write_text("data")
    out = tmp_path / "out"
    out.mkdir()
    gated = _GatedCopy()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        dm.register_path(A, str(src))
        (out / "keep.txt").write_text("k")
        dm.register_path(B, str(out / "keep.txt"))  # out itself is only implied
        transfer = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(out / "f")))
        await asyncio.wait_for(gated.started.wait(), 10)
        assert sum(p.name.startswith(".streamdata-tmp-") for p in out.iterdir()) == 1
        during = await dm.check(B, str(out))
        gated.gate.set()
        await transfer
        after = await dm.check(B, str(out))
    assert during.orphans == []
    assert during.missing == []
    assert after.orphans == []
    assert (out / "f").read_text() == "data"


def _tree(root: Path) -> Path:
    for relpath, data in (("a.txt", b"aaaa"), ("sub/b.txt", b"bbbbbb"), ("sub/c.txt", b"cc")):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    return root


def _contents(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_check_looks_inside_a_copied_tree(connector_env: ConnectorEnv) -> None:
    """A file deleted and another changed inside a copied tree make the tree missing;
    repair restores it from the source."""
    source = _tree(Path(connector_env.path("src")))
    local = ExecutionLocation("localhost", "local", local=True)
    deployments = {"local": LocalConnector(), "dst": connector_env.connector}
    dst = ExecutionLocation(connector_env.location.name, "dst")
    copy = Path(connector_env.path("copy"))
    async with DataManager(deployments, catalog=connector_env.path("catalog.sqlite")) as dm:
        dm.register_path(local, str(source))
        await dm.transfer_data(local, str(source), [dst], str(copy))
        assert (await dm.check(dst, str(copy))).missing == []
        (copy / "sub" / "b.txt").unlink()
        (copy / "a.txt").write_bytes(b"changed!")
        report = await dm.check(dst, str(copy), repair=True)
        assert report.missing == [str(copy)]
        assert report.repaired == [str(copy)]
        assert _contents(copy) == _contents(source)
        assert (await dm.check(dst, str(copy))).missing == []


async def test_verify_content_sees_a_byte_flipped_inside_a_tree(tmp_path: Path) -> None:
    """With verify_content, a file inside a tree changed with the same size and mtime is seen."""
    source = _tree(tmp_path / "src")
    async with DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}) as dm:
        dm.register_path(A, str(source))
        await dm.transfer_data(A, str(source), [B], str(tmp_path / "copy"))
        first = await dm.check(B, str(tmp_path / "copy"), verify_content=True)
        assert first.missing == []
        target = tmp_path / "copy" / "sub" / "b.txt"
        info = target.stat()
        target.write_bytes(b"bbbbbX")
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        assert (await dm.check(B, str(tmp_path / "copy"))).missing == []  # listing alike
        report = await dm.check(B, str(tmp_path / "copy"), verify_content=True)
        assert report.missing == [str(tmp_path / "copy")]


async def test_a_registered_tree_is_printed_at_its_first_check(tmp_path: Path) -> None:
    """A tree registered by hand gets its print at the first check; a later loss is seen."""
    tree = _tree(tmp_path / "tree")
    async with DataManager({"site-a": LocalConnector()}) as dm:
        dm.register_path(A, str(tree))
        assert (await dm.check(A, str(tree))).missing == []
        (tree / "sub" / "c.txt").unlink()
        assert (await dm.check(A, str(tree))).missing == [str(tree)]


async def test_a_local_tree_changed_during_its_copy_is_not_registered(tmp_path: Path) -> None:
    """A local source tree modified while cp runs makes that copy fail: no mixed snapshot
    is registered as the same data, and nothing appears at the destination."""
    source = _tree(tmp_path / "src")
    gated = _GatedCopy()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        dm.register_path(A, str(source))
        transfer = asyncio.create_task(
            dm.transfer_data(A, str(source), [B], str(tmp_path / "copy"))
        )
        await asyncio.wait_for(gated.started.wait(), 10)
        (source / "sub" / "b.txt").write_bytes(b"a newer, longer version")
        gated.gate.set()
        with pytest.raises(TransferError, match="changed while it was copied"):
            await transfer
        assert dm.get_data_locations(str(tmp_path / "copy")) == []
    assert not (tmp_path / "copy").exists()

"""check(repair=True): what it restores, what it never replaces, and what a dry run leaves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streamdata import (
    DataManager,
    DataType,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    TransferEvent,
)

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


def _manager(catalog: Path | None = None) -> DataManager:
    return DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}, catalog=catalog)


async def _copied(
    dm: DataManager, root: Path, data: bytes = b"precious", name: str = "f"
) -> tuple[Path, Path]:
    """A registered file on A (``root/a/name``) and its copy on B (``root/b/name``)."""
    src = root / "a" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    dm.register_path(A, str(src))
    dst = root / "b" / name
    await dm.transfer_data(A, str(src), [B], str(dst))
    return src, dst


async def test_repair_never_replaces_an_entry_of_another_type(tmp_path: Path) -> None:
    """A directory now where a file replica was is reported as an error, and left whole."""
    async with _manager() as dm:
        _, dst = await _copied(dm, tmp_path)
        dst.unlink()
        (dst / "mine").mkdir(parents=True)
        (dst / "mine" / "notes.txt").write_text("not a replica")
        report = await dm.check(B, str(dst.parent), repair=True)
    assert report.missing == [str(dst)]
    assert report.repaired == []
    assert [path for path, _ in report.errors] == [str(dst)]
    assert (dst / "mine" / "notes.txt").read_text() == "not a replica"


async def test_repair_reports_its_copy_as_transfer_events(tmp_path: Path) -> None:
    """The copy made by check(repair=True) emits started and finished TransferEvents."""
    seen: list[TransferEvent] = []
    async with _manager() as dm:
        src, dst = await _copied(dm, tmp_path, b"p" * 200_000)
        dst.unlink()
        dm.add_listener(lambda e: seen.append(e) if isinstance(e, TransferEvent) else None)
        report = await dm.check(B, str(dst.parent), repair=True)
    assert report.repaired == [str(dst)]
    assert [e.kind for e in seen][:1] == [EventKind.TRANSFER_STARTED]
    assert seen[-1].kind is EventKind.TRANSFER_FINISHED
    assert {(e.source, e.src_path, e.destinations, e.dst_path) for e in seen} == {
        (A, str(src), (B,), str(dst))
    }
    assert seen[-1].bytes_done == 200_000


def _state(dm: DataManager, *paths: Path) -> dict[str, set[tuple[str, str, DataType, bool]]]:
    """What the catalog says about ``paths``: every replica's place, type and availability."""
    return {
        str(p): {
            (r.deployment, r.path, r.data_type, r.is_available)
            for r in dm.get_data_locations(str(p))
        }
        for p in paths
    }


async def test_repair_restores_what_an_earlier_check_invalidated(tmp_path: Path) -> None:
    """check invalidates a missing copy; a later check(repair=True) copies it back."""
    async with _manager() as dm:
        src, dst = await _copied(dm, tmp_path)
        dst.unlink()
        first = await dm.check(B, str(dst.parent))
        assert first.missing == [str(dst)]
        assert dm.get_data_locations(str(dst), deployment="site-b") == []
        second = await dm.check(B, str(dst.parent), repair=True)
        assert (second.missing, second.repaired, second.errors) == ([], [str(dst)], [])
        (replica,) = dm.get_data_locations(str(dst), deployment="site-b")
        assert (replica.data_type, replica.is_available) == (DataType.PRIMARY, True)
        assert {r.path for r in dm.get_data_locations(str(src))} == {str(src), str(dst)}
        third = await dm.check(B, str(dst.parent), repair=True)
        assert (third.missing, third.repaired) == ([], [])
    assert dst.read_bytes() == b"precious"


@pytest.mark.parametrize("gone", ["a", "c"])
async def test_repair_after_reopening_and_losing_a_sibling(tmp_path: Path, gone: str) -> None:
    """What a checked-away replica was a copy of survives reopening and its siblings' loss."""
    catalog = tmp_path / "catalog.sqlite"
    deployments = {name: LocalConnector() for name in ("site-a", "site-b", "site-c")}
    c = ExecutionLocation("c", "site-c")
    async with DataManager(deployments, catalog=catalog) as dm:
        src, dst = await _copied(dm, tmp_path)
        await dm.transfer_data(A, str(src), [c], str(tmp_path / "c" / "f"))
        dst.unlink()
        assert (await dm.check(B, str(dst.parent))).missing == [str(dst)]
    deployments = {name: LocalConnector() for name in ("site-a", "site-b", "site-c")}
    async with DataManager(deployments, catalog=catalog) as dm:
        lost = (A, src) if gone == "a" else (c, tmp_path / "c" / "f")
        dm.invalidate_location(lost[0], str(lost[1]))
        lost[1].unlink()
    deployments = {name: LocalConnector() for name in ("site-a", "site-b", "site-c")}
    async with DataManager(deployments, catalog=catalog) as dm:
        report = await dm.check(B, str(dst.parent), repair=True)
        assert report.repaired == [str(dst)]
    assert dst.read_bytes() == b"precious"


async def test_a_failed_repair_is_tried_again_by_the_next_one(tmp_path: Path) -> None:
    """A repair that failed (something in the way) is retried once the way is clear."""
    async with _manager() as dm:
        _, dst = await _copied(dm, tmp_path)
        dst.unlink()
        dst.mkdir()
        failed = await dm.check(B, str(dst.parent), repair=True)
        assert [path for path, _ in failed.errors] == [str(dst)]
        dst.rmdir()
        retried = await dm.check(B, str(dst.parent), repair=True)
        assert (retried.repaired, retried.errors) == ([str(dst)], [])
    assert dst.read_bytes() == b"precious"


async def test_repair_leaves_what_the_user_invalidated(tmp_path: Path) -> None:
    """Replicas invalidated by invalidate_location, before or after a check, stay invalid."""
    async with _manager() as dm:
        _, dst = await _copied(dm, tmp_path)
        _, checked = await _copied(dm, tmp_path, name="g")
        dm.invalidate_location(B, str(dst))
        dst.unlink()
        checked.unlink()
        assert (await dm.check(B, str(checked.parent))).missing == [str(checked)]
        dm.invalidate_location(B, str(checked))
        report = await dm.check(B, str(tmp_path / "b"), repair=True)
        assert report.repaired == []
    assert not dst.exists() and not checked.exists()


async def test_dry_run_changes_neither_catalog_nor_disk(tmp_path: Path) -> None:
    """check(dry_run=True) reports what it would invalidate and repair, and does neither."""
    async with _manager() as dm:
        src, dst = await _copied(dm, tmp_path)
        _, earlier = await _copied(dm, tmp_path, name="earlier")
        earlier.unlink()
        assert (await dm.check(B, str(earlier.parent))).missing == [str(earlier)]
        dst.unlink()
        orphan = dst.parent / "orphan.txt"
        orphan.write_text("unknown")
        before = _state(dm, src, dst, earlier)
        report = await dm.check(B, str(dst.parent), repair=True, dry_run=True)
        assert report.dry_run
        assert report.missing == [str(dst)]
        assert report.orphans == [str(orphan)]
        assert report.repaired == sorted([str(dst), str(earlier)])
        assert _state(dm, src, dst, earlier) == before
        assert not dst.exists() and not earlier.exists()
        plain = await dm.check(B, str(dst.parent), dry_run=True)
        assert (plain.missing, plain.repaired) == ([str(dst)], [])
        assert _state(dm, src, dst, earlier) == before


async def test_repair_restores_a_tree_and_a_replica_inside_it(tmp_path: Path) -> None:
    """A lost tree and a file replica inside it are both restored, the tree first."""
    tree = tmp_path / "a" / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"inside")
    copy = tmp_path / "b" / "tree"
    async with _manager() as dm:
        dm.register_path(A, str(tree))
        dm.register_path(A, str(tree / "sub" / "f"))
        await dm.transfer_data(A, str(tree), [B], str(copy))
        await dm.transfer_data(A, str(tree / "sub" / "f"), [B], str(copy / "sub" / "f"))
        shutil.rmtree(copy)
        report = await dm.check(B, str(copy.parent), repair=True)
        assert report.repaired == [str(copy), str(copy / "sub" / "f")]
        assert report.errors == []
        assert dm.get_data_locations(str(copy / "sub" / "f"), deployment="site-b")
    assert (copy / "sub" / "f").read_bytes() == b"inside"

"""Acceptance tests for the durable catalog, ``check`` and ``replicate`` (CONTRACT.md alone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from catalog_kinds import DURABLE, Catalogs

import streamdata
from streamdata import (
    ConsistencyError,
    DataLocation,
    DataManager,
    DataType,
    ExecutionLocation,
    LocalConnector,
    StreamDataError,
)

A = ExecutionLocation("a", "site-a")
B = ExecutionLocation("b", "site-b")
B2 = ExecutionLocation("b2", "site-b")
C = ExecutionLocation("c", "site-c")
OLD = 1_000_000_000.0
PACKAGE_ROOT = str(Path(streamdata.__file__).resolve().parent.parent)


class RecordingConnector(LocalConnector):
    """A LocalConnector that records the copies made through it."""

    def __init__(self) -> None:
        super().__init__()
        self.copied: list[tuple[str, str]] = []

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        self.copied.append((src_path, dst_path))
        await super().copy(location, src_path, dst_path)


def _deployments() -> dict[str, LocalConnector]:
    return {"site-a": LocalConnector(), "site-b": LocalConnector(), "site-c": LocalConnector()}


@pytest.fixture
def sites(tmp_path: Path) -> dict[str, Path]:
    roots = {name: tmp_path / name for name in ("a", "b", "b2", "c")}
    for root in roots.values():
        root.mkdir()
    return roots


@pytest.fixture
async def dm(catalogs: Catalogs) -> AsyncIterator[DataManager]:
    async with DataManager(_deployments(), catalog=catalogs.new()) as manager:
        yield manager


def _file(path: Path, data: bytes = b"content") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


def _snapshot(dm: DataManager, paths: list[str]) -> dict[str, set[tuple[str, str, str, DataType]]]:
    return {
        p: {(r.deployment, r.name, r.path, r.data_type) for r in dm.get_data_locations(p)}
        for p in paths
    }


# --- durable catalog ----------------------------------------------------------------------


@DURABLE
async def test_reopened_catalog_has_same_replicas(
    catalogs: Catalogs, tmp_path: Path, sites: dict[str, Path]
) -> None:
    """After close, a new manager on the catalog file sees the same replicas, types, relations."""
    catalog = catalogs.durable()
    src = _file(sites["a"] / "data")
    async with DataManager(_deployments(), catalog=catalog) as dm:
        ra = dm.register_path(A, str(src), relpath="rel/data")
        rb = dm.register_path(B, "/vb/x")
        rc = dm.register_path(C, "/vc/x", data_type=DataType.SYMBOLIC_LINK)
        dm.register_relation(ra, rb)
        dm.register_relation(rc, rb)
        dm.register_path(A, "/gone/x")
        dm.invalidate_location(A, "/gone")
        dm.register_path(B, "/alone/y")
        await dm.transfer_data(A, str(src), [B], str(sites["b"] / "copied"))
        await dm.transfer_data(A, str(src), [A], str(sites["a"] / "link"))
        paths = [str(src), "/vb/x", "/vc/x", "/gone/x", "/gone", "/alone/y", "/alone", "/"]
        paths += [str(sites["b"] / "copied"), str(sites["a"] / "link")]
        before = _snapshot(dm, paths)
    async with DataManager(_deployments(), catalog=catalog) as again:
        assert _snapshot(again, paths) == before
        (reopened,) = [r for r in again.get_data_locations(str(src)) if r.path == str(src)]
        assert reopened.relpath == "rel/data"
        assert again.get_data_locations("/gone/x") == []
        await again.transfer_data(A, str(src), [C], str(sites["c"] / "after-reopen"))
        assert (sites["c"] / "after-reopen").read_bytes() == b"content"


@DURABLE
async def test_reopened_catalog_keeps_new_set_after_invalidation(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A replica invalidated and registered again stays out of its old set after reopening."""
    catalog = catalogs.durable()
    async with DataManager(_deployments(), catalog=catalog) as dm:
        ra, rb, rc = (dm.register_path(x, f"/s/{x.name}") for x in (A, B, C))
        dm.register_relation(ra, rb)
        dm.register_relation(rb, rc)
        dm.invalidate_location(B, "/s/b")
        dm.register_path(B, "/s/b")
    async with DataManager(_deployments(), catalog=catalog) as again:
        assert {r.path for r in again.get_data_locations("/s/a")} == {"/s/a", "/s/c"}
        assert {r.path for r in again.get_data_locations("/s/b")} == {"/s/b"}


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from streamdata import DataManager, ExecutionLocation, LocalConnector

    A = ExecutionLocation("a", "site-a")
    B = ExecutionLocation("b", "site-b")

    async def main():
        dm = DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()},
                         catalog=sys.argv[1])
        previous = None
        for i in range(100000):
            replica = dm.register_path(A, f"/k/{i % 50}/{i}")
            print(f"reg {i}", flush=True)
            if previous is not None and i % 3 == 0 and (i - 1) % 7 != 0:
                dm.register_relation(previous, replica)
                print(f"rel {i - 1} {i}", flush=True)
            if i % 7 == 0:
                dm.invalidate_location(A, f"/k/{i % 50}/{i}")
                print(f"inv {i}", flush=True)
            previous = replica
            if i % 10 == 0:
                await asyncio.sleep(0)

    asyncio.run(main())
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PACKAGE_ROOT}


def _run_child_until(script: str, args: list[str], wanted: int) -> list[str]:
    """Run ``script``, SIGKILL it once it printed ``wanted`` lines; return those lines."""
    with subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
    ) as child:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            if not line.endswith("\n"):
                break
            lines.append(line.rstrip("\n"))
            if len(lines) >= wanted:
                break
        os.kill(child.pid, signal.SIGKILL)
        _, errors = child.communicate(timeout=10)
    assert len(lines) >= wanted, errors
    return lines


@DURABLE
async def test_sigkill_loses_no_returned_registration(catalogs: Catalogs, tmp_path: Path) -> None:
    """After SIGKILL, every registration, relation and invalidation that returned is there."""
    catalog = catalogs.durable()
    lines = _run_child_until(_CHILD, [catalog], 400)
    words = [line.split() for line in lines]
    registered = {int(w[1]) for w in words if w[0] == "reg"}
    invalidated = {int(w[1]) for w in words if w[0] == "inv"}
    related = [(int(w[1]), int(w[2])) for w in words if w[0] == "rel"]
    assert len(registered) > 100
    async with DataManager(
        {"site-a": LocalConnector(), "site-b": LocalConnector()}, catalog=catalog
    ) as dm:
        for i in registered:
            found = dm.get_data_locations(f"/k/{i % 50}/{i}")
            if i in invalidated:
                assert found == [], i
            elif i % 7 == 0:
                continue  # killed between the registration and its invalidation
            else:
                assert [r.path for r in found if r.path == f"/k/{i % 50}/{i}"], i
        for first, second in related:
            if first in invalidated or second in invalidated:
                continue
            paths = {r.path for r in dm.get_data_locations(f"/k/{first % 50}/{first}")}
            assert f"/k/{second % 50}/{second}" in paths, (first, second)


_CHILD_INFLIGHT = textwrap.dedent(
    """
    import asyncio, sys
    from streamdata import DataManager, ExecutionLocation, LocalConnector

    A = ExecutionLocation("a", "site-a")
    B = ExecutionLocation("b", "site-b")

    class Stuck(LocalConnector):
        async def copy(self, location, src_path, dst_path):
            print("copying", flush=True)
            await asyncio.Event().wait()

    async def main():
        dm = DataManager({"site-a": LocalConnector(), "site-b": Stuck()}, catalog=sys.argv[1])
        dm.register_path(A, sys.argv[2])
        await dm.transfer_data(A, sys.argv[2], [B], sys.argv[3])

    asyncio.run(main())
    """
)


@DURABLE
async def test_sigkill_mid_transfer_comes_back_invalid(
    catalogs: Catalogs, tmp_path: Path, sites: dict[str, Path]
) -> None:
    """A replica whose transfer had not finished when the process died comes back INVALID."""
    catalog = catalogs.durable()
    src = _file(sites["a"] / "data")
    dst = sites["b"] / "data"
    lines = _run_child_until(_CHILD_INFLIGHT, [catalog, str(src), str(dst)], 1)
    assert lines[0] == "copying"
    async with DataManager(_deployments(), catalog=catalog) as dm:
        found = dm.get_data_locations(str(src))
        assert [r for r in found if r.data_type is DataType.INVALID] == []
        assert [r.path for r in found] == [str(src)]
        assert dm.get_data_locations(str(dst)) == []
        assert dm.get_source_location(str(dst), "site-b") is None


_CHILD_DONE = textwrap.dedent(
    """
    import asyncio, sys
    from streamdata import DataManager, ExecutionLocation, LocalConnector

    A = ExecutionLocation("a", "site-a")
    B = ExecutionLocation("b", "site-b")

    async def main():
        dm = DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()},
                         catalog=sys.argv[1])
        dm.register_path(A, sys.argv[2])
        await dm.transfer_data(A, sys.argv[2], [B], sys.argv[3])
        print("done", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


@DURABLE
async def test_sigkill_after_transfer_keeps_its_outcome(
    catalogs: Catalogs, tmp_path: Path, sites: dict[str, Path]
) -> None:
    """A transfer that returned before SIGKILL is valid and related after reopening."""
    catalog = catalogs.durable()
    src = _file(sites["a"] / "data")
    dst = sites["b"] / "data"
    assert _run_child_until(_CHILD_DONE, [catalog, str(src), str(dst)], 1) == ["done"]
    async with DataManager(_deployments(), catalog=catalog) as dm:
        found = {(r.deployment, r.path, r.data_type) for r in dm.get_data_locations(str(src))}
        assert found == {
            ("site-a", str(src), DataType.PRIMARY),
            ("site-b", str(dst), DataType.PRIMARY),
        }


# --- check --------------------------------------------------------------------------------


async def _copied(dm: DataManager, sites: dict[str, Path], names: list[str]) -> list[Path]:
    """Transfer files from site a to site b; return the copies."""
    out = []
    for name in names:
        src = _file(sites["a"] / "root" / name, name.encode())
        dm.register_path(A, str(src))
        dst = sites["b"] / "root" / name
        await dm.transfer_data(A, str(src), [B], str(dst))
        out.append(dst)
    return out


async def test_check_clean_location_reports_nothing(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A location matching the catalog gives empty lists and changes nothing."""
    await _copied(dm, sites, ["x", "y"])
    report = await dm.check(B, str(sites["b"]))
    assert (report.missing, report.orphans, report.repaired) == ([], [], [])
    assert len(dm.get_data_locations(str(sites["b"] / "root" / "x"), deployment="site-b")) == 1


async def test_check_reports_and_invalidates_missing(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A valid replica absent from storage is listed in missing and invalidated."""
    copies = await _copied(dm, sites, ["m2", "m1", "keep"])
    copies[0].unlink()
    copies[1].unlink()
    report = await dm.check(B, str(sites["b"]))
    assert report.missing == sorted([str(copies[0]), str(copies[1])])
    assert report.orphans == []
    for gone in copies[:2]:
        assert dm.get_data_locations(str(gone), deployment="site-b") == []
    assert dm.get_data_locations(str(copies[2]), deployment="site-b")
    assert dm.get_data_locations(str(sites["a"] / "root" / "m1"), deployment="site-a")


async def test_check_detects_changed_size_and_mtime(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A file whose size or modification time changed is missing, not an orphan."""
    sized, timed, same = await _copied(dm, sites, ["sized", "timed", "same"])
    sized.write_bytes(b"much longer content than before")
    os.utime(sized, (OLD, OLD))
    os.utime(timed, (OLD + 500, OLD + 500))
    report = await dm.check(B, str(sites["b"]))
    assert report.missing == sorted([str(sized), str(timed)])
    assert report.orphans == []
    assert dm.get_data_locations(str(same), deployment="site-b")


async def test_check_detects_change_after_a_clean_check(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """An explicitly registered file changed after a clean check is then missing."""
    data = _file(sites["b"] / "reg" / "f")
    dm.register_path(B, str(data))
    first = await dm.check(B, str(sites["b"] / "reg"))
    assert first.missing == []
    data.write_bytes(b"other size!")
    second = await dm.check(B, str(sites["b"] / "reg"))
    assert second.missing == [str(data)]


async def test_check_type_change_is_missing_not_orphan(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A registered file replaced by a directory is missing and not also an orphan."""
    (copy,) = await _copied(dm, sites, ["was-file"])
    copy.unlink()
    copy.mkdir()
    (copy / "inner").write_bytes(b"x")
    report = await dm.check(B, str(sites["b"]))
    assert report.missing == [str(copy)]
    assert str(copy) not in report.orphans


async def test_check_directory_compared_by_existence_and_type(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A directory replica whose mtime changed is not missing; entries inside it are covered."""
    tree = sites["a"] / "tree"
    _file(tree / "one")
    dm.register_path(A, str(tree))
    dst = sites["b"] / "tree"
    await dm.transfer_data(A, str(tree), [B], str(dst))
    _file(dst / "added-later")
    (dst / "new-dir").mkdir()
    os.utime(dst, (OLD + 99, OLD + 99))
    report = await dm.check(B, str(sites["b"]))
    assert report.missing == []
    assert report.orphans == []


async def test_check_reports_orphans_sorted_and_dirs_once(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """Unregistered entries are orphans, an orphan directory once, the list sorted."""
    await _copied(dm, sites, ["kept"])
    root = sites["b"] / "root"
    _file(root / "zz-orphan")
    _file(root / "aa-orphan")
    _file(root / "odir" / "x")
    _file(root / "odir" / "sub" / "y")
    (root / "empty-orphan").mkdir()
    report = await dm.check(B, str(sites["b"]))
    expected = [str(root / n) for n in ("aa-orphan", "empty-orphan", "odir", "zz-orphan")]
    assert report.orphans == sorted(expected)
    assert report.missing == []
    assert dm.get_data_locations(str(root / "aa-orphan")) == []


async def test_check_deleted_directory_replica_reported_once(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A missing directory replica is one missing entry; its former content is not listed."""
    tree = sites["a"] / "t"
    _file(tree / "one")
    _file(tree / "deep" / "two")
    dm.register_path(A, str(tree))
    dst = sites["b"] / "t"
    await dm.transfer_data(A, str(tree), [B], str(dst))
    for path in sorted(dst.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    dst.rmdir()
    report = await dm.check(B, str(sites["b"]))
    assert report.missing == [str(dst)]
    assert report.orphans == []


async def test_check_only_looks_under_path(dm: DataManager, sites: dict[str, Path]) -> None:
    """Replicas outside the checked path are neither reported nor invalidated."""
    inside, outside = _file(sites["b"] / "in" / "f"), _file(sites["b"] / "out" / "f")
    dm.register_path(B, str(inside))
    dm.register_path(B, str(outside))
    outside.unlink()
    report = await dm.check(B, str(sites["b"] / "in"))
    assert report.missing == []
    assert dm.get_data_locations(str(outside))


async def test_check_repair_from_another_replica(sites: dict[str, Path]) -> None:
    """With repair=True a missing replica is copied back from the source the rules pick."""
    recorder = RecordingConnector()
    deployments = {"site-a": LocalConnector(), "site-b": recorder}
    async with DataManager(deployments) as dm:
        src = _file(sites["a"] / "f", b"precious")
        dm.register_path(A, str(src))
        dst, dst2 = sites["b"] / "f", sites["b2"] / "f"
        await dm.transfer_data(A, str(src), [B], str(dst))
        await dm.transfer_data(A, str(src), [B2], str(dst2))
        lonely = _file(sites["b"] / "lonely")
        dm.register_path(B, str(lonely))
        dst.unlink()
        lonely.unlink()
        recorder.copied.clear()
        report = await dm.check(B, str(sites["b"]), repair=True)
        assert report.missing == sorted([str(dst), str(lonely)])
        assert report.repaired == [str(dst)]
        assert dst.read_bytes() == b"precious"
        assert not dst.is_symlink()
        assert [os.path.realpath(s) for s, _ in recorder.copied] == [str(dst2)]
        (replica,) = dm.get_data_locations(str(dst), deployment="site-b", location="b")
        assert replica.data_type is DataType.PRIMARY
        assert replica.is_available
        assert str(src) in {r.path for r in dm.get_data_locations(str(dst))}
        assert dm.get_data_locations(str(lonely)) == []


async def test_check_max_missing_refuses_and_changes_nothing(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """More missing replicas than max_missing raises ConsistencyError and changes nothing."""
    copies = await _copied(dm, sites, ["p", "q", "r"])
    paths = [str(c) for c in copies]
    before = _snapshot(dm, paths)
    for copy in copies:
        copy.unlink()
    with pytest.raises(ConsistencyError) as caught:
        await dm.check(B, str(sites["b"]), repair=True, max_missing=2)
    assert isinstance(caught.value, StreamDataError)
    assert _snapshot(dm, paths) == before
    assert not any(c.exists() for c in copies)
    report = await dm.check(B, str(sites["b"]), max_missing=3)
    assert report.missing == sorted(paths)


async def test_check_max_missing_zero_protects_against_empty_listing(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A whole subtree vanishing with max_missing=0 leaves the catalog as it was."""
    copies = await _copied(dm, sites, ["u"])
    before = _snapshot(dm, [str(copies[0])])
    copies[0].unlink()
    copies[0].parent.rmdir()
    with pytest.raises(ConsistencyError):
        await dm.check(B, str(sites["b"]), max_missing=0)
    assert _snapshot(dm, [str(copies[0])]) == before


async def test_check_unknown_path_reports_nothing(dm: DataManager, sites: dict[str, Path]) -> None:
    """Checking a path that neither the catalog nor storage knows reports nothing."""
    report = await dm.check(B, str(sites["b"] / "nothing-here"))
    assert (report.missing, report.orphans, report.repaired) == ([], [], [])


async def test_check_symbolic_link_replica(dm: DataManager, sites: dict[str, Path]) -> None:
    """A link replica is checked by existence and type: present is fine, removed is missing."""
    src = _file(sites["a"] / "root" / "data")
    dm.register_path(A, str(src))
    link = sites["a"] / "root" / "alias"
    await dm.transfer_data(A, str(src), [A], str(link))
    assert link.is_symlink()
    report = await dm.check(A, str(sites["a"]))
    assert (report.missing, report.orphans) == ([], [])
    link.unlink()
    report = await dm.check(A, str(sites["a"]))
    assert report.missing == [str(link)]
    assert dm.get_data_locations(str(src), deployment="site-a", location="a")


async def test_check_rejects_relative_path(dm: DataManager) -> None:
    """check with a relative path is a ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 -- the contract names only the type
        await dm.check(B, "relative/path")


# --- replicate ----------------------------------------------------------------------------


async def test_replicate_fills_destinations_with_real_copies(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """replicate copies to the exact dst_path on each destination, registered and related."""
    src = _file(sites["a"] / "data", b"replicate me")
    dm.register_path(A, str(src))
    dst = str(sites["b"] / "deep" / "er" / "copy")
    replicas = await dm.replicate(str(src), [B], dst)
    assert [(r.location, r.path) for r in replicas] == [(B, dst)]
    assert all(isinstance(r, DataLocation) and r.is_available for r in replicas)
    assert Path(dst).read_bytes() == b"replicate me"
    assert not Path(dst).is_symlink()
    related = {(r.deployment, r.path) for r in dm.get_data_locations(str(src))}
    assert ("site-b", dst) in related


async def test_replicate_same_location_real_copy(dm: DataManager, sites: dict[str, Path]) -> None:
    """replicate to another location of the source's deployment makes a real copy, not a link."""
    a2 = ExecutionLocation("a2", "site-a")
    src = _file(sites["a"] / "data", b"y")
    dm.register_path(A, str(src))
    dst = sites["c"] / "on-a2"
    (replica,) = await dm.replicate(str(src), [a2], str(dst))
    assert replica.location == a2
    assert dst.is_file()
    assert not dst.is_symlink()


async def test_replicate_leaves_existing_replicas_alone(sites: dict[str, Path]) -> None:
    """A destination already holding a valid replica at dst_path is not copied again."""
    recorder = RecordingConnector()
    async with DataManager({"site-a": LocalConnector(), "site-b": recorder}) as dm:
        src = _file(sites["a"] / "data", b"z")
        dm.register_path(A, str(src))
        dst = sites["b"] / "data"
        await dm.transfer_data(A, str(src), [B], str(dst))
        inode = dst.stat().st_ino
        recorder.copied.clear()
        (replica,) = await dm.replicate(str(src), [B], str(dst))
        assert (replica.location, replica.path) == (B, str(dst))
        assert dst.stat().st_ino == inode
        assert recorder.copied == []


async def test_replicate_unknown_data_fails(dm: DataManager) -> None:
    """replicate of data with no valid replica raises a StreamDataError."""
    with pytest.raises(StreamDataError):
        await dm.replicate("/no/such/data", [B], "/tmp/never")

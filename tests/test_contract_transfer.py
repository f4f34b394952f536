"""Acceptance tests for ``DataManager.transfer_data``, derived from CONTRACT.md alone.

Every deployment here is a ``LocalConnector`` "site" on one filesystem, under tmp_path;
connector subclasses only observe (count calls, hold a call at a gate) or, where a fault
cannot be caused for real, inject one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import stat
import threading
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import pytest

from streamdata import (
    ConfigurationError,
    ConnectorError,
    DataLocation,
    DataManager,
    DataNotFoundError,
    DataType,
    ExecutionLocation,
    LocalConnector,
    SSHConnector,
    SSHHost,
    StreamDataError,
    TransferError,
)
from streamdata.connectors import Entry

A = ExecutionLocation("a", "site-a")
B = ExecutionLocation("b", "site-b")
C = ExecutionLocation("c", "site-c")
TEMPLATE_MTIME = 1_000_000_000.0


class CountingConnector(LocalConnector):
    """A LocalConnector that counts the data-moving calls made on it."""

    def __init__(self) -> None:
        super().__init__()
        self.copies = 0
        self.writes = 0
        self.closes = 0

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        self.copies += 1
        await super().copy(location, src_path, dst_path)

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        self.writes += 1
        await super().write(location, path, entry, chunks)

    async def close(self) -> None:
        self.closes += 1
        await super().close()

    @property
    def moved(self) -> int:
        return self.copies + self.writes


class GatedConnector(CountingConnector):
    """Holds every copy at a gate (before or after the bytes move) to observe a transfer."""

    def __init__(self, *, after: bool = False) -> None:
        super().__init__()
        self.after = after
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        if not self.after:
            self.entered.set()
            await self.gate.wait()
        await super().copy(location, src_path, dst_path)
        if self.after:
            self.entered.set()
            await self.gate.wait()


class BrokenDiskConnector(LocalConnector):
    """Fault injection: writes half of the data, then fails like a full disk."""

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        Path(dst_path).write_bytes(b"partial")
        raise ConnectorError("no space left on device (injected)", host=location.name)

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        Path(path).write_bytes(b"partial")
        raise ConnectorError("no space left on device (injected)", host=location.name)


@pytest.fixture
def sites(tmp_path: Path) -> dict[str, Path]:
    roots = {name: tmp_path / name for name in ("a", "b", "c")}
    for root in roots.values():
        root.mkdir()
    return roots


@pytest.fixture
async def conns() -> dict[str, CountingConnector]:
    return {
        "site-a": CountingConnector(),
        "site-b": CountingConnector(),
        "site-c": CountingConnector(),
    }


@pytest.fixture
async def dm(conns: dict[str, CountingConnector]) -> AsyncIterator[DataManager]:
    async with DataManager(dict(conns)) as manager:
        yield manager


def _make_file(path: Path, data: bytes = b"hello\n", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (TEMPLATE_MTIME, TEMPLATE_MTIME))
    return path


def _make_tree(root: Path) -> Path:
    """A tree with an executable, an empty dir, a relative link inside and a hard link."""
    _make_file(root / "top.txt", b"top")
    _make_file(root / "bin" / "tool", b"#!/bin/sh\necho hi\n", mode=0o755)
    _make_file(root / "sub" / "deep" / "leaf.dat", b"leaf" * 1000, mode=0o600)
    (root / "empty" / "nested-empty").mkdir(parents=True)
    (root / "link-to-leaf").symlink_to("sub/deep/leaf.dat")
    (root / "sub" / "up-link").symlink_to("../top.txt")
    os.link(root / "top.txt", root / "hard-top.txt")
    return root


def _entries(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _same_tree(src: Path, dst: Path) -> bool:
    if src.is_file():
        return dst.is_file() and dst.read_bytes() == src.read_bytes()
    if _entries(src) != _entries(dst):
        return False
    return all(
        (dst / rel).read_bytes() == (src / rel).read_bytes()
        for rel in _entries(src)
        if (src / rel).is_file() and not (src / rel).is_symlink()
    )


def _leftovers(directory: Path, expected: set[str]) -> set[str]:
    return set(os.listdir(directory)) - expected if directory.exists() else set()


def _closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable() -> SSHConnector:
    host = SSHHost("127.0.0.1", port=_closed_loopback_port(), name="gone", check_host_key=False)
    return SSHConnector([host])


def _valid_on(dm: DataManager, path: str, deployment: str) -> list[DataLocation]:
    return [r for r in dm.get_data_locations(path, deployment=deployment) if r.path == path]


# --- source rules -------------------------------------------------------------------------


async def test_unknown_source_is_data_not_found(dm: DataManager, sites: dict[str, Path]) -> None:
    """A source present on disk but not registered is a DataNotFoundError."""
    src = _make_file(sites["a"] / "unregistered")
    with pytest.raises(DataNotFoundError):
        await dm.transfer_data(A, str(src), [B], str(sites["b"] / "out"))
    assert not (sites["b"] / "out").exists()


async def test_implied_ancestor_is_not_a_source(dm: DataManager, sites: dict[str, Path]) -> None:
    """An implied ancestor directory cannot be the source of a transfer."""
    leaf = _make_file(sites["a"] / "dir" / "leaf")
    _make_file(sites["a"] / "dir" / "unregistered-sibling")
    dm.register_path(A, str(leaf))
    with pytest.raises(DataNotFoundError):
        await dm.transfer_data(A, str(sites["a"] / "dir"), [B], str(sites["b"] / "dir"))
    assert not (sites["b"] / "dir").exists()


async def test_invalidated_source_is_data_not_found(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """An invalidated replica is not a source."""
    src = _make_file(sites["a"] / "inv")
    dm.register_path(A, str(src))
    dm.invalidate_location(A, str(src))
    with pytest.raises(DataNotFoundError):
        await dm.transfer_data(A, str(src), [B], str(sites["b"] / "inv"))


async def test_source_gone_from_disk_is_invalidated(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A registered source gone from disk raises DataNotFoundError saying so; it is invalidated."""
    src = _make_file(sites["a"] / "vanished")
    dm.register_path(A, str(src))
    src.unlink()
    with pytest.raises(DataNotFoundError) as caught:
        await dm.transfer_data(A, str(src), [B], str(sites["b"] / "vanished"))
    assert "invalid" in str(caught.value).lower()
    assert dm.get_data_locations(str(src)) == []
    assert not (sites["b"] / "vanished").exists()


async def test_source_produced_by_transfer_is_usable(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A replica produced by a transfer is a valid source for the next one."""
    src = _make_file(sites["a"] / "chain", b"chained")
    dm.register_path(A, str(src))
    mid = str(sites["b"] / "chain")
    await dm.transfer_data(A, str(src), [B], mid)
    await dm.transfer_data(B, mid, [C], str(sites["c"] / "chain"))
    assert (sites["c"] / "chain").read_bytes() == b"chained"


@pytest.mark.parametrize(("src_rel", "dst_rel"), [(True, False), (False, True)])
async def test_relative_transfer_paths_rejected(
    dm: DataManager, sites: dict[str, Path], src_rel: bool, dst_rel: bool
) -> None:
    """A relative source or destination path is a ValueError."""
    src = _make_file(sites["a"] / "x")
    dm.register_path(A, str(src))
    with pytest.raises(ValueError):  # noqa: PT011 -- the contract names only the type
        await dm.transfer_data(
            A, "a/x" if src_rel else str(src), [B], "b/x" if dst_rel else str(sites["b"] / "x")
        )


async def test_unknown_deployment_is_configuration_error(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A destination on a deployment the manager does not know is a ConfigurationError."""
    src = _make_file(sites["a"] / "x")
    dm.register_path(A, str(src))
    with pytest.raises(ConfigurationError):
        await dm.transfer_data(A, str(src), [ExecutionLocation("z", "nowhere")], "/tmp/x")


async def test_link_replica_is_a_source_of_real_data(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A SYMBOLIC_LINK replica made by a transfer can be a source; the data is copied."""
    src = _make_file(sites["a"] / "orig", b"real bytes")
    dm.register_path(A, str(src))
    alias = str(sites["a"] / "alias")
    await dm.transfer_data(A, str(src), [A], alias)
    await dm.transfer_data(A, alias, [B], str(sites["b"] / "from-alias"))
    assert not (sites["b"] / "from-alias").is_symlink()
    assert (sites["b"] / "from-alias").read_bytes() == b"real bytes"


# --- cp rules and what is copied ----------------------------------------------------------


async def test_existing_directory_receives_basename(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """An existing directory as dst_path receives the data under the source's basename."""
    src = _make_file(sites["a"] / "report.txt", b"r")
    dm.register_path(A, str(src))
    target_dir = sites["b"] / "inbox"
    target_dir.mkdir()
    await dm.transfer_data(A, str(src), [B], str(target_dir))
    assert (target_dir / "report.txt").read_bytes() == b"r"
    assert os.listdir(target_dir) == ["report.txt"]
    assert _valid_on(dm, str(target_dir / "report.txt"), "site-b")


async def test_missing_dst_is_exact_path_with_parents(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A missing dst_path is the exact destination, its parents created."""
    src = _make_file(sites["a"] / "report.txt", b"r")
    dm.register_path(A, str(src))
    dst = sites["b"] / "x" / "y" / "z" / "renamed.bin"
    await dm.transfer_data(A, str(src), [B], str(dst))
    assert dst.read_bytes() == b"r"
    assert os.listdir(dst.parent) == ["renamed.bin"]
    assert _valid_on(dm, str(dst), "site-b")


async def test_directory_into_existing_directory(dm: DataManager, sites: dict[str, Path]) -> None:
    """A directory sent to an existing directory lands inside it under its basename."""
    tree = _make_tree(sites["a"] / "tree")
    dm.register_path(A, str(tree))
    (sites["b"] / "holder").mkdir()
    await dm.transfer_data(A, str(tree), [B], str(sites["b"] / "holder"))
    assert _entries(sites["b"] / "holder" / "tree") == _entries(tree)


async def test_existing_file_at_dst_is_replaced(dm: DataManager, sites: dict[str, Path]) -> None:
    """An existing regular file at dst_path is replaced by the data, like cp."""
    src = _make_file(sites["a"] / "new", b"new content")
    dm.register_path(A, str(src))
    dst = _make_file(sites["b"] / "old", b"old")
    await dm.transfer_data(A, str(src), [B], str(dst))
    assert dst.read_bytes() == b"new content"
    assert os.listdir(sites["b"]) == ["old"]


async def test_empty_file_copied(dm: DataManager, sites: dict[str, Path]) -> None:
    """An empty file is copied and registered."""
    src = _make_file(sites["a"] / "empty", b"")
    dm.register_path(A, str(src))
    await dm.transfer_data(A, str(src), [B], str(sites["b"] / "empty"))
    assert (sites["b"] / "empty").read_bytes() == b""
    assert _valid_on(dm, str(sites["b"] / "empty"), "site-b")


async def test_file_content_mode_and_mtime_kept(dm: DataManager, sites: dict[str, Path]) -> None:
    """A file arrives with its bytes, permission bits (exec bit) and modification time."""
    data = os.urandom(300_000)
    src = _make_file(sites["a"] / "prog", data, mode=0o751)
    dm.register_path(A, str(src))
    dst = sites["b"] / "prog"
    await dm.transfer_data(A, str(src), [B], str(dst))
    assert dst.read_bytes() == data
    assert stat.S_IMODE(dst.stat().st_mode) == 0o751
    assert dst.stat().st_mtime == pytest.approx(TEMPLATE_MTIME, abs=1)
    assert not dst.is_symlink()


async def test_tree_copied_faithfully(dm: DataManager, sites: dict[str, Path]) -> None:
    """A tree keeps contents, modes, mtimes, empty dirs, inner relative links and hard links."""
    tree = _make_tree(sites["a"] / "tree")
    dm.register_path(A, str(tree))
    dst = sites["b"] / "copy"
    await dm.transfer_data(A, str(tree), [B], str(dst))
    assert _entries(dst) == _entries(tree)
    assert (dst / "bin" / "tool").read_bytes() == (tree / "bin" / "tool").read_bytes()
    assert stat.S_IMODE((dst / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((dst / "sub" / "deep" / "leaf.dat").stat().st_mode) == 0o600
    assert (dst / "sub" / "deep" / "leaf.dat").stat().st_mtime == pytest.approx(TEMPLATE_MTIME)
    assert (dst / "empty" / "nested-empty").is_dir()
    assert os.readlink(dst / "link-to-leaf") == "sub/deep/leaf.dat"
    assert os.readlink(dst / "sub" / "up-link") == "../top.txt"
    assert (dst / "link-to-leaf").read_bytes() == b"leaf" * 1000
    assert (dst / "hard-top.txt").read_bytes() == b"top"
    assert not (dst / "hard-top.txt").is_symlink()


async def test_destination_registered_primary_and_related(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """Each destination is registered PRIMARY, available and related to the source."""
    src = _make_file(sites["a"] / "rel")
    dm.register_path(A, str(src))
    dst_b, dst_c = str(sites["b"] / "rel"), str(sites["c"] / "rel")
    await dm.transfer_data(A, str(src), [B], dst_b)
    await dm.transfer_data(A, str(src), [C], dst_c)
    (replica_b,) = _valid_on(dm, dst_b, "site-b")
    assert replica_b.data_type is DataType.PRIMARY
    assert replica_b.is_available
    keys = {(r.deployment, r.path) for r in dm.get_data_locations(str(src))}
    assert {("site-b", dst_b), ("site-c", dst_c)} <= keys
    keys_from_b = {(r.deployment, r.path) for r in dm.get_data_locations(dst_b)}
    assert {("site-a", str(src)), ("site-c", dst_c)} <= keys_from_b


async def test_same_location_makes_symbolic_link(
    dm: DataManager, sites: dict[str, Path], conns: dict[str, CountingConnector]
) -> None:
    """Same location and not writable: a symbolic link registered as SYMBOLIC_LINK."""
    src = _make_file(sites["a"] / "orig", b"o")
    dm.register_path(A, str(src))
    dst = sites["a"] / "elsewhere" / "alias"
    await dm.transfer_data(A, str(src), [A], str(dst))
    assert dst.is_symlink()
    assert os.path.realpath(dst) == os.path.realpath(src)
    assert conns["site-a"].moved == 0
    (link,) = _valid_on(dm, str(dst), "site-a")
    assert link.data_type is DataType.SYMBOLIC_LINK
    assert str(dst) in {r.path for r in dm.get_data_locations(str(src))}


async def test_invalidating_source_invalidates_link(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A link made by a transfer is invalidated with the data it points at."""
    src = _make_file(sites["a"] / "orig")
    dm.register_path(A, str(src))
    dst = str(sites["a"] / "alias")
    await dm.transfer_data(A, str(src), [A], dst)
    dm.invalidate_location(A, str(src))
    assert dm.get_data_locations(dst) == []


async def test_location_holding_a_replica_gets_a_link(
    dm: DataManager, sites: dict[str, Path], conns: dict[str, CountingConnector]
) -> None:
    """A destination location already holding an available PRIMARY replica gets a link."""
    src = _make_file(sites["a"] / "once", b"only once")
    dm.register_path(A, str(src))
    await dm.transfer_data(A, str(src), [B], str(sites["b"] / "first"))
    moved = conns["site-b"].moved
    second = sites["b"] / "again" / "second"
    await dm.transfer_data(A, str(src), [B], str(second))
    assert conns["site-b"].moved == moved
    assert second.is_symlink()
    assert second.read_bytes() == b"only once"
    assert _valid_on(dm, str(second), "site-b")


async def test_writable_same_location_is_independent_copy(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """writable=True on the same location makes a real copy, not related to the source."""
    src = _make_file(sites["a"] / "w", b"original")
    dm.register_path(A, str(src))
    dst = sites["a"] / "w-copy"
    await dm.transfer_data(A, str(src), [A], str(dst), writable=True)
    assert not dst.is_symlink()
    dst.write_bytes(b"changed")
    assert src.read_bytes() == b"original"
    assert {r.path for r in dm.get_data_locations(str(src))} == {str(src)}
    (replica,) = dm.get_data_locations(str(dst))
    assert replica.data_type is DataType.PRIMARY


async def test_writable_copies_even_when_replica_exists(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """writable=True copies although the destination location already holds a replica."""
    src = _make_file(sites["a"] / "w2", b"data")
    dm.register_path(A, str(src))
    await dm.transfer_data(A, str(src), [B], str(sites["b"] / "ro"))
    dst = sites["b"] / "rw"
    await dm.transfer_data(A, str(src), [B], str(dst), writable=True)
    assert not dst.is_symlink()
    assert dst.read_bytes() == b"data"
    assert str(dst) not in {r.path for r in dm.get_data_locations(str(src))}


# --- names are data -----------------------------------------------------------------------

HOSTILE = [
    "with space",
    "quote'single",
    'quote"double',
    "$(touch PWNED)",
    "`touch PWNED`",
    "semi;touch PWNED",
    "pipe|touch PWNED",
    "new\nline",
    "tab\tname",
    "-leading",
    "--rf",
    "ünïcødé ✓ 名前",
    "star*?[x]",
    "back\\slash",
    "a>b<c&d",
]


def _pwned(root: Path) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f == "PWNED"]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_file_names_copied_exactly(
    dm: DataManager,
    sites: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """A hostile file name is copied byte for byte and never run by a shell."""
    monkeypatch.chdir(tmp_path)
    src = _make_file(sites["a"] / name, name.encode())
    dm.register_path(A, str(src))
    inbox = sites["b"] / "inbox"
    inbox.mkdir()
    await dm.transfer_data(A, str(src), [B], str(inbox))
    await dm.transfer_data(A, str(src), [B], str(sites["b"] / ("exact-" + name)))
    await dm.transfer_data(A, str(src), [A], str(sites["a"] / ("link " + name)))
    assert os.listdir(inbox) == [name]
    assert (inbox / name).read_bytes() == name.encode()
    assert (sites["b"] / ("exact-" + name)).read_bytes() == name.encode()
    assert (sites["a"] / ("link " + name)).read_bytes() == name.encode()
    assert _pwned(tmp_path) == []


async def test_hostile_names_in_tree_copied_exactly(
    dm: DataManager, sites: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree named and filled with hostile names is copied exactly, with no command run."""
    monkeypatch.chdir(tmp_path)
    tree = sites["a"] / "-tree $(touch PWNED); x"
    for name in HOSTILE:
        _make_file(tree / name / name, name.encode())
    dm.register_path(A, str(tree))
    await dm.transfer_data(A, str(tree), [B], str(sites["b"]))
    copied = sites["b"] / tree.name
    assert _entries(copied) == _entries(tree)
    for name in HOSTILE:
        assert (copied / name / name).read_bytes() == name.encode()
    await dm.transfer_data(A, str(tree), [B], str(sites["b"] / "--exact"))
    assert _entries(sites["b"] / "--exact") == _entries(tree)
    assert _pwned(tmp_path) == []


# --- concurrency --------------------------------------------------------------------------


async def test_forty_concurrent_transfers(dm: DataManager, sites: dict[str, Path]) -> None:
    """Forty transfers run concurrently all complete and register."""
    sources = [_make_file(sites["a"] / "many" / f"f{i}", f"data {i}".encode()) for i in range(40)]
    for src in sources:
        dm.register_path(A, str(src))
    async with asyncio.timeout(30):
        await asyncio.gather(
            *(
                dm.transfer_data(A, str(src), [B, C], str(sites[x] / "many" / src.name))
                if x == "b"
                else dm.transfer_data(A, str(src), [C], str(sites["c"] / "many" / src.name))
                for src, x in zip(sources, ["b", "c"] * 20, strict=True)
            )
        )
    for i, (src, x) in enumerate(zip(sources, ["b", "c"] * 20, strict=True)):
        dst = sites[x] / "many" / src.name
        assert dst.read_bytes() == f"data {i}".encode()
        assert _valid_on(dm, str(dst), f"site-{x}")
    assert _leftovers(sites["b"] / "many", {f"f{i}" for i in range(0, 40, 2)}) == set()
    assert _leftovers(sites["c"] / "many", {f"f{i}" for i in range(40)}) == set()


async def test_concurrent_identical_transfers_copy_once(sites: dict[str, Path]) -> None:
    """Five concurrent identical transfers copy the data once; the others wait for it."""
    gated = GatedConnector()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        src = _make_file(sites["a"] / "same", b"x" * 100_000)
        dm.register_path(A, str(src))
        dst = str(sites["b"] / "same")
        tasks = [asyncio.create_task(dm.transfer_data(A, str(src), [B], dst)) for _ in range(5)]
        await asyncio.wait_for(gated.entered.wait(), 10)
        await asyncio.sleep(0.2)
        gated.gate.set()
        async with asyncio.timeout(20):
            await asyncio.gather(*tasks)
        assert gated.moved == 1
        assert Path(dst).read_bytes() == b"x" * 100_000
        assert len(_valid_on(dm, dst, "site-b")) == 1
        assert os.listdir(sites["b"]) == ["same"]


async def test_shared_filesystem_same_path_does_not_collide(sites: dict[str, Path]) -> None:
    """Two locations on one filesystem written at one path concurrently do not collide."""
    gate_b, gate_c = GatedConnector(after=True), GatedConnector(after=True)
    async with DataManager({"site-a": LocalConnector(), "site-b": gate_b, "site-c": gate_c}) as dm:
        src = _make_file(sites["a"] / "shared", os.urandom(200_000))
        dm.register_path(A, str(src))
        dst = sites["b"] / "common" / "shared"
        to_b = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        to_c = asyncio.create_task(dm.transfer_data(A, str(src), [C], str(dst)))
        async with asyncio.timeout(10):
            await gate_b.entered.wait()
            await gate_c.entered.wait()
        gate_b.gate.set()
        gate_c.gate.set()
        async with asyncio.timeout(20):
            await asyncio.gather(to_b, to_c)
        assert dst.read_bytes() == src.read_bytes()
        assert os.listdir(dst.parent) == ["shared"]
        assert _valid_on(dm, str(dst), "site-b")
        assert _valid_on(dm, str(dst), "site-c")


async def test_shared_filesystem_one_call_two_locations(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """One transfer to two locations sharing a filesystem at one path succeeds for both."""
    for round_ in range(10):
        src = _make_file(sites["a"] / f"both{round_}", os.urandom(50_000))
        dm.register_path(A, str(src))
        dst = sites["b"] / "both" / src.name
        await dm.transfer_data(A, str(src), [B, C], str(dst))
        assert dst.read_bytes() == src.read_bytes()
        assert _valid_on(dm, str(dst), "site-b")
        assert _valid_on(dm, str(dst), "site-c")
    assert _leftovers(sites["b"] / "both", {f"both{i}" for i in range(10)}) == set()


class GatedBrokenConnector(GatedConnector):
    """Fault injection behind a gate: the copy fails once the gate opens."""

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        self.copies += 1
        self.entered.set()
        await self.gate.wait()
        Path(dst_path).write_bytes(b"partial")
        raise ConnectorError("injected failure", host=location.name)


async def test_waiters_of_a_failed_copy_fail_too(sites: dict[str, Path]) -> None:
    """Concurrent identical transfers whose one copy fails all raise TransferError."""
    gated = GatedBrokenConnector()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        src = _make_file(sites["a"] / "same")
        dm.register_path(A, str(src))
        dst = str(sites["b"] / "same")
        tasks = [asyncio.create_task(dm.transfer_data(A, str(src), [B], dst)) for _ in range(5)]
        await asyncio.wait_for(gated.entered.wait(), 10)
        await asyncio.sleep(0.2)
        gated.gate.set()
        async with asyncio.timeout(20):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, TransferError) for r in results), results
        assert all(set(r.failures) == {B} for r in results if isinstance(r, TransferError))
        assert gated.copies == 1
        assert os.listdir(sites["b"]) == []
        assert dm.get_data_locations(dst) == []


async def test_cancelled_copier_does_not_strand_waiters(sites: dict[str, Path]) -> None:
    """When the call doing the copy is cancelled, an identical concurrent call still ends."""
    gated = GatedConnector()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        src = _make_file(sites["a"] / "same", b"data")
        dm.register_path(A, str(src))
        dst = sites["b"] / "same"
        first = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        await asyncio.wait_for(gated.entered.wait(), 10)
        second = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        await asyncio.sleep(0.1)
        first.cancel()
        gated.gate.set()
        async with asyncio.timeout(20):
            outcome = await asyncio.gather(second, return_exceptions=True)
        assert outcome[0] is None or isinstance(outcome[0], TransferError), outcome
        if outcome[0] is None:
            assert dst.read_bytes() == b"data"
            assert _valid_on(dm, str(dst), "site-b")
        else:
            assert not dst.exists()
            assert dm.get_data_locations(str(dst)) == []


# --- failures -----------------------------------------------------------------------------


async def test_parent_is_a_file_fails_that_destination(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """A destination whose parent is a regular file fails with TransferError keyed by it."""
    src = _make_file(sites["a"] / "data")
    dm.register_path(A, str(src))
    blocker = _make_file(sites["b"] / "blocker", b"i am a file")
    dst = blocker / "sub" / "data"
    with pytest.raises(TransferError) as caught:
        await dm.transfer_data(A, str(src), [B], str(dst))
    assert isinstance(caught.value, StreamDataError)
    assert set(caught.value.failures) == {B}
    assert isinstance(caught.value.failures[B], StreamDataError)  # OSError is never leaked raw
    assert blocker.read_bytes() == b"i am a file"
    assert os.listdir(sites["b"]) == ["blocker"]
    assert _valid_on(dm, str(dst), "site-b") == []


async def test_failing_destination_does_not_affect_good_one(sites: dict[str, Path]) -> None:
    """A failing destination is reported alone; the good one stays registered and valid."""
    deployments = {"site-a": LocalConnector(), "site-b": LocalConnector()}
    async with DataManager({**deployments, "site-c": BrokenDiskConnector()}) as dm:
        src = _make_file(sites["a"] / "data", os.urandom(100_000))
        dm.register_path(A, str(src))
        dst = sites["c"] / "out" / "data"
        with pytest.raises(TransferError) as caught:
            await dm.transfer_data(A, str(src), [B, C], str(dst))
        assert set(caught.value.failures) == {C}
        assert isinstance(caught.value.failures[C], ConnectorError)
        assert dst.read_bytes() == src.read_bytes()
        assert os.listdir(dst.parent) == ["data"]
        assert _valid_on(dm, str(dst), "site-b")
        assert _valid_on(dm, str(dst), "site-c") == []


async def test_failing_only_destination_leaves_nothing(sites: dict[str, Path]) -> None:
    """A destination failing mid-write leaves no file at the final path and no temp file."""
    async with DataManager({"site-a": LocalConnector(), "site-c": BrokenDiskConnector()}) as dm:
        src = _make_file(sites["a"] / "data")
        dm.register_path(A, str(src))
        dst = sites["c"] / "out" / "data"
        with pytest.raises(TransferError) as caught:
            await dm.transfer_data(A, str(src), [C], str(dst))
        assert set(caught.value.failures) == {C}
        assert not dst.exists()
        assert _leftovers(dst.parent, set()) == set()
        assert dm.get_data_locations(str(dst)) == []


async def test_unreachable_location_fails_alone(sites: dict[str, Path]) -> None:
    """An unreachable location fails with a ConnectorError cause; the others succeed."""
    unreachable = ExecutionLocation("gone", "remote")
    deployments = {"site-a": LocalConnector(), "site-b": LocalConnector()}
    async with DataManager({**deployments, "remote": _unreachable()}) as dm:
        src = _make_file(sites["a"] / "data")
        dm.register_path(A, str(src))
        dst = sites["b"] / "data"
        async with asyncio.timeout(30):
            with pytest.raises(TransferError) as caught:
                await dm.transfer_data(A, str(src), [B, unreachable], str(dst))
        assert set(caught.value.failures) == {unreachable}
        assert isinstance(caught.value.failures[unreachable], ConnectorError)
        assert dst.read_bytes() == src.read_bytes()
        assert _valid_on(dm, str(dst), "site-b")
        assert _valid_on(dm, str(dst), "remote") == []


async def test_connections_are_lazy(sites: dict[str, Path]) -> None:
    """Creating and entering a manager with an unreachable location contacts nothing."""
    unreachable = ExecutionLocation("gone", "remote")
    async with DataManager({"remote": _unreachable(), "site-a": LocalConnector()}) as dm:
        replica = dm.register_path(unreachable, "/remote/data")
        assert dm.get_data_locations("/remote/data") == [replica]
        assert dm.get_source_location("/remote/data", "site-a") is not None
        src = _make_file(sites["a"] / "local")
        dm.register_path(A, str(src))
        await dm.transfer_data(A, str(src), [A], str(sites["a"] / "alias"))


# --- cancellation -------------------------------------------------------------------------


def _check_outcome(
    dm: DataManager, task: asyncio.Task[None], src: Path, dst: Path, steps: int
) -> None:
    if task.cancelled():
        if dst.exists():  # cancelled after the rename: complete data, but not a replica
            assert _same_tree(src, dst), f"partial data at the final path after {steps} steps"
        assert _leftovers(dst.parent, {dst.name}) == set(), f"temp files left after {steps} steps"
        assert _valid_on(dm, str(dst), "site-b") == [], f"valid replica after {steps} steps"
    else:
        assert task.exception() is None
        assert _valid_on(dm, str(dst), "site-b")


@pytest.mark.parametrize("kind", ["file", "tree"])
async def test_cancel_at_every_step(dm: DataManager, sites: dict[str, Path], kind: str) -> None:
    """Cancelled after 0..N loop iterations, a transfer leaves nothing or the whole thing."""
    data = os.urandom(2_000_000)
    if kind == "file":
        src = _make_file(sites["a"] / "src", data)
    else:
        src = _make_tree(sites["a"] / "src")
        _make_file(src / "payload", data)
    dm.register_path(A, str(src))
    cancelled = 0
    for steps in range(40):
        dst = sites["b"] / f"run{steps}" / "out"
        task = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        cancelled += task.cancelled()
        _check_outcome(dm, task, src, dst, steps)
        if not task.cancelled():
            assert (dst if kind == "file" else dst / "payload").read_bytes() == data
    await asyncio.sleep(0.3)  # a copy still running in a thread would show up now
    for steps in range(40):
        dst = sites["b"] / f"run{steps}" / "out"
        assert _leftovers(dst.parent, {"out"}) == set(), steps
        assert not dst.exists() or _same_tree(src, dst), steps
    assert cancelled > 0


async def test_cancel_mid_copy_of_large_file(dm: DataManager, sites: dict[str, Path]) -> None:
    """Cancelled in the middle of copying a large file, a transfer leaves nothing behind."""
    block = os.urandom(1 << 20)
    src = sites["a"] / "big"
    with src.open("wb") as handle:
        for _ in range(192):
            handle.write(block)
    dm.register_path(A, str(src))
    for index, delay in enumerate((0.001, 0.005, 0.01, 0.02, 0.04)):
        dst = sites["b"] / f"big{index}" / "big"
        task = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if task.cancelled():
            assert not dst.exists()
            assert _leftovers(dst.parent, set()) == set()
            assert _valid_on(dm, str(dst), "site-b") == []
        else:
            assert dst.stat().st_size == src.stat().st_size
    await asyncio.sleep(0.3)
    for index in range(5):
        dst = sites["b"] / f"big{index}" / "big"
        expected = {"big"} if _valid_on(dm, str(dst), "site-b") else set()
        assert _leftovers(dst.parent, expected) == set()


async def test_cancel_once_destination_shows_available(
    dm: DataManager, sites: dict[str, Path]
) -> None:
    """Cancelled after the destination looks complete but before the call returns: no replica."""
    src = _make_file(sites["a"] / "src", os.urandom(100_000))
    dm.register_path(A, str(src))
    for attempt in range(20):
        dst = sites["b"] / f"late{attempt}" / "out"
        task = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        while not task.done():
            if any(r.is_available for r in _valid_on(dm, str(dst), "site-b")):
                task.cancel()
                break
            await asyncio.sleep(0)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _check_outcome(dm, task, src, dst, attempt)


@pytest.mark.parametrize("after", [False, True])
async def test_cancel_while_copy_in_flight(sites: dict[str, Path], after: bool) -> None:
    """Cancelled before or after the bytes moved but before completion, nothing is left."""
    gated = GatedConnector(after=after)
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        src = _make_file(sites["a"] / "data", os.urandom(100_000))
        dm.register_path(A, str(src))
        dst = sites["b"] / "out" / "data"
        task = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        await asyncio.wait_for(gated.entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not dst.exists()
        assert _leftovers(dst.parent, set()) == set()
        assert dm.get_data_locations(str(dst)) == []
        assert {r.path for r in dm.get_data_locations(str(src))} == {str(src)}


# --- DataLocation across loops and threads ------------------------------------------------


async def test_data_location_pickles(dm: DataManager, sites: dict[str, Path]) -> None:
    """A DataLocation survives pickling, and an available one can be awaited in another loop."""
    src = _make_file(sites["a"] / "p")
    replica = dm.register_path(A, str(src))
    copy = pickle.loads(pickle.dumps(replica))
    assert (copy.path, copy.relpath, copy.location, copy.data_type) == (
        replica.path,
        replica.relpath,
        replica.location,
        replica.data_type,
    )
    assert copy.deployment == "site-a"
    assert copy.name == "a"
    assert copy.is_available
    await asyncio.to_thread(asyncio.run, asyncio.wait_for(copy.wait_available(), 5))


def _wait_in_thread(replica: DataLocation) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(replica.wait_available(), 20))
            outcome.append(None)
        except BaseException as exc:  # reported to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


async def test_wait_available_from_another_thread(sites: dict[str, Path]) -> None:
    """wait_available() on a replica being written returns, in another thread's loop, once done."""
    gated = GatedConnector()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        src = _make_file(sites["a"] / "data")
        dm.register_path(A, str(src))
        dst = str(sites["b"] / "data")
        task = asyncio.create_task(dm.transfer_data(A, str(src), [B], dst))
        await asyncio.wait_for(gated.entered.wait(), 10)
        (pending,) = _valid_on(dm, dst, "site-b")
        assert not pending.is_available
        pickle.loads(pickle.dumps(pending))
        thread, outcome = _wait_in_thread(pending)
        await asyncio.sleep(0.1)
        assert outcome == []
        gated.gate.set()
        await task
        await asyncio.to_thread(thread.join, 20)
        assert outcome == [None]
        assert pending.is_available


async def test_wait_available_raises_when_transfer_fails(sites: dict[str, Path]) -> None:
    """wait_available() raises TransferError when the transfer producing the data fails."""
    gated = GatedConnector()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        src = _make_file(sites["a"] / "data")
        dm.register_path(A, str(src))
        dst = sites["b"] / "dir" / "data"
        task = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(dst)))
        await asyncio.wait_for(gated.entered.wait(), 10)
        (pending,) = _valid_on(dm, str(dst), "site-b")
        thread, outcome = _wait_in_thread(pending)
        # Break the destination for real: its directory becomes a regular file.
        for leftover in (sites["b"] / "dir").iterdir():
            leftover.unlink()
        (sites["b"] / "dir").rmdir()
        (sites["b"] / "dir").write_bytes(b"not a directory")
        gated.gate.set()
        with pytest.raises(TransferError) as caught:
            await task
        assert set(caught.value.failures) == {B}
        await asyncio.to_thread(thread.join, 20)
        assert len(outcome) == 1
        assert isinstance(outcome[0], TransferError)
        assert dm.get_data_locations(str(dst)) == []


# --- lifecycle ----------------------------------------------------------------------------


async def test_async_with_and_idempotent_close(sites: dict[str, Path]) -> None:
    """`async with` yields the manager and closes connectors; close() again is harmless."""
    connector = CountingConnector()
    async with DataManager({"site-a": connector}) as dm:
        assert isinstance(dm, DataManager)
        src = _make_file(sites["a"] / "x")
        dm.register_path(A, str(src))
    assert connector.closes >= 1
    await dm.close()
    await dm.close()


async def test_close_twice_without_context(sites: dict[str, Path]) -> None:
    """close() can be called twice on a manager that was never entered."""
    dm = DataManager()
    dm.add_deployment("site-a", LocalConnector())
    await dm.close()
    await dm.close()

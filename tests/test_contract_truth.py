"""The contract's "catalog tells the truth" rules for transfers, on every connector.

Each test runs against the local connector, the in-process asyncssh server and OpenSSH
(``connector_env``): ``L`` is that connector's location. Where a second location is
needed, ``ELSEWHERE`` is a local deployment on this host. Every server runs on this
machine, so the tests look at (and change, behind the catalog's back) the files directly.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import ConnectorEnv

from streamdata import (
    DataManager,
    DataType,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    ReplicaEvent,
    TransferError,
)
from streamdata.connectors import Connector, Entry

ELSEWHERE = ExecutionLocation("elsewhere", "elsewhere", local=True)


@pytest.fixture
async def dm(connector_env: ConnectorEnv) -> AsyncIterator[DataManager]:
    """A manager with the connector under test and a local deployment ``elsewhere``."""
    deployments = {
        connector_env.location.deployment: connector_env.connector,
        ELSEWHERE.deployment: LocalConnector(),
    }
    async with DataManager(deployments) as manager:
        yield manager


def _tree(env: ConnectorEnv, relpath: str) -> str:
    """A directory holding one file, ``f``; returns its path."""
    env.write_file(f"{relpath}/f", b"inside")
    return env.path(relpath)


def _valid(dm: DataManager, location: ExecutionLocation, path: str) -> list[DataType]:
    """The types of the valid replicas registered exactly at ``path`` on ``location``."""
    return [
        r.data_type
        for r in dm.get_data_locations(path, location.deployment, location.name)
        if r.path == path and r.location == location
    ]


# --- loops --------------------------------------------------------------------------------


async def test_same_link_transfer_twice_leaves_one_link(
    dm: DataManager, connector_env: ConnectorEnv
) -> None:
    """A same-location transfer run twice leaves the one link; nothing is linked inside it."""
    env, here = connector_env, connector_env.location
    src, run = _tree(env, "src"), env.path("run1")
    dm.register_path(here, src)
    await dm.transfer_data(here, src, [here], run)
    await dm.transfer_data(here, src, [here], run)
    assert os.readlink(run) == src
    assert os.listdir(src) == ["f"]
    assert _valid(dm, here, run) == [DataType.SYMBOLIC_LINK]
    assert dm.get_data_locations(f"{run}/src") == []


async def test_same_copy_transfer_twice_leaves_one_copy(
    dm: DataManager, connector_env: ConnectorEnv
) -> None:
    """A tree copied twice to the same dst_path is there once; no link is made inside it."""
    env, here = connector_env, connector_env.location
    src = _tree(env, "a/src")
    out = env.path("out")
    dm.register_path(ELSEWHERE, src)
    await dm.transfer_data(ELSEWHERE, src, [here], out)
    await dm.transfer_data(ELSEWHERE, src, [here], out)
    assert not os.path.islink(out)
    assert os.listdir(out) == ["f"]
    assert _valid(dm, here, out) == [DataType.PRIMARY]


@pytest.mark.parametrize("writable", [False, True], ids=["link", "copy"])
async def test_directory_is_never_linked_or_copied_into_itself(
    dm: DataManager, connector_env: ConnectorEnv, writable: bool
) -> None:
    """A link (or a writable copy) of a directory to a path inside itself fails that
    destination, as cp refuses; nothing is made."""
    env, here = connector_env, connector_env.location
    src = _tree(env, "dir")
    dm.register_path(here, src)
    with pytest.raises(TransferError) as caught:
        await dm.transfer_data(here, src, [here], f"{src}/sub", writable=writable)
    assert set(caught.value.failures) == {here}
    assert os.listdir(src) == ["f"]
    assert dm.get_data_locations(f"{src}/sub") == []


async def test_link_into_its_target_through_a_link_is_refused(
    dm: DataManager, connector_env: ConnectorEnv
) -> None:
    """A destination below a link the manager made to the source is inside the source."""
    env, here = connector_env, connector_env.location
    src, run = _tree(env, "src"), env.path("run1")
    dm.register_path(here, src)
    await dm.transfer_data(here, src, [here], run)
    with pytest.raises(TransferError) as caught:
        await dm.transfer_data(here, src, [here], f"{run}/again")
    assert set(caught.value.failures) == {here}
    assert os.listdir(src) == ["f"]
    assert _valid(dm, here, run) == [DataType.SYMBOLIC_LINK]


# --- a directory never replaces a file, nor a file a directory ------------------------------


@pytest.mark.parametrize("into_directory", [False, True])
async def test_directory_never_replaces_a_file(
    dm: DataManager, connector_env: ConnectorEnv, into_directory: bool
) -> None:
    """A tree whose destination is an existing file fails there; the file is untouched."""
    env, here = connector_env, connector_env.location
    src = _tree(env, "a/data")
    dm.register_path(ELSEWHERE, src)
    blocker = env.write_file("b/out/data" if into_directory else "b/out", b"a file")
    dst_path = env.path("b/out")
    with pytest.raises(TransferError) as caught:
        await dm.transfer_data(ELSEWHERE, src, [here], dst_path)
    assert set(caught.value.failures) == {here}
    assert Path(blocker).read_bytes() == b"a file"
    assert os.listdir(os.path.dirname(blocker)) == [os.path.basename(blocker)]
    assert _valid(dm, here, blocker) == []


@pytest.mark.parametrize("writable", [False, True])
async def test_file_never_replaces_a_directory(
    dm: DataManager, connector_env: ConnectorEnv, writable: bool
) -> None:
    """A file whose destination (dst_path/basename) is a directory fails; it is untouched."""
    env, here = connector_env, connector_env.location
    src = env.write_file("a/data", b"a file")
    dm.register_path(ELSEWHERE, src)
    blocker = _tree(env, "out/data")
    with pytest.raises(TransferError) as caught:
        await dm.transfer_data(ELSEWHERE, src, [here], env.path("out"), writable=writable)
    assert set(caught.value.failures) == {here}
    assert os.listdir(blocker) == ["f"]
    assert os.listdir(env.path("out")) == ["data"]
    assert _valid(dm, here, blocker) == []


async def test_file_over_a_file_is_replaced_atomically(
    dm: DataManager, connector_env: ConnectorEnv
) -> None:
    """A file over a file is renamed into place: the old file is never rewritten in place."""
    env, here = connector_env, connector_env.location
    src = env.write_file("a/data", b"new content")
    dm.register_path(ELSEWHERE, src)
    old = env.write_file("out/data", b"old")
    before = os.stat(old).st_ino
    with open(old, "rb") as reader:
        await dm.transfer_data(ELSEWHERE, src, [here], old)
        assert reader.read() == b"old"
    assert Path(old).read_bytes() == b"new content"
    assert os.stat(old).st_ino != before
    assert os.listdir(env.path("out")) == ["data"]
    assert _valid(dm, here, old) == [DataType.PRIMARY]


# --- the catalog is confirmed before it is relied on ----------------------------------------


def _invalidated(dm: DataManager) -> list[str]:
    """Collects the paths of the replicas the manager invalidates from now on."""
    paths: list[str] = []

    def note(event: object) -> None:
        if isinstance(event, ReplicaEvent) and event.kind is EventKind.REPLICA_INVALIDATED:
            paths.append(event.replica.path)

    dm.add_listener(note)
    return paths


@pytest.mark.parametrize("same_location", [False, True])
async def test_destination_deleted_behind_the_catalogs_back_is_made_again(
    dm: DataManager, connector_env: ConnectorEnv, same_location: bool
) -> None:
    """The same transfer after its result was deleted makes it again, not a false success."""
    env, here = connector_env, connector_env.location
    origin = here if same_location else ELSEWHERE
    src = env.write_file("a/data", b"payload")
    dm.register_path(origin, src)
    out = env.path("out/data")
    await dm.transfer_data(origin, src, [here], out)
    os.unlink(out)
    invalidated = _invalidated(dm)
    await dm.transfer_data(origin, src, [here], out)
    assert Path(out).read_bytes() == b"payload"
    assert os.path.islink(out) == same_location
    assert invalidated == [out]
    assert len(_valid(dm, here, out)) == 1


@pytest.mark.parametrize("change", ["delete", "grow"])
async def test_replica_gone_or_changed_is_not_linked_to(
    dm: DataManager, connector_env: ConnectorEnv, change: str
) -> None:
    """A replica deleted or changed behind the catalog's back is no link target: a copy."""
    env, here = connector_env, connector_env.location
    src = env.write_file("a/data", b"payload")
    dm.register_path(ELSEWHERE, src)
    first, second = env.path("first"), env.path("second")
    await dm.transfer_data(ELSEWHERE, src, [here], first)
    if change == "delete":
        os.unlink(first)
    else:
        Path(first).write_bytes(b"payload, changed")
    invalidated = _invalidated(dm)
    await dm.transfer_data(ELSEWHERE, src, [here], second)
    assert not os.path.islink(second)
    assert Path(second).read_bytes() == b"payload"
    assert invalidated == [first]
    assert _valid(dm, here, first) == []
    assert _valid(dm, here, second) == [DataType.PRIMARY]


def _rewrite(path: str, data: bytes) -> None:
    """Change a file the way a user does: new content, new size, a later mtime."""
    old = os.stat(path).st_mtime
    Path(path).write_bytes(data)
    os.utime(path, (old + 10, old + 10))


@pytest.mark.parametrize("source_here", [False, True])
async def test_changed_source_is_new_data(
    dm: DataManager, connector_env: ConnectorEnv, source_here: bool
) -> None:
    """A source changed since it was recorded is new data: its old copies are not reused."""
    env, here = connector_env, connector_env.location
    origin, target = (here, ELSEWHERE) if source_here else (ELSEWHERE, here)
    src = env.write_file("a/data", b"version A")
    dm.register_path(origin, src)
    first, second = env.path("first"), env.path("second")
    await dm.transfer_data(origin, src, [target], first)
    _rewrite(src, b"version B, longer")
    await dm.transfer_data(origin, src, [target], second)
    assert not os.path.islink(second)
    assert Path(second).read_bytes() == b"version B, longer"
    assert Path(first).read_bytes() == b"version A"
    copies_of_b = {(r.location, r.path) for r in dm.get_data_locations(src)}
    assert copies_of_b == {(origin, src), (target, second)}
    assert {(r.location, r.path) for r in dm.get_data_locations(first)} == {(target, first)}


HERE = ExecutionLocation("here", "here", local=True)


class StatCounting(LocalConnector):
    """A LocalConnector that notes every path it is asked to stat."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: list[str] = []

    async def stat(self, location: ExecutionLocation, path: str) -> Entry | None:
        self.stats.append(path)
        return await super().stat(location, path)


async def test_confirming_costs_one_stat_per_replica_used(tmp_path: Path) -> None:
    """Only the replica a transfer links to is looked at, never the catalog's other ones."""
    counting = StatCounting()
    async with DataManager({"here": counting, "elsewhere": LocalConnector()}) as dm:
        src = tmp_path / "src"
        src.write_bytes(b"payload")
        source = dm.register_path(ELSEWHERE, str(src))
        copies = []
        for number in range(20):
            copy = tmp_path / f"copy{number}"
            shutil.copy2(src, copy)
            dm.register_relation(source, dm.register_path(HERE, str(copy)))
            copies.append(str(copy))
        counting.stats.clear()
        alias = str(tmp_path / "alias")
        await dm.transfer_data(ELSEWHERE, str(src), [HERE], alias)
        assert counting.stats == [os.readlink(alias)]
        assert os.readlink(alias) in copies
        counting.stats.clear()
        await dm.transfer_data(ELSEWHERE, str(src), [HERE], alias)
        assert counting.stats == [alias]


async def test_changed_source_leaves_its_set_in_the_catalog_file(tmp_path: Path) -> None:
    """A changed source, with the links to it, leaves its old copies' set, durably."""
    catalog = tmp_path / "catalog.sqlite"
    src, alias = str(tmp_path / "src"), str(tmp_path / "alias")
    first, link, second = (str(tmp_path / name) for name in ("first", "link", "second"))
    Path(src).write_bytes(b"version A")

    def deployments() -> dict[str, Connector]:
        return {"here": LocalConnector(), "elsewhere": LocalConnector()}

    async with DataManager(deployments(), catalog=catalog) as dm:
        dm.register_path(ELSEWHERE, src)
        await dm.transfer_data(ELSEWHERE, src, [ELSEWHERE], alias)
        await dm.transfer_data(ELSEWHERE, src, [HERE], first)
        await dm.transfer_data(ELSEWHERE, src, [HERE], link)
        _rewrite(src, b"version B, longer")
        await dm.transfer_data(ELSEWHERE, src, [HERE], second)
    assert Path(second).read_bytes() == b"version B, longer"
    async with DataManager(deployments(), catalog=catalog) as dm:
        assert {r.path for r in dm.get_data_locations(src)} == {src, alias, second}
        assert {r.path for r in dm.get_data_locations(first)} == {first, link}
        assert os.readlink(link) == first

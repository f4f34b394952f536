"""Many OS processes on one catalog: nothing lost, changes seen, nothing removed.

Each test starts real processes (tests/catalog_worker.py) against one catalog, as a
workflow engine and a few ``streamdata`` commands would. The tests of semantics run
against a SQLite file and a PostgreSQL database (``DURABLE``); those about the SQLite
file itself (a damaged file, an old schema, its change table) against SQLite only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from catalog_kinds import DURABLE, Catalogs
from conftest import ConnectorEnv

from streamdata import (
    ConfigurationError,
    DataManager,
    DataType,
    ExecutionLocation,
    LocalConnector,
    TransferError,
)
from streamdata.connectors import Entry
from streamdata.testing import FaultyConnector

WORKER = str(Path(__file__).with_name("catalog_worker.py"))
LOCAL = ExecutionLocation("localhost", "local", local=True)
SLOW = ExecutionLocation("slow", "slow")


def _start(catalog: str, *args: str, go: str = "-") -> subprocess.Popen[str]:
    """Start tests/catalog_worker.py on ``catalog`` (waiting for the file ``go`` if given)."""
    return subprocess.Popen(
        [sys.executable, WORKER, catalog, go, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def _expected_register(manager: DataManager, name: str, count: int) -> None:
    """What catalog_worker's register command leaves, checked in ``manager``."""
    location = ExecutionLocation(name, "site")
    valid = [index for index in range(count) if index % 3]
    for index in range(count):
        found = manager.get_data_locations(f"/{name}/{index}", location=name)
        if index % 3 == 0:
            assert found == [], index
    chain = manager.get_data_locations(f"/{name}/{valid[0]}")
    # the first valid paths are related to each other in one set (relations are transitive
    # and invalidation keeps the rest of a set together)
    assert {r.path for r in chain} == {f"/{name}/{index}" for index in valid}
    assert all(r.location == location and r.data_type is DataType.PRIMARY for r in chain)


def _new_catalog(catalogs: Catalogs) -> str:
    """A new durable catalog with its schema made (before processes race to open it)."""
    catalog = catalogs.durable()
    asyncio.run(DataManager(catalog=catalog).close())
    return catalog


async def _made(catalogs: Catalogs) -> str:
    """:func:`_new_catalog`, from a coroutine."""
    catalog = catalogs.durable()
    await DataManager(catalog=catalog).close()
    return catalog


@DURABLE
def test_two_managers_in_one_process_keep_each_others_rows(catalogs: Catalogs) -> None:
    """Registrations of two open managers on one catalog both survive (no id collision)."""
    catalog = catalogs.durable()
    first, second = DataManager(catalog=catalog), DataManager(catalog=catalog)
    a, b = ExecutionLocation("a", "site"), ExecutionLocation("b", "site")
    first.register_path(a, "/data/one")
    second.register_path(b, "/data/two")
    first.invalidate_location(a, "/data/one")
    second.register_path(b, "/data/three")
    asyncio.run(first.close())
    asyncio.run(second.close())
    reopened = DataManager(catalog=catalog)
    assert reopened.get_data_locations("/data/one") == []
    assert [r.path for r in reopened.get_data_locations("/data/two")] == ["/data/two"]
    assert [r.path for r in reopened.get_data_locations("/data/three")] == ["/data/three"]
    asyncio.run(reopened.close())


@DURABLE
def test_four_processes_registering_at_once_lose_nothing(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """4 processes register, relate and invalidate 150 paths each on one catalog: all kept."""
    catalog = _new_catalog(catalogs)
    go = str(tmp_path / "go")
    names = [f"worker{index}" for index in range(4)]
    processes = [_start(catalog, "register", name, "150", go=go) for name in names]
    for process in processes:  # all opened before any writes
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    Path(go).touch()
    for process in processes:
        assert _finish(process).startswith("done ")
    manager = DataManager(catalog=catalog)
    for name in names:
        _expected_register(manager, name, 150)
    asyncio.run(manager.close())


@DURABLE
def test_four_processes_copying_into_one_directory(catalogs: Catalogs, tmp_path: Path) -> None:
    """4 concurrent copies into one directory all succeed, are registered, leave no temporary."""
    catalog = _new_catalog(catalogs)
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    sources = []
    for index in range(4):
        source = tmp_path / "src" / f"file{index}"
        source.write_bytes(os.urandom(200_000 + index))
        sources.append(source)
    processes = [_start(catalog, "copy", str(s), str(tmp_path / "dst"), "400000") for s in sources]
    for process in processes:
        assert _finish(process).splitlines()[-1] == "done"
    assert sorted(os.listdir(tmp_path / "dst")) == [f"file{index}" for index in range(4)]
    manager = DataManager(catalog=catalog)
    for source in sources:
        copy = tmp_path / "dst" / source.name
        assert copy.read_bytes() == source.read_bytes()
        found = manager.get_data_locations(str(source))
        assert {(r.location, r.path) for r in found} == {
            (LOCAL, str(source)),
            (SLOW, str(copy)),
        }
    asyncio.run(manager.close())


def _registered_and_invalidated(manager: DataManager) -> bool:
    """Whether ``manager`` shows what ``register worker0 4`` left: 1 and 2 valid, related."""
    related = {r.path for r in manager.get_data_locations("/worker0/1")}
    gone = manager.get_data_locations("/worker0/0") + manager.get_data_locations("/worker0/3")
    return related == {"/worker0/1", "/worker0/2"} and gone == []


@pytest.mark.timing  # a wall-clock bound of a few seconds
@DURABLE
async def test_an_open_manager_sees_another_process_within_a_second(catalogs: Catalogs) -> None:
    """A manager kept open sees another process's registrations and invalidations < 1 s
    after its calls returned (both processes read one clock: CLOCK_MONOTONIC)."""
    catalog = catalogs.durable()
    async with DataManager(catalog=catalog) as manager:
        assert manager.get_data_locations("/worker0/1") == []
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, WORKER, catalog, "-", "register", "worker0", "4"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert await process.stdout.readline() == b"ready\n"
        returned = float((await process.stdout.readline()).split()[1])  # "done <when>"
        seen_after = None
        while seen_after is None and time.monotonic() - returned < 3.0:
            if _registered_and_invalidated(manager):
                seen_after = time.monotonic() - returned
            await asyncio.sleep(0.01)
        assert await process.wait() == 0
        assert seen_after is not None and seen_after < 1.0, f"seen after {seen_after} s"


def _temporaries(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".streamdata-tmp-")]


def _wait_for_temporary(directory: Path, timeout: float = 20.0) -> str:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = _temporaries(directory)
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no temporary appeared")


@DURABLE
async def test_a_live_process_keeps_its_temporaries(catalogs: Catalogs, tmp_path: Path) -> None:
    """Another process using the same location never removes a live copy's temporary."""
    db = await _made(catalogs)
    (tmp_path / "dst").mkdir()
    big = tmp_path / "big"
    big.write_bytes(os.urandom(1_500_000))
    slow = _start(db, "copy", str(big), str(tmp_path / "dst"), "1000000")
    temporary = _wait_for_temporary(tmp_path / "dst")
    small = tmp_path / "small"
    small.write_bytes(b"small")
    deployments = {"local": LocalConnector(), "slow": LocalConnector()}
    async with DataManager(deployments, catalog=db) as manager:
        manager.register_path(LOCAL, str(small))
        await manager.transfer_data(LOCAL, str(small), [SLOW], str(tmp_path / "dst"))
        report = await manager.check(SLOW, str(tmp_path / "dst"), repair=True)
        assert (tmp_path / "dst" / temporary).exists()  # still being written
        assert report.missing == []
    assert _finish(slow).splitlines()[-1] == "done"
    assert (tmp_path / "dst" / "big").read_bytes() == big.read_bytes()
    assert _temporaries(tmp_path / "dst") == []


@DURABLE
async def test_kill_9_mid_copy_leaves_the_others_working(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """After kill -9 of a copying process, another finishes its copy; the dead one's
    replica is INVALID, its temporary is removed by the next user of the location."""
    db = await _made(catalogs)
    (tmp_path / "dst").mkdir()
    doomed_source, other_source = tmp_path / "doomed", tmp_path / "other"
    doomed_source.write_bytes(os.urandom(3_000_000))
    other_source.write_bytes(os.urandom(600_000))
    doomed = _start(db, "copy", str(doomed_source), str(tmp_path / "dst"), "1000000")
    _wait_for_temporary(tmp_path / "dst")
    other = _start(db, "copy", str(other_source), str(tmp_path / "dst"), "600000")
    await asyncio.sleep(0.3)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=30)
    assert _finish(other).splitlines()[-1] == "done"
    assert (tmp_path / "dst" / "other").read_bytes() == other_source.read_bytes()
    assert not (tmp_path / "dst" / "doomed").exists()
    deployments = {"local": LocalConnector(), "slow": LocalConnector()}
    async with DataManager(deployments, catalog=db) as manager:
        assert manager.get_data_locations(str(tmp_path / "dst" / "doomed")) == []
        assert [r.path for r in manager.get_data_locations(str(other_source))] == [
            str(other_source),
            str(tmp_path / "dst" / "other"),
        ]
        await manager.check(SLOW, str(tmp_path / "dst"), repair=True)
    assert _temporaries(tmp_path / "dst") == []


@DURABLE
async def test_a_transfer_waits_for_another_process_and_takes_over_if_it_dies(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A copy already running in another process is awaited; killed, this one finishes it,
    and the dead one's temporary is removed by check(repair=True) at the latest."""
    db = await _made(catalogs)
    (tmp_path / "dst").mkdir()
    source = tmp_path / "data"
    source.write_bytes(os.urandom(2_000_000))
    holder = _start(db, "copy", str(source), str(tmp_path / "dst"), "500000")
    _wait_for_temporary(tmp_path / "dst")
    deployments = {"local": LocalConnector(), "slow": LocalConnector()}
    async with DataManager(deployments, catalog=db) as manager:
        manager.register_path(LOCAL, str(source))
        transfer = asyncio.create_task(
            manager.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst"))
        )
        await asyncio.sleep(0.5)
        assert not transfer.done()  # waiting for the holder, not copying a second time
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
        killed = time.monotonic()
        async with asyncio.timeout(10):
            await transfer
        assert time.monotonic() - killed < 10
        await manager.check(SLOW, str(tmp_path / "dst"), repair=True)
    assert (tmp_path / "dst" / "data").read_bytes() == source.read_bytes()
    assert _temporaries(tmp_path / "dst") == []


@DURABLE
async def test_a_waiter_takes_over_when_another_process_gave_the_dead_copy_up_first(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A transfer waiting for a killed process's copy takes it over, also when another
    process noticed the death first and gave that copy up (the waiter does not fail)."""
    db = await _made(catalogs)
    (tmp_path / "dst").mkdir()
    source = tmp_path / "data"
    source.write_bytes(os.urandom(2_000_000))
    holder = _start(db, "copy", str(source), str(tmp_path / "dst"), "500000")
    _wait_for_temporary(tmp_path / "dst")
    other = DataManager(catalog=db)  # watches the holder's pending copy
    deployments = {"local": LocalConnector(), "slow": LocalConnector()}
    async with DataManager(deployments, catalog=db) as manager:
        manager.register_path(LOCAL, str(source))
        transfer = asyncio.create_task(
            manager.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst"))
        )
        await asyncio.sleep(0.5)
        assert not transfer.done()  # waiting for the holder
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)  # (no await: this manager's watcher cannot run)
        other._catalog.reap()  # the other one gives the dead copy up first
        async with asyncio.timeout(10):
            await transfer
    await other.close()
    assert (tmp_path / "dst" / "data").read_bytes() == source.read_bytes()


@DURABLE
def test_a_late_reaper_leaves_a_copy_taken_over_since_to_its_new_writer(
    catalogs: Catalogs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manager giving up a dead writer's copy keeps off a live process's takeover of it
    (undone, a third process could claim and copy it once more)."""
    from streamdata._catalog.stores import open_store

    db = _new_catalog(catalogs)
    (tmp_path / "dst").mkdir()
    source, final = tmp_path / "data", str(tmp_path / "dst" / "data")
    source.write_bytes(os.urandom(2_000_000))
    holder = _start(db, "copy", str(source), str(tmp_path / "dst"), "500000")
    _wait_for_temporary(tmp_path / "dst")
    reaper = DataManager(catalog=db)  # watches the holder's pending copy
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    taker, third = open_store(db), open_store(db)
    assert taker is not None and third is not None
    for location, tmp, _ in taker.stale_temporaries():  # as a transfer does first
        os.unlink(tmp)
        taker.forget_temporary(location, tmp)
    assert taker.claim(SLOW, final)  # takes the dead holder's copy over
    # the reaper looked at the row just before the takeover (a race, made certain here)
    monkeypatch.setattr(reaper._catalog._store, "owner_of", lambda key: None)
    reaper._catalog.reap()
    assert not third.claim(SLOW, final)  # still the taker's
    taker.close()
    third.close()
    asyncio.run(reaper.close())


@DURABLE
def test_a_late_reaper_leaves_a_copy_finished_since_valid(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A manager that saw a copy pending, and its writer gone only after it finished and
    exited, does not invalidate the finished copy (in the catalog nor in its own view)."""
    db = _new_catalog(catalogs)
    (tmp_path / "dst").mkdir()
    source, final = tmp_path / "data", str(tmp_path / "dst" / "data")
    source.write_bytes(os.urandom(500_000))
    writer = _start(db, "copy", str(source), str(tmp_path / "dst"), "500000")
    _wait_for_temporary(tmp_path / "dst")
    reaper = DataManager(catalog=db)  # sees the copy pending, its writer alive
    assert _finish(writer).splitlines()[-1] == "done"  # finished, closed, exited
    reaper._catalog.reap()  # before it read the outcome: the writer is gone
    fresh = DataManager(catalog=db)
    assert [r.path for r in fresh.get_data_locations(final)] == [str(source), final]
    assert _refreshed(reaper, final) == {str(source), final}
    asyncio.run(fresh.close())
    asyncio.run(reaper.close())


@DURABLE
async def test_a_transfer_waits_for_a_process_that_took_over_a_given_up_copy(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A destination whose dead writer was given up, then claimed by a live process, is
    waited for by a transfer that never saw it before (not copied a second time); once
    that process dies too, the transfer takes the copy over."""
    from streamdata._catalog.stores import open_store

    db = await _made(catalogs)
    (tmp_path / "dst").mkdir()
    source, final = tmp_path / "data", str(tmp_path / "dst" / "data")
    source.write_bytes(os.urandom(100_000))
    deployments = {"local": LocalConnector(), "slow": LocalConnector()}
    async with DataManager(deployments, catalog=db) as manager:
        manager.register_path(LOCAL, str(source))
        dead, reaper, taker = open_store(db), open_store(db), open_store(db)
        assert dead is not None and reaper is not None and taker is not None
        assert dead.claim(SLOW, final)
        dead.close()  # its process died
        reaper.invalidate([(SLOW, final)], reaping=True)  # another process gave it up
        reaper.close()
        assert taker.claim(SLOW, final)  # and a third one took the copy over
        transfer = asyncio.create_task(
            manager.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst"))
        )
        await asyncio.sleep(0.5)
        assert not transfer.done()  # waiting for the taker, not copying a second time
        taker.close()  # the taker dies too
        async with asyncio.timeout(10):
            await transfer
    assert Path(final).read_bytes() == source.read_bytes()


class _Meanwhile(LocalConnector):
    """Runs ``meanwhile`` once while a transfer prepares its destination; counts copies."""

    def __init__(self, meanwhile: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._meanwhile: Callable[[], Awaitable[None]] | None = meanwhile
        self.copies = 0

    async def prepare_destination(
        self, location: ExecutionLocation, dst_path: str, basename: str
    ) -> str:
        """Let ``meanwhile`` run first (once)."""
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            await meanwhile()
        return await super().prepare_destination(location, dst_path, basename)

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        """Count, then copy."""
        self.copies += 1
        await super().copy(location, src_path, dst_path)


@DURABLE
async def test_a_copy_another_process_finishes_while_a_transfer_starts_is_not_made_again(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """Another process finishing the same copy after this transfer last looked at the
    catalog (but before it claims) makes this one use that copy, not copy again."""
    db = catalogs.durable()
    (tmp_path / "dst").mkdir()
    source = tmp_path / "data"
    source.write_bytes(os.urandom(100_000))
    other = DataManager({"local": LocalConnector(), "slow": LocalConnector()}, catalog=db)
    other.register_path(LOCAL, str(source))

    async def finished_elsewhere() -> None:
        await other.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst"))

    slow = _Meanwhile(finished_elsewhere)
    async with DataManager({"local": LocalConnector(), "slow": slow}, catalog=db) as manager:
        manager.register_path(LOCAL, str(source))
        await manager.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst"))
        assert slow.copies == 0  # the other process's copy was used
    await other.close()
    assert (tmp_path / "dst" / "data").read_bytes() == source.read_bytes()


@DURABLE
async def test_a_claim_right_after_a_writer_died_leaves_no_temporary_of_it(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A transfer that claims a destination whose writer died after this transfer removed
    the stale temporaries (so its temporary is still there) removes it all the same."""
    from streamdata._catalog.stores import open_store

    db = await _made(catalogs)
    (tmp_path / "dst").mkdir()
    source, final = tmp_path / "data", str(tmp_path / "dst" / "data")
    source.write_bytes(os.urandom(100_000))
    writer = open_store(db)
    assert writer is not None and writer.claim(SLOW, final)
    leftover = tmp_path / "dst" / ".streamdata-tmp-of-the-dead-writer"
    writer.note_temporary((SLOW, final), str(leftover))
    leftover.write_bytes(b"half")

    async def writer_dies() -> None:
        writer.close()

    slow = _Meanwhile(writer_dies)
    async with DataManager({"local": LocalConnector(), "slow": slow}, catalog=db) as manager:
        manager.register_path(LOCAL, str(source))
        await manager.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst"))
        assert Path(final).read_bytes() == source.read_bytes()
        await manager.check(SLOW, str(tmp_path / "dst"), repair=True)
    assert _temporaries(tmp_path / "dst") == []


class _ListsThen(LocalConnector):
    """Lists a directory, then lets ``change`` run before handing the listing over: a
    slow listing that another process's transfer outlives."""

    def __init__(self, change: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._change = change

    async def walk(self, location: ExecutionLocation, path: str) -> AsyncIterator[Entry]:
        """The listing made before ``change`` ran."""
        entries = [entry async for entry in super().walk(location, path)]
        await self._change()
        for entry in entries:
            yield entry


@DURABLE
async def test_a_replica_another_process_finishes_during_a_check_is_not_missing(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A file committed and registered by another process after the check listed its
    directory is not reported missing nor invalidated (it was not there to be listed)."""
    db = catalogs.durable()
    site, new = ExecutionLocation("site", "site"), tmp_path / "site" / "dir" / "new"
    new.parent.mkdir(parents=True)
    other = DataManager(catalog=db)

    async def finish_elsewhere() -> None:
        new.write_bytes(b"data")
        other.register_path(site, str(new))
        async with asyncio.timeout(5):
            while not checker.get_data_locations(str(new)):  # noqa: ASYNC110 -- no event: another manager's change, seen by polling
                await asyncio.sleep(0.02)

    async with DataManager({"site": _ListsThen(finish_elsewhere)}, catalog=db) as checker:
        report = await checker.check(site, str(tmp_path / "site"), repair=True)
        assert report.missing == []
        assert [r.path for r in checker.get_data_locations(str(new))] == [str(new)]
    await other.close()


@DURABLE
def test_non_utf8_paths_are_stored_and_reopened_exactly(catalogs: Catalogs) -> None:
    """A path that is not UTF-8 is registered in the catalog and read back byte for byte."""
    db = catalogs.durable()
    location = ExecutionLocation("a", "site")
    path = os.fsdecode(b"/data/bad\xff name")
    first = DataManager(catalog=db)
    replica = first.register_path(location, path)
    assert replica.relpath == os.fsdecode(b"bad\xff name")
    asyncio.run(first.close())
    reopened = DataManager(catalog=db)
    found = reopened.get_data_locations(path)
    assert [(r.path, r.relpath) for r in found] == [(path, os.fsdecode(b"bad\xff name"))]
    assert reopened.get_data_locations("/data") != []
    asyncio.run(reopened.close())


def _corrupt(db: Path) -> None:
    """Overwrite the middle of the replicas table's pages with garbage."""
    page_size = 4096
    size = db.stat().st_size
    with open(db, "r+b") as file:
        for page in range(2, size // page_size, 3):
            file.seek(page * page_size + 100)
            file.write(b"\x5a" * 200)


def test_a_damaged_catalog_is_refused_when_opened(tmp_path: Path) -> None:
    """A catalog file with damaged pages is a ConfigurationError naming it, not missing rows."""
    db = tmp_path / "catalog.sqlite"
    manager = DataManager(catalog=db)
    location = ExecutionLocation("a", "site")
    with manager.batch():
        for index in range(3000):
            manager.register_path(location, f"/data/dir{index % 30}/file{index}")
    asyncio.run(manager.close())
    with sqlite3.connect(db) as connection:  # fold the WAL into the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    _corrupt(db)
    with pytest.raises(ConfigurationError, match=str(db)):
        DataManager(catalog=db)


@DURABLE
async def test_a_temporary_that_could_not_be_removed_is_removed_later(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """A copy that fails and cannot remove its temporary leaves it journalled; the next
    transfer to that location removes it, and so does check(repair=True)."""
    db = catalogs.durable()
    (tmp_path / "dst").mkdir()
    source = tmp_path / "data"
    source.write_bytes(os.urandom(300_000))
    for attempt in ("transfer", "check"):
        faulty = FaultyConnector(LocalConnector(), own_filesystem=True)
        faulty.fail_at("write", 1, after_bytes=100_000).fail_at("remove", 1)
        async with DataManager({"local": LocalConnector(), "slow": faulty}, catalog=db) as dm:
            dm.register_path(LOCAL, str(source))
            with pytest.raises(TransferError):
                await dm.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst" / "x"))
            assert len(_temporaries(tmp_path / "dst")) == 1  # the link went down, say
            if attempt == "transfer":
                await dm.transfer_data(LOCAL, str(source), [SLOW], str(tmp_path / "dst" / "x"))
                assert (tmp_path / "dst" / "x").read_bytes() == source.read_bytes()
                os.unlink(tmp_path / "dst" / "x")
                dm.invalidate_location(SLOW, str(tmp_path / "dst" / "x"))
            else:
                report = await dm.check(SLOW, str(tmp_path / "dst"), repair=True)
                assert report.orphans == []
        assert _temporaries(tmp_path / "dst") == []


def _refreshed(manager: DataManager, path: str) -> set[str]:
    """The replicas of ``path`` ``manager`` reports once it has looked at the file again."""
    time.sleep(0.11)  # past the refresh interval of queries
    return {replica.path for replica in manager.get_data_locations(path)}


@DURABLE
def test_another_managers_invalidation_and_new_registration_are_applied(
    catalogs: Catalogs,
) -> None:
    """A replica invalidated then registered again by another writer leaves its set here too."""
    db = catalogs.durable()
    reader, writer = DataManager(catalog=db), DataManager(catalog=db)
    a, b = ExecutionLocation("a", "site"), ExecutionLocation("b", "site")
    writer.register_relation(writer.register_path(a, "/x"), writer.register_path(b, "/y"))
    assert _refreshed(reader, "/x") == {"/x", "/y"}
    writer.invalidate_location(b, "/y")
    writer.register_path(b, "/y")  # valid again, but a new replica set
    assert _refreshed(reader, "/x") == {"/x"}
    assert _refreshed(reader, "/y") == {"/y"}
    writer.register_relation(writer.get_data_locations("/x")[0], writer.get_data_locations("/y")[0])
    assert _refreshed(reader, "/y") == {"/x", "/y"}
    reader.invalidate_location(a, "/x")  # the reader's own change, seen by the writer
    assert _refreshed(writer, "/y") == {"/y"}
    assert _refreshed(reader, "/y") == {"/y"}
    asyncio.run(reader.close())
    asyncio.run(writer.close())


@DURABLE
def test_identical_transfers_started_at_once_copy_once(catalogs: Catalogs, tmp_path: Path) -> None:
    """3 processes start the same transfer at the same instant: one copies, two wait."""
    db = _new_catalog(catalogs)
    go = str(tmp_path / "go")
    (tmp_path / "dst").mkdir()
    source = tmp_path / "data"
    source.write_bytes(os.urandom(1_200_000))
    processes = [
        _start(db, "copy", str(source), str(tmp_path / "dst"), "1000000", go=go) for _ in range(3)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    Path(go).touch()
    temporaries: set[str] = set()
    while any(process.poll() is None for process in processes):
        temporaries.update(_temporaries(tmp_path / "dst"))
        time.sleep(0.005)
    for process in processes:
        assert _finish(process).splitlines()[-1] == "done"
    assert len(temporaries) == 1  # one copy was written
    assert (tmp_path / "dst" / "data").read_bytes() == source.read_bytes()


@DURABLE
def test_a_destination_is_claimed_by_one_live_process_at_a_time(catalogs: Catalogs) -> None:
    """Two stores on one catalog: the second cannot claim what the first holds until it closes."""
    from streamdata._catalog.stores import open_store

    db = catalogs.durable()
    first, second = open_store(db), open_store(db)
    assert first is not None and second is not None
    assert first.claim(SLOW, "/data/out")
    assert first.claim(SLOW, "/data/out")  # its own claim, again
    assert not second.claim(SLOW, "/data/out")
    assert second.claim(SLOW, "/data/other")
    first.close()  # as if its process died: the claim lapses
    assert second.claim(SLOW, "/data/out")
    second.close()


def test_a_manager_behind_the_kept_changes_reads_everything_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the feed was pruned past what a manager has seen, it re-reads every row."""
    from streamdata._catalog import sqlite_feed as _store_feed

    monkeypatch.setattr(_store_feed, "KEEP_CHANGES", 2)
    db = tmp_path / "catalog.sqlite"
    reader, writer = DataManager(catalog=db), DataManager(catalog=db)
    location = ExecutionLocation("a", "site")
    for index in range(20):
        writer.register_path(location, f"/data/f{index}")
    writer.invalidate_location(location, "/data/f3")
    with sqlite3.connect(db) as connection:
        _store_feed.prune(connection)
        first = connection.execute("SELECT min(seq) FROM changes").fetchone()[0]
    connection.close()
    assert first > 10  # the reader's changes are gone from the feed
    assert _refreshed(reader, "/data/f19") == {"/data/f19"}
    assert _refreshed(reader, "/data/f3") == set()
    asyncio.run(reader.close())
    asyncio.run(writer.close())


@DURABLE
async def test_non_utf8_names_are_copied_and_recorded_with_a_durable_catalog(
    connector_env: ConnectorEnv, catalogs: Catalogs
) -> None:
    """A file and a tree whose names are not UTF-8 copy, register and reopen exactly."""
    root = os.fsencode(connector_env.root)
    os.makedirs(root + b"/src/tree\xfe/sub")
    with open(root + b"/src/tree\xfe/sub/f\xfd", "wb") as file:
        file.write(b"inside")
    with open(root + b"/src/bad\xff", "wb") as file:
        file.write(b"bad")
    db = catalogs.durable()
    deployments = {"local": LocalConnector(), "dst": connector_env.connector}
    dst = ExecutionLocation(connector_env.location.name, "dst")
    out = os.fsdecode(root + b"/out")
    os.mkdir(out)
    async with DataManager(deployments, catalog=db) as dm:
        for name in (b"bad\xff", b"tree\xfe"):
            path = os.fsdecode(root + b"/src/" + name)
            dm.register_path(LOCAL, path)
            await dm.transfer_data(LOCAL, path, [dst], out)
    assert sorted(os.listdir(root + b"/out")) == [b"bad\xff", b"tree\xfe"]
    with open(root + b"/out/tree\xfe/sub/f\xfd", "rb") as file:
        assert file.read() == b"inside"
    async with DataManager(deployments, catalog=db) as dm:
        copies = dm.get_data_locations(os.fsdecode(root + b"/src/bad\xff"), deployment="dst")
        assert [r.path for r in copies] == [os.fsdecode(root + b"/out/bad\xff")]
        assert (await dm.check(dst, out)).missing == []


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE replicas (
    id INTEGER PRIMARY KEY,
    deployment TEXT NOT NULL, name TEXT NOT NULL, local INTEGER NOT NULL,
    path TEXT NOT NULL, relpath TEXT NOT NULL, data_type TEXT NOT NULL,
    implied INTEGER NOT NULL, pending INTEGER NOT NULL, tmp TEXT,
    UNIQUE (deployment, name, path)
);
CREATE TABLE relations (a INTEGER NOT NULL, b INTEGER NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE links (link INTEGER PRIMARY KEY, target INTEGER NOT NULL);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
    digest TEXT
);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO replicas VALUES (1, 'site', 'a', 0, '/', '/', 'primary', 1, 0, NULL);
INSERT INTO replicas VALUES (2, 'site', 'a', 0, '/x', 'x', 'primary', 0, 0, NULL);
INSERT INTO replicas VALUES (3, 'site', 'b', 0, '/', '/', 'primary', 1, 0, NULL);
INSERT INTO replicas VALUES (4, 'site', 'b', 0, '/y', 'y', 'primary', 0, 1, '/.streamdata-tmp-1');
INSERT INTO relations VALUES (2, 4);
"""


def test_a_version_1_catalog_is_migrated(tmp_path: Path) -> None:
    """A catalog written before shared use opens: rows kept, its unfinished copy INVALID."""
    db = tmp_path / "catalog.sqlite"
    with sqlite3.connect(db) as connection:
        connection.executescript(V1_SCHEMA)
    connection.close()
    manager = DataManager(catalog=db)
    assert [r.path for r in manager.get_data_locations("/x")] == ["/x"]  # /y was in flight
    manager.register_path(ExecutionLocation("c", "site"), "/z")
    asyncio.run(manager.close())
    with sqlite3.connect(db) as connection:
        version = connection.execute("SELECT value FROM meta").fetchone()[0]
    connection.close()
    assert version == "2"
    assert [r.path for r in DataManager(catalog=db).get_data_locations("/z")] == ["/z"]

"""``DataManager.batch()``: catalog changes committed once, when the outermost block exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import streamdata
from streamdata import ConfigurationError, DataManager, DataType, ExecutionLocation, LocalConnector

A = ExecutionLocation("a", "site-a")
B = ExecutionLocation("b", "site-b")
PACKAGE_ROOT = str(Path(streamdata.__file__).resolve().parent.parent)


def _committed_paths(catalog: Path) -> set[str]:
    """Replica paths another reader of the file sees (committed transactions only)."""
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as reader:
        return {row[0] for row in reader.execute("SELECT path FROM replicas")}


def _deployments() -> dict[str, LocalConnector]:
    return {"site-a": LocalConnector(), "site-b": LocalConnector()}


async def test_reopen_after_batch_sees_every_change(tmp_path: Path) -> None:
    """Registrations, relations, invalidations and entries made in a batch survive close."""
    catalog = tmp_path / "catalog.sqlite"
    data = tmp_path / "data.txt"
    data.write_text("x")
    async with DataManager(_deployments(), catalog=catalog) as dm:
        with dm.batch():
            local = dm.register_path(A, str(data))
            for index in range(500):
                first = dm.register_path(A, f"/p/{index}")
                second = dm.register_path(B, f"/q/{index}")
                dm.register_relation(first, second)
            dm.invalidate_location(A, "/p/7")
            dm.register_path(B, "/link", data_type=DataType.SYMBOLIC_LINK)
        entry = dm._catalog.entry_of(local)
    assert entry is not None
    async with DataManager(_deployments(), catalog=catalog) as dm:
        for index in range(500):
            found = {(r.deployment, r.path) for r in dm.get_data_locations(f"/p/{index}")}
            if index == 7:
                assert found == set()
            else:
                assert found == {("site-a", f"/p/{index}"), ("site-b", f"/q/{index}")}
        assert [r.path for r in dm.get_data_locations("/q/7")] == ["/q/7"]
        assert dm.get_data_locations("/link")[0].data_type is DataType.SYMBOLIC_LINK
        reopened = dm._catalog.lookup(A, str(data))
        assert reopened is not None
        assert dm._catalog.entry_of(reopened) == entry


async def test_batch_commits_once_at_the_end(tmp_path: Path) -> None:
    """Inside the block nothing new is committed; after it, everything is."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:
        dm.register_path(A, "/before")
        assert "/before" in _committed_paths(catalog)
        with dm.batch():
            for index in range(100):
                dm.register_path(A, f"/in/{index}")
            assert not any(p.startswith("/in") for p in _committed_paths(catalog))
        assert {f"/in/{index}" for index in range(100)} <= _committed_paths(catalog)
        dm.register_path(A, "/after")  # outside a batch: durable when the call returns
        assert "/after" in _committed_paths(catalog)


async def test_nested_batches_commit_at_the_outermost_exit(tmp_path: Path) -> None:
    """Leaving an inner batch commits nothing; leaving the outer one commits all."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:
        with dm.batch():
            dm.register_path(A, "/outer")
            async with dm.batch():
                dm.register_path(A, "/inner")
            assert {"/outer", "/inner"}.isdisjoint(_committed_paths(catalog))
        assert {"/outer", "/inner"} <= _committed_paths(catalog)


async def test_other_tasks_stay_durable_while_a_batch_is_open(tmp_path: Path) -> None:
    """A batch defers only its own task's commits: a call elsewhere is durable on return."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:
        batch_open = asyncio.Event()
        other_done = asyncio.Event()

        async def batched() -> None:
            async with dm.batch():
                dm.register_path(A, "/batched")
                batch_open.set()
                await other_done.wait()

        async def other() -> None:
            await batch_open.wait()
            dm.register_path(B, "/other")  # not inside any batch
            assert "/other" in _committed_paths(catalog)
            other_done.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(batched())
            group.create_task(other())
        assert {"/batched", "/other"} <= _committed_paths(catalog)


async def test_overlapping_batches_of_two_tasks_commit_independently(tmp_path: Path) -> None:
    """The first task to leave its batch has its changes on disk while the other's is open."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:
        second_open = asyncio.Event()
        first_left = asyncio.Event()

        async def first() -> None:
            with dm.batch():
                dm.register_path(A, "/first")
                await second_open.wait()
            assert "/first" in _committed_paths(catalog)
            first_left.set()

        async def second() -> None:
            async with dm.batch():
                dm.register_path(B, "/second")
                second_open.set()
                await first_left.wait()
                dm.register_path(B, "/second-late")
                assert "/second-late" not in _committed_paths(catalog)
            assert "/second-late" in _committed_paths(catalog)

        async with asyncio.TaskGroup() as group:
            group.create_task(first())
            group.create_task(second())


async def test_exception_in_batch_still_commits_what_returned(tmp_path: Path) -> None:
    """The file matches memory after a failing block: returned registrations are kept."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:

        def register_then_fail() -> None:
            with dm.batch():
                dm.register_path(A, "/kept")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            register_then_fail()
        assert "/kept" in _committed_paths(catalog)
    async with DataManager(catalog=catalog) as dm:
        assert [r.path for r in dm.get_data_locations("/kept")] == ["/kept"]


async def test_close_inside_a_batch_commits(tmp_path: Path) -> None:
    """Closing the manager inside a batch commits it; leaving the block then is harmless."""
    catalog = tmp_path / "catalog.sqlite"
    dm = DataManager(catalog=catalog)
    with dm.batch():
        dm.register_path(A, "/x")
        await dm.close()
    assert "/x" in _committed_paths(catalog)
    with pytest.raises(ConfigurationError):
        dm.batch()


async def test_batch_without_catalog_file_is_harmless() -> None:
    """An in-memory manager accepts batches; changes are visible at once as always."""
    async with DataManager() as dm:
        with dm.batch():
            dm.register_path(A, "/m")
            assert [r.path for r in dm.get_data_locations("/m")] == ["/m"]


_CHILD = textwrap.dedent(
    """
    import sys
    from streamdata import DataManager, ExecutionLocation

    A = ExecutionLocation("a", "site-a")
    dm = DataManager(catalog=sys.argv[1])
    for batch in range(100000):
        with dm.batch():
            for index in range(batch * 50, batch * 50 + 50):
                dm.register_path(A, f"/k/{index}")
        print(batch, flush=True)
    """
)


def _kill_during_batches(catalog: Path, delay: float) -> int:
    """Run the batching child, SIGKILL it after ``delay`` s; the batches it reported done."""
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(catalog)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "0"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        # Read through the text wrapper: readline() above may have buffered later lines,
        # which communicate() (reading the raw pipe) would miss.
        out = child.stdout.read()
        child.wait(timeout=30)
    return 1 + len(out.splitlines())  # "0" was read above; one line per batch since


async def test_sigkill_during_batches_loses_at_most_the_open_batch(tmp_path: Path) -> None:
    """After kill -9, every finished batch is there, and nothing beyond the next batch."""
    rng = random.Random(11)
    for attempt in range(5):
        catalog = tmp_path / f"catalog{attempt}.sqlite"
        finished = _kill_during_batches(catalog, rng.uniform(0.0, 0.4))
        async with DataManager(catalog=catalog) as dm:
            stored = {int(r.path.rsplit("/", 1)[1]) for r in dm._catalog if r.path.count("/") == 2}
        assert set(range(finished * 50)) <= stored
        assert stored <= set(range((finished + 1) * 50))
        assert len(stored) % 50 == 0  # a batch is all there or not at all


async def test_a_transfer_waited_for_outside_a_batch_is_durable_on_return(
    tmp_path: Path,
) -> None:
    """B waits (no batch) for the copy A makes inside a batch: on return, it is on disk."""
    catalog = tmp_path / "catalog.sqlite"
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(8 << 20))
    target = str(tmp_path / "dst.bin")
    done = asyncio.Event()
    async with DataManager(_deployments(), catalog=catalog) as dm:
        dm.register_path(A, str(source))

        async def batched() -> None:
            async with dm.batch():
                await dm.transfer_data(A, str(source), [B], target)
                await done.wait()  # the batch stays open while the other task checks

        async def plain() -> None:
            await asyncio.sleep(0)
            await dm.transfer_data(A, str(source), [B], target)
            with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as reader:
                rows = reader.execute(
                    "SELECT data_type, pending FROM replicas WHERE path = ?", (target,)
                ).fetchall()
            done.set()
            assert rows == [("primary", 0)]

        async with asyncio.TaskGroup() as group:
            group.create_task(batched())
            group.create_task(plain())


async def test_a_task_outliving_its_batch_commits_on_return(tmp_path: Path) -> None:
    """A task started inside a batch is not held back by a later batch of another task."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:
        go, other_open = asyncio.Event(), asyncio.Event()

        async def worker() -> None:
            await go.wait()
            dm.register_path(A, "/worker")
            assert "/worker" in _committed_paths(catalog)

        async with asyncio.TaskGroup() as group:
            async with dm.batch():
                group.create_task(worker())  # inherits the batch's context
            async with dm.batch():  # another batch is open while the worker registers
                other_open.set()
                go.set()
                await asyncio.sleep(0.05)


async def test_a_batch_may_end_in_another_task(tmp_path: Path) -> None:
    """Entered in one task, exited in another (an exit stack handed over): no error, and
    nothing stays deferred afterwards."""
    catalog = tmp_path / "catalog.sqlite"
    async with DataManager(catalog=catalog) as dm:
        stack = contextlib.AsyncExitStack()

        async def enter() -> None:
            await stack.enter_async_context(dm.batch())
            dm.register_path(A, "/inside")

        await asyncio.create_task(enter())
        await asyncio.create_task(stack.aclose())
        assert "/inside" in _committed_paths(catalog)
        dm.register_path(A, "/later")
        assert "/later" in _committed_paths(catalog)

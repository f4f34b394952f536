"""A catalog file survives SIGKILL at any moment of a transfer, and never lies afterwards."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from catalog_kinds import DURABLE, Catalogs

from streamdata import DataManager, DataType, ExecutionLocation, LocalConnector

CHILD = r"""
import asyncio, sys
from streamdata import DataManager, ExecutionLocation, LocalConnector

async def main(db, src, dst_dir):
    a, b = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")
    dm = DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}, catalog=db)
    dm.register_path(a, src)
    print("registered", flush=True)
    for index in range(1000):
        await dm.transfer_data(a, src, [b], f"{dst_dir}/copy{index}", writable=True)
        print(f"done {index}", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


def _run_and_kill(db: str, src: Path, dst: Path, delay: float) -> list[int]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(src), str(dst)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "registered"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    with child.stdout:
        out = child.stdout.read()  # not communicate(): it misses lines readline() buffered
    child.wait(timeout=30)
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("done")]


@DURABLE
async def test_sigkill_during_transfers_never_leaves_a_valid_partial_replica(
    catalogs: Catalogs,
    tmp_path: Path,
) -> None:
    """After kill -9 mid-transfer, reopened catalog holds finished copies valid, the rest not."""
    rng = random.Random(7)
    src = tmp_path / "big.bin"
    payload = os.urandom(1 << 20) * 24
    src.write_bytes(payload)
    for attempt in range(6):
        db, dst = catalogs.durable(), tmp_path / f"dst{attempt}"
        dst.mkdir()
        finished = _run_and_kill(db, src, dst, rng.uniform(0.05, 0.6))
        async with DataManager(
            {"site-a": LocalConnector(), "site-b": LocalConnector()}, catalog=db
        ) as dm:
            assert [r.path for r in dm.get_data_locations(str(src))] == [str(src)]
            for index in finished:
                copy = dm.get_data_locations(str(dst / f"copy{index}"))
                assert [c.data_type for c in copy] == [DataType.PRIMARY]
            for entry in dst.iterdir():
                replicas = dm.get_data_locations(str(entry))
                if replicas:
                    assert entry.read_bytes() == payload, f"valid replica {entry} is partial"
            await dm.check(B, str(dst))  # uses the location: stale temporaries go away
            leftovers = [p.name for p in dst.iterdir() if p.name.startswith(".streamdata-")]
            assert leftovers == []


@DURABLE
async def test_interrupted_transfer_comes_back_invalid(catalogs: Catalogs, tmp_path: Path) -> None:
    """A destination whose transfer was in flight at the kill is INVALID after reopening."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1 << 20) * 48)
    db, dst = catalogs.durable(), tmp_path / "dst"
    dst.mkdir()
    finished = _run_and_kill(db, src, dst, 0.3)
    async with DataManager(
        {"site-a": LocalConnector(), "site-b": LocalConnector()}, catalog=db
    ) as dm:
        unfinished = dst / f"copy{len(finished)}"
        if dm.get_data_locations(str(unfinished)):
            # the kill fell between the call's return and the child's "done" line: the
            # copy finished, so it must be there, whole
            assert unfinished.read_bytes() == src.read_bytes()
        else:
            assert not unfinished.exists() or unfinished.read_bytes() == src.read_bytes()


@DURABLE
def test_sigkill_child_catalog_opens(catalogs: Catalogs, tmp_path: Path) -> None:
    """The catalog file left by a killed writer opens and answers queries."""
    src = tmp_path / "f"
    src.write_bytes(b"x" * 100)
    dst = tmp_path / "dst"
    dst.mkdir()
    db = catalogs.durable()
    _run_and_kill(db, src, dst, 0.2)

    async def reopen() -> int:
        async with DataManager(catalog=db) as dm:
            return len(dm.get_data_locations(str(src)))

    assert asyncio.run(reopen()) == 1


def _state(dm: DataManager) -> dict[tuple[str, str, str], tuple[object, ...]]:
    """Everything the catalog knows about each replica, comparable across processes."""
    catalog = dm._catalog
    state: dict[tuple[str, str, str], tuple[object, ...]] = {}
    for replica in catalog:
        target = catalog.link_target(replica)
        members = {(r.deployment, r.name, r.path) for r in catalog.replica_set(replica)}
        state[(replica.deployment, replica.name, replica.path)] = (
            replica.location.local,
            replica.relpath,
            replica.data_type,
            replica._implied,
            replica.is_available,
            frozenset(members),
            None if target is None else (target.deployment, target.path),
            catalog.entry_of(replica),
            catalog.digest_of(replica),
        )
    return state


@DURABLE
async def test_reopen_restores_every_field(catalogs: Catalogs, tmp_path: Path) -> None:
    """Types, relpaths, implied parents, sets, link targets, entries and digests all return."""
    db, src = catalogs.durable(), tmp_path / "src.txt"
    src.write_text("data")
    local = ExecutionLocation("here", "site-a", local=True)
    deployments = {"site-a": LocalConnector(), "site-b": LocalConnector()}
    async with DataManager(deployments, catalog=db) as dm:
        with dm.batch():
            first = dm.register_path(local, str(src), relpath="logical/name")
            for index in range(50):
                copy = dm.register_path(B, f"/copies/{index % 5}/c{index}")
                dm.register_relation(first, copy)
            link = dm.register_path(A, "/links/l", data_type=DataType.SYMBOLIC_LINK)
            dm.register_relation(link, first)
            dm.invalidate_location(B, "/copies/3")
        dm._catalog.record_entry(first, ("file", 4, 1.5), "abc")
        before = _state(dm)
    async with DataManager(deployments, catalog=db) as dm:
        assert _state(dm) == before
        reopened_link = dm._catalog.lookup(A, "/links/l")
        assert reopened_link is not None
        assert dm._catalog.link_target(reopened_link) is not None

"""Values: locations compare by (deployment, name); replicas pickle and wait across loops."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading

import pytest

from streamdata import DataType, ExecutionLocation, TransferError
from streamdata._catalog.mapper import RemotePathMapper

A = ExecutionLocation("node", "dep")


def test_location_identity_ignores_local_flag() -> None:
    """Two locations are the same when deployment and name are equal, whatever `local` says."""
    assert ExecutionLocation("node", "dep", local=True) == A
    assert hash(ExecutionLocation("node", "dep", local=True)) == hash(A)
    assert ExecutionLocation("node", "other") != A
    with pytest.raises(AttributeError):
        A.name = "x"  # type: ignore[misc]


def test_replica_attributes_are_read_only() -> None:
    """A DataLocation's attributes cannot be assigned by users."""
    replica = RemotePathMapper().register(A, "/a/b")
    with pytest.raises(AttributeError):
        replica.path = "/x"  # type: ignore[misc]
    assert (replica.path, replica.relpath, replica.deployment, replica.name) == (
        "/a/b",
        "b",
        "dep",
        "node",
    )


def test_replica_pickles_without_loop_objects() -> None:
    """A pending replica pickles and unpickles, keeping identity fields and type."""
    catalog = RemotePathMapper()
    replica = catalog.register(A, "/x/y", data_type=DataType.SYMBOLIC_LINK, available=False)
    clone = pickle.loads(pickle.dumps(replica))
    assert clone == replica
    assert clone.data_type is DataType.SYMBOLIC_LINK
    assert not clone.is_available


async def test_wait_available_from_another_loop_in_another_thread() -> None:
    """A replica completed on this loop wakes a waiter running its own loop in a thread."""
    catalog = RemotePathMapper()
    replica = catalog.register(A, "/data/f", available=False)
    started = threading.Event()
    outcome: list[object] = []

    def waiter() -> None:
        async def wait() -> None:
            started.set()
            await replica.wait_available()

        try:
            asyncio.run(asyncio.wait_for(wait(), 10))
            outcome.append("ok")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    await asyncio.to_thread(started.wait, 10)
    await asyncio.sleep(0.05)
    catalog.complete(replica)
    await asyncio.to_thread(thread.join, 10)
    assert outcome == ["ok"]
    assert replica.is_available


async def test_failed_transfer_reaches_every_waiter() -> None:
    """All waiters of a replica whose transfer fails get a TransferError, none hangs."""
    catalog = RemotePathMapper()
    replica = catalog.register(A, "/data/f", available=False)
    waiters = [asyncio.create_task(replica.wait_available()) for _ in range(5)]
    await asyncio.sleep(0)
    catalog.complete(replica, TransferError("boom"))
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
    assert all(isinstance(r, TransferError) for r in results)
    assert replica.data_type is DataType.INVALID
    assert not replica.is_available


def test_a_location_pickled_in_another_process_finds_its_entries() -> None:
    """A location unpickled from a process with another hash seed keys the same dict entry."""
    import pickle
    import subprocess
    import sys

    code = (
        "import pickle, sys; from streamdata import ExecutionLocation; "
        "sys.stdout.buffer.write(pickle.dumps(ExecutionLocation('node', 'site', local=True)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    dumped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, env=env
    ).stdout
    location = pickle.loads(dumped)
    assert {ExecutionLocation("node", "site"): "found"}[location] == "found"
    assert location.local is True

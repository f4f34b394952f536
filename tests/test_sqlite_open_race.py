"""Many processes opening one new SQLite catalog at the same instant all get it.

Switching a new file to WAL is answered "database is locked" at once (no busy timeout)
when another connection waits for the same lock: 6 of 160 simultaneous opens failed
that way before the switch was retried.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from streamdata import DataManager, ExecutionLocation, LocalConnector

LOCAL = ExecutionLocation("localhost", "local", local=True)
PROCESSES = 8
ROUNDS = 20


def _open_and_register(path: str, index: int, barrier: Barrier) -> None:
    """Open the catalog when every process is ready, register one path, close."""
    barrier.wait()
    manager = DataManager({"local": LocalConnector()}, catalog=path)
    manager.register_path(LOCAL, f"/data/p{index}")
    asyncio.run(manager.close())


def test_eight_processes_opening_one_new_catalog_at_once(tmp_path: Path) -> None:
    """8 processes at once, on 20 new catalogs: every open succeeds, every row is kept."""
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"catalog-{round_}.sqlite")
        barrier = context.Barrier(PROCESSES)
        processes = [
            context.Process(target=_open_and_register, args=(path, index, barrier))
            for index in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * PROCESSES, round_
        manager = DataManager({"local": LocalConnector()}, catalog=path)
        try:
            found = {location.path for location in manager.get_data_locations("/data")}
            registered = {
                f"/data/p{index}"
                for index in range(PROCESSES)
                if manager.get_data_locations(f"/data/p{index}")
            }
        finally:
            asyncio.run(manager.close())
        assert found == {"/data"}
        assert registered == {f"/data/p{index}" for index in range(PROCESSES)}

"""A process that uses a shared catalog, started by tests/test_shared_catalog.py.

CATALOG is a SQLite file or a PostgreSQL URL; GO is the path of a file to wait for
before the work starts (so that several workers start it at one instant), or ``-`` not
to wait.

python tests/catalog_worker.py CATALOG GO register NAME COUNT
    opens the catalog, prints "ready", waits for GO, then registers COUNT paths
    /NAME/<i> on location NAME (deployment "site"), relates each to the one before,
    invalidates every third, and prints "done <time.monotonic() when the calls returned>"
python tests/catalog_worker.py CATALOG GO copy SRC DST [BYTES_PER_SECOND]
    registers SRC on the local location, prints "ready", waits for GO and copies it to
    DST on location "slow" (through the stream path, at that bandwidth when given);
    prints "copying" before and "done" after
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from streamdata import DataManager, ExecutionLocation, LocalConnector
from streamdata.testing import FaultyConnector

LOCAL = ExecutionLocation("localhost", "local", local=True)
SLOW = ExecutionLocation("slow", "slow")


def _wait_for(go: str) -> None:
    while go != "-" and not os.path.exists(go):  # another process makes it
        time.sleep(0.002)


def register(catalog: str, go: str, name: str, count: int) -> None:
    """Register, relate and invalidate a known pattern of paths."""
    location = ExecutionLocation(name, "site")
    manager = DataManager(catalog=catalog)
    print("ready", flush=True)
    _wait_for(go)  # every worker has opened the catalog
    previous = None
    for index in range(count):
        replica = manager.register_path(location, f"/{name}/{index}")
        if previous is not None:
            manager.register_relation(previous, replica)
        previous = replica
    for index in range(0, count, 3):
        manager.invalidate_location(location, f"/{name}/{index}")
    print(f"done {time.monotonic()!r}", flush=True)  # not closed: each call was durable


async def copy(catalog: str, go: str, src: str, dst: str, bandwidth: float | None) -> None:
    """Copy one local file through the streaming path, slowly if asked."""
    slow = FaultyConnector(LocalConnector(), bandwidth=bandwidth, own_filesystem=True)
    async with DataManager({"local": LocalConnector(), "slow": slow}, catalog=catalog) as dm:
        dm.register_path(LOCAL, src)
        print("ready", flush=True)
        await asyncio.to_thread(_wait_for, go)
        print("copying", flush=True)
        await dm.transfer_data(LOCAL, src, [SLOW], dst)
    print("done", flush=True)


def main(argv: list[str]) -> None:
    """Run one command (see the module docstring)."""
    catalog, go, command, *args = argv
    if command == "register":
        register(catalog, go, args[0], int(args[1]))
    elif command == "copy":
        bandwidth = float(args[2]) if len(args) > 2 else None
        asyncio.run(copy(catalog, go, args[0], args[1], bandwidth))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

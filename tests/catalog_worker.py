"""A process that uses a shared catalog file, started by tests/test_shared_catalog.py.

python tests/catalog_worker.py CATALOG register NAME COUNT
    opens the catalog, prints "ready", waits for the file CATALOG.go, then registers
    COUNT paths /NAME/<i> on location NAME (deployment "site"), relates each to the one
    before, invalidates every third, and prints "done"
python tests/catalog_worker.py CATALOG copy SRC DST [BYTES_PER_SECOND [go]]
    registers SRC on the local location, prints "ready" (with "go", then waits for the
    file CATALOG.go) and copies it to DST on location "slow" (through the stream path, at
    that bandwidth when given); prints "copying" before and "done" after
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


def register(catalog: str, name: str, count: int) -> None:
    """Register, relate and invalidate a known pattern of paths."""
    location = ExecutionLocation(name, "site")
    manager = DataManager(catalog=catalog)
    print("ready", flush=True)
    while not os.path.exists(catalog + ".go"):  # every worker has opened the file
        time.sleep(0.005)
    previous = None
    for index in range(count):
        replica = manager.register_path(location, f"/{name}/{index}")
        if previous is not None:
            manager.register_relation(previous, replica)
        previous = replica
    for index in range(0, count, 3):
        manager.invalidate_location(location, f"/{name}/{index}")
    print("done", flush=True)


async def copy(catalog: str, src: str, dst: str, bandwidth: float | None, go: bool) -> None:
    """Copy one local file through the streaming path, slowly if asked."""
    slow = FaultyConnector(LocalConnector(), bandwidth=bandwidth, own_filesystem=True)
    async with DataManager({"local": LocalConnector(), "slow": slow}, catalog=catalog) as dm:
        dm.register_path(LOCAL, src)
        print("ready", flush=True)
        while go and not os.path.exists(catalog + ".go"):  # noqa: ASYNC110 -- another process makes it
            await asyncio.sleep(0.002)
        print("copying", flush=True)
        await dm.transfer_data(LOCAL, src, [SLOW], dst)
    print("done", flush=True)


def main(argv: list[str]) -> None:
    """Run one command (see the module docstring)."""
    catalog, command, *args = argv
    if command == "register":
        register(catalog, args[0], int(args[1]))
    elif command == "copy":
        bandwidth = float(args[2]) if len(args) > 2 else None
        asyncio.run(copy(catalog, args[0], args[1], bandwidth, args[3:4] == ["go"]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

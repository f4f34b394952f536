"""The processes of the shared-catalog benchmark (``shared_catalog.py``), one per run.

Each sub-command opens a ``DataManager(catalog=...)`` (a PostgreSQL URL or a SQLite file;
``--catalog memory`` keeps it in memory) and prints one JSON line on stdout. The timed
ones take part in a group started together: they open their manager, print ``ready``,
read the start time (``time.time()``) on stdin, wait for it, and run for ``--seconds``
from then, so that every process of a group measures the same window::

    python benchmarks/shared_catalog_worker.py fill --catalog URL --n 100000
    python benchmarks/shared_catalog_worker.py register --catalog URL --worker 3 --seconds 4
    python benchmarks/shared_catalog_worker.py lookup --catalog URL --n 100000 --seconds 2
    python benchmarks/shared_catalog_worker.py reopen --catalog URL
    python benchmarks/shared_catalog_worker.py feed-write --catalog URL --count 500
    python benchmarks/shared_catalog_worker.py feed-read --catalog URL --count 500

The workload (``fill``, read by ``lookup``): N replicas as N/2 files
``/data/dNNNNN/fNNNNNNN`` (100 per directory), file ``j`` on locations ``j % 10`` and
``j % 10 + 1`` (deployment ``depK``, name ``nodeK``), the two related, as in
``catalog.py``; plus the implied directories.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from durable import replica_count, rss_mib

LOCATIONS = 10
FILES_PER_DIRECTORY = 100
SAMPLE = 20_000
SEED = 20_261_207
CHUNK = 500  # lookups between two looks at the clock


def file_path(j: int) -> str:
    """File ``j`` of the workload."""
    return f"/data/d{j // FILES_PER_DIRECTORY:05d}/f{j:07d}"


def open_manager(catalog: str) -> Any:
    """A DataManager on ``catalog`` (``memory``: in memory)."""
    from streamdata import DataManager

    return DataManager(catalog=None if catalog == "memory" else catalog)


def close(manager: Any) -> float:
    """Close ``manager``; returns the seconds it took."""
    start = time.perf_counter()
    asyncio.run(manager.close())
    return time.perf_counter() - start


def wait_for_start() -> float:
    """Say ``ready``, read the group's start time on stdin and sleep until then."""
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    return start


def fill(manager: Any, n: int, batch: int) -> None:
    """Register the workload's ``n`` replicas, ``batch`` files per ``manager.batch()``."""
    from streamdata import ExecutionLocation

    locations = [ExecutionLocation(f"node{k}", f"dep{k}") for k in range(LOCATIONS)]
    files = n // 2
    for first in range(0, files, batch):
        with manager.batch():
            for j in range(first, min(files, first + batch)):
                path = file_path(j)
                k = j % LOCATIONS
                a = manager.register_path(locations[k], path)
                b = manager.register_path(locations[(k + 1) % LOCATIONS], path)
                manager.register_relation(a, b)


def work_fill(catalog: str, n: int, batch: int) -> dict[str, Any]:
    """Fill an empty catalog with the workload; the rate of the batched registrations."""
    manager = open_manager(catalog)
    start = time.perf_counter()
    fill(manager, n, batch)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "batch": batch,
        "seconds": seconds,
        "rate": n / seconds,
        "replicas": replica_count(manager),
        "close_seconds": close(manager),
    }


def work_register(catalog: str, worker: int, seconds: float, batch: int) -> dict[str, Any]:
    """Register new paths on this worker's own location for ``seconds`` from the start.

    Without ``batch`` each ``register_path`` is durable when it returns; with it, every
    ``batch`` calls run in one ``manager.batch()`` and count once the block has exited.
    """
    from streamdata import ExecutionLocation

    manager = open_manager(catalog)
    location = ExecutionLocation(f"writer{worker}", "site")
    register = manager.register_path
    step = batch or 1
    done = j = 0
    start = wait_for_start()
    end, cpu = start + seconds, time.process_time()
    while True:
        block: AbstractContextManager[Any] = manager.batch() if batch else nullcontext()
        with block:
            for _ in range(step):
                register(location, f"/w{worker}/d{j // FILES_PER_DIRECTORY:05d}/f{j:07d}")
                j += 1
        if time.time() > end:
            break
        done += step
    cpu = time.process_time() - cpu
    return {
        "worker": worker,
        "batch": batch,
        "registered": done,
        "rate": done / seconds,
        "cpu_seconds": cpu,
        "close_seconds": close(manager),
    }


def work_lookup(catalog: str, n: int, seconds: float) -> dict[str, Any]:
    """``get_data_locations``, then ``get_source_location``, ``seconds`` each, on a sample.

    With ``--catalog memory`` the process first builds the workload itself (untimed).
    """
    manager = open_manager(catalog)
    if catalog == "memory":
        fill(manager, n, 10_000)
    rng = random.Random(SEED)
    sample = [file_path(rng.randrange(n // 2)) for _ in range(min(n // 2, SAMPLE))]
    for path in sample:  # the data is there (untimed)
        if len(manager.get_data_locations(path)) != 2:
            raise RuntimeError(f"{path} has not its 2 replicas")
    chunks = [sample[i : i + CHUNK] for i in range(0, len(sample), CHUNK)]
    locations, sources = manager.get_data_locations, manager.get_source_location

    def get_data_locations(chunk: list[str]) -> None:
        for path in chunk:
            locations(path)

    def get_source_location(chunk: list[str]) -> None:
        for path in chunk:
            sources(path, "elsewhere")

    gc.collect()
    start = wait_for_start()
    counts, cpu = {}, {}
    for number, run in enumerate((get_data_locations, get_source_location), 1):
        deadline, done, cpu_start = start + number * seconds, 0, time.process_time()
        while time.time() < deadline:
            run(chunks[(done // CHUNK) % len(chunks)])
            done += CHUNK
        counts[run.__name__], cpu[run.__name__] = done, time.process_time() - cpu_start
    return {
        "counts": counts,
        "rates": {name: count / seconds for name, count in counts.items()},
        "cpu_seconds": cpu,
        "close_seconds": close(manager),
    }


def work_reopen(catalog: str) -> dict[str, Any]:
    """Open an existing catalog until its first query answers."""
    rss_before = rss_mib()
    start = time.perf_counter()
    manager = open_manager(catalog)
    found = manager.get_data_locations(file_path(0))
    seconds = time.perf_counter() - start
    if len(found) != 2:
        raise RuntimeError(f"the reopened catalog lost {file_path(0)}")
    return {
        "open_seconds": seconds,
        "replicas": replica_count(manager),
        "rss_growth_mib": rss_mib() - rss_before,
        "close_seconds": close(manager),
    }


def work_feed_write(catalog: str, count: int, seed: int) -> dict[str, Any]:
    """Register ``/feed/K`` for K below ``count``, 10-40 ms apart; when each call returned."""
    from streamdata import ExecutionLocation

    manager = open_manager(catalog)
    location = ExecutionLocation("feeder", "site")
    rng = random.Random(seed)
    returned = []
    wait_for_start()
    for k in range(count):
        time.sleep(rng.uniform(0.01, 0.04))
        manager.register_path(location, f"/feed/{k}")
        returned.append(time.time())
    return {"returned": returned, "close_seconds": close(manager)}


def work_feed_read(catalog: str, count: int, timeout: float) -> dict[str, Any]:
    """Poll ``get_data_locations("/feed/K")`` (every millisecond) until each K shows up."""
    manager = open_manager(catalog)
    seen = []
    wait_for_start()
    deadline = time.time() + timeout
    for k in range(count):
        path = f"/feed/{k}"
        while not manager.get_data_locations(path):
            if time.time() > deadline:
                raise RuntimeError(f"{path} not seen within {timeout:g} s")
            time.sleep(0.001)
        seen.append(time.time())
    return {"seen": seen, "close_seconds": close(manager)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("fill", "register", "lookup", "reopen", "feed-write", "feed-read"):
        command = commands.add_parser(name)
        command.add_argument("--catalog", required=True, help="URL, file, or memory")
        command.add_argument("--n", type=int, default=100_000, help="replicas (fill, lookup)")
        command.add_argument("--batch", type=int, default=0, help="calls per manager.batch()")
        command.add_argument("--worker", type=int, default=0, help="this worker's number")
        command.add_argument("--seconds", type=float, default=4.0, help="timed window")
        command.add_argument("--count", type=int, default=500, help="feed samples")
        command.add_argument("--seed", type=int, default=SEED)
        command.add_argument("--timeout", type=float, default=120.0, help="feed-read limit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run one sub-command and print its JSON record."""
    args = parse_args(argv)
    if args.command == "fill":
        record = work_fill(args.catalog, args.n, args.batch or 1_000)
    elif args.command == "register":
        record = work_register(args.catalog, args.worker, args.seconds, args.batch)
    elif args.command == "lookup":
        record = work_lookup(args.catalog, args.n, args.seconds)
    elif args.command == "reopen":
        record = work_reopen(args.catalog)
    elif args.command == "feed-write":
        record = work_feed_write(args.catalog, args.count, args.seed)
    else:
        record = work_feed_read(args.catalog, args.count, args.timeout)
    print(json.dumps(record))


if __name__ == "__main__":
    main()

"""Which PostgreSQL driver for the catalog: asyncpg vs psycopg 3, measured, same process.

Starts a throwaway cluster (``streamdata/testing/_postgres.py`` with the tests' settings,
``fsync=off``; or ``--url`` an existing database)
and measures, for each driver, ``--runs`` times in alternation (driver A, driver B, A, B...)::

    python benchmarks/pg_driver.py [--runs 3] [--rows 2000] [--url postgresql://...]

* insert/1: single-row INSERTs into a replicas-like table, each its own transaction.
* insert/1000: the same rows in transactions of 1,000, by ``executemany`` and by COPY.
* select: point SELECTs by (deployment, name, path), prepared.
* notify: LISTEN/NOTIFY latency, NOTIFY sent on one connection, received on another of
  the same process (median and p99 of 200).

The catalog's store interface is synchronous, so psycopg is measured through its sync
API, and asyncpg both natively (``await`` in a loop) and through the bridge a synchronous
store would need (its own event loop in a thread, ``run_coroutine_threadsafe``).
Prints one JSON line per measurement, then a table of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import psycopg
from _pg import TEST_SETTINGS, bench_cluster

T = TypeVar("T")
TABLE = """
CREATE TABLE IF NOT EXISTS bench (id bigserial PRIMARY KEY, deployment text NOT NULL,
    name text NOT NULL, path text NOT NULL, relpath text NOT NULL, data_type text NOT NULL,
    UNIQUE (deployment, name, path))
"""
INSERT_PG = "INSERT INTO bench (deployment, name, path, relpath, data_type) VALUES ($1,$2,$3,$4,$5)"
INSERT_PS = "INSERT INTO bench (deployment, name, path, relpath, data_type) VALUES (%s,%s,%s,%s,%s)"
SELECT_PG = "SELECT id, relpath, data_type FROM bench WHERE deployment=$1 AND name=$2 AND path=$3"
SELECT_PS = "SELECT id, relpath, data_type FROM bench WHERE deployment=%s AND name=%s AND path=%s"
COLUMNS = ("deployment", "name", "path", "relpath", "data_type")
NOTIFICATIONS = 200


def rows(n: int, tag: str) -> list[tuple[str, str, str, str, str]]:
    """``n`` replica-like rows, unique per ``tag``."""
    return [("site", "loc", f"/{tag}/d{i // 100}/f{i}", f"f{i}", "primary") for i in range(n)]


class Bridge:
    """An event loop in a thread: how a synchronous store would call asyncpg."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


# -- psycopg 3, sync API ---------------------------------------------------------------------


def psycopg_run(url: str, n: int, tag: str) -> dict[str, float]:
    """Every measurement with psycopg's synchronous API."""
    out: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        data = rows(n, f"{tag}-one")
        start = time.perf_counter()
        for row in data:
            conn.execute(INSERT_PS, row, prepare=True)
        out["insert/1"] = n / (time.perf_counter() - start)
        data = rows(n * 10, f"{tag}-many")
        start = time.perf_counter()
        for first in range(0, len(data), 1000):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(INSERT_PS, data[first : first + 1000])
        out["insert/1000 executemany"] = len(data) / (time.perf_counter() - start)
        data = rows(n * 10, f"{tag}-copy")
        start = time.perf_counter()
        for first in range(0, len(data), 1000):
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY bench ({', '.join(COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in data[first : first + 1000]:
                    copy.write_row(row)
        out["insert/1000 copy"] = len(data) / (time.perf_counter() - start)
        keys = [row[:3] for row in rows(n, f"{tag}-one")]
        start = time.perf_counter()
        for key in keys:
            found = conn.execute(SELECT_PS, key, prepare=True).fetchone()
            assert found is not None
        out["select"] = n / (time.perf_counter() - start)
    out.update(psycopg_notify(url))
    return out


def psycopg_notify(url: str) -> dict[str, float]:
    """LISTEN in a thread (``notifies()``), NOTIFY from this one; latency per message."""
    latencies: list[float] = []
    ready = threading.Event()

    def listen() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("LISTEN bench")
            ready.set()
            for note in conn.notifies():
                latencies.append(time.perf_counter() - float(note.payload))
                if len(latencies) == NOTIFICATIONS:
                    break

    listener = threading.Thread(target=listen)
    listener.start()
    ready.wait()
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(NOTIFICATIONS):
            conn.execute("SELECT pg_notify('bench', %s)", (repr(time.perf_counter()),))
            time.sleep(0.002)
    listener.join()
    return notify_stats(latencies)


def notify_stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "notify median ms": statistics.median(ordered) * 1000,
        "notify p99 ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


# -- asyncpg ---------------------------------------------------------------------------------


async def asyncpg_run(url: str, n: int, tag: str) -> dict[str, float]:
    """Every measurement with asyncpg, awaited natively."""
    out: dict[str, float] = {}
    conn = await asyncpg.connect(url)
    try:
        data = rows(n, f"{tag}-one")
        start = time.perf_counter()
        for row in data:
            await conn.execute(INSERT_PG, *row)
        out["insert/1"] = n / (time.perf_counter() - start)
        data = rows(n * 10, f"{tag}-many")
        start = time.perf_counter()
        for first in range(0, len(data), 1000):
            async with conn.transaction():
                await conn.executemany(INSERT_PG, data[first : first + 1000])
        out["insert/1000 executemany"] = len(data) / (time.perf_counter() - start)
        data = rows(n * 10, f"{tag}-copy")
        start = time.perf_counter()
        for first in range(0, len(data), 1000):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "bench", records=data[first : first + 1000], columns=COLUMNS
                )
        out["insert/1000 copy"] = len(data) / (time.perf_counter() - start)
        keys = [row[:3] for row in rows(n, f"{tag}-one")]
        start = time.perf_counter()
        for key in keys:
            assert await conn.fetchrow(SELECT_PG, *key) is not None
        out["select"] = n / (time.perf_counter() - start)
    finally:
        await conn.close()
    out.update(await asyncpg_notify(url))
    return out


async def asyncpg_notify(url: str) -> dict[str, float]:
    latencies: list[float] = []
    done = asyncio.Event()

    def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        latencies.append(time.perf_counter() - float(payload))
        if len(latencies) == NOTIFICATIONS:
            done.set()

    listener, sender = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await listener.add_listener("bench", heard)
        for _ in range(NOTIFICATIONS):
            await sender.execute(f"SELECT pg_notify('bench', '{time.perf_counter()!r}')")
            await asyncio.sleep(0.002)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await listener.close()
        await sender.close()
    return notify_stats(latencies)


def asyncpg_bridged_run(url: str, n: int, tag: str) -> dict[str, float]:
    """Single-row inserts and point selects called from sync code through a loop thread."""
    bridge = Bridge()
    out: dict[str, float] = {}
    try:
        conn: Any = bridge.run(asyncpg.connect(url))
        data = rows(n, f"{tag}-bridge")
        start = time.perf_counter()
        for row in data:
            bridge.run(conn.execute(INSERT_PG, *row))
        out["insert/1"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for row in data:
            assert bridge.run(conn.fetchrow(SELECT_PG, *row[:3])) is not None
        out["select"] = n / (time.perf_counter() - start)
        bridge.run(conn.close())
    finally:
        bridge.close()
    return out


# -- driving ---------------------------------------------------------------------------------


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with bench_cluster("bench", settings=TEST_SETTINGS) as cluster:
        settings = cluster.psql(
            "SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers')"
        )
        print(json.dumps({"server": cluster.psql("SHOW server_version"), "settings": settings}))
        yield cluster.url()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--url")
    args = parser.parse_args()
    drivers: dict[str, Callable[[str, int, str], dict[str, float]]] = {
        f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})": psycopg_run,
        f"asyncpg {asyncpg.__version__}": lambda u, n, t: asyncio.run(asyncpg_run(u, n, t)),
        f"asyncpg {asyncpg.__version__} from sync code": asyncpg_bridged_run,
    }
    results: dict[str, dict[str, list[float]]] = {name: {} for name in drivers}
    with database(args.url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE)
        for run in range(args.runs):
            for index, (name, measure) in enumerate(drivers.items()):
                for what, value in measure(url, args.rows, f"r{run}d{index}").items():
                    results[name].setdefault(what, []).append(value)
                    print(json.dumps({"run": run, "driver": name, what: round(value, 3)}))
    print()
    for name, measured in results.items():
        print(f"{name}:")
        for what, values in measured.items():
            shown = ", ".join(f"{v:,.1f}" for v in values)
            print(f"  {what:26} median {statistics.median(values):>12,.1f}   ({shown})")


if __name__ == "__main__":
    main()

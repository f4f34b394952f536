"""Shared catalog benchmark: many processes on one PostgreSQL catalog and one SQLite file.

    python benchmarks/run.py --only shared_catalog [--quick] [--shared-parts registration]
    python benchmarks/shared_catalog.py [--quick] [--runs 3] [--parts registration,feed]

Starts a throwaway PostgreSQL cluster with durable settings (``_pg.py``: PostgreSQL's
defaults, ``fsync`` and ``synchronous_commit`` on; the settings are reported) in ``/tmp``,
next to the SQLite files, and measures with the processes of
``shared_catalog_worker.py``, each group of processes timed over one common window:

* registrations: 1, 2, 4 and 8 processes registering new paths (each on its own
  location) into one fresh catalog, each ``register_path`` durable when it returns, and
  in ``manager.batch()`` blocks of :data:`BATCH`; the aggregate rate (all processes).
* lookups: 1, 2, 4 and 8 processes opened on one catalog of :data:`LOOKUP_REPLICAS`
  replicas, each running ``get_data_locations`` then ``get_source_location`` over a
  sample; the aggregate rate, next to the same processes with in-memory catalogs
  (``catalog=None``, each filled by its process beforehand).
* reopen: a new ``DataManager`` on a catalog of 10^6 replicas, until its first query
  answers.
* change feed: one process registers ``/feed/K`` 10-40 ms apart, another open manager
  polls ``get_data_locations`` every millisecond until it sees each; latency from the
  return of ``register_path`` to the answer that holds it.

Every measurement runs ``--runs`` times, PostgreSQL and SQLite (and memory) alternated,
and the median is shown; the feed's percentiles pool every sample of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _harness import (
    BENCHMARKS_DIR,
    REPO_ROOT,
    WORKER_GATE,
    Options,
    Section,
    SectionReport,
    Target,
    WorkerError,
    format_rate,
    format_ratio,
    print_report,
    progress,
    run_json,
    streamdata_env,
)
from _pg import bench_cluster, data_filesystem, server_pids, server_settings

TITLE = "Shared catalog: processes on one PostgreSQL catalog and one SQLite file"
WORKER = BENCHMARKS_DIR / "shared_catalog_worker.py"
STORES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
BATCH = 1_000  # registrations per manager.batch() block in the batched runs
LOOKUP_REPLICAS = 100_000
REOPEN_REPLICAS = 1_000_000
SCALE_TARGET = 4.0  # 8 processes' registration rate / 1 process's, on PostgreSQL
LOOKUP_TARGET = 1.5  # in-memory lookup rate / shared catalog's, at most
REOPEN_TARGET = 10.0  # seconds for 10^6 replicas
FEED_TARGET = 1.0  # seconds, p99
#: The parts of the section, in the order they run (``run.py --shared-parts``).
PARTS = ("registration", "lookup", "reopen", "feed")
TICKS = os.sysconf("SC_CLK_TCK")


class Catalogs:
    """Makes new empty catalogs: databases in the cluster, files in ``scratch``."""

    def __init__(self, cluster: Any, scratch: Path) -> None:
        self.cluster = cluster
        self._scratch = scratch

    def new(self, store: str) -> str:
        """The ``catalog=`` argument of a new, empty catalog of ``store``."""
        name = f"c{uuid.uuid4().hex[:12]}"
        if store == "postgresql":
            return str(self.cluster.create_database(name))
        return str(self._scratch / f"{name}.sqlite")

    def count_explicit(self, store: str, catalog: str) -> int:
        """How many replicas of a catalog are not implied directories."""
        query = "SELECT count(*) FROM replicas WHERE NOT implied"
        if store == "postgresql":
            return int(self.cluster.psql(query, catalog.rsplit("/", 1)[1]))
        with contextlib.closing(sqlite3.connect(catalog)) as db:
            return int(db.execute(query).fetchone()[0])


# -- running groups of worker processes ---------------------------------------------------------


def run_group(
    tree: Path,
    commands: list[list[str]],
    timeout: float = 900,
    during: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Start one worker per command, start them together once all are ready, collect.

    ``during`` is called with the start time (``time.time()``) once the workers have it.

    Raises:
        WorkerError: If a worker fails, times out or prints no record.
    """
    gate = WORKER_GATE.get()
    with gate() if gate else contextlib.nullcontext(), contextlib.ExitStack() as stack:
        processes = []
        for command in commands:
            errors = stack.enter_context(tempfile.TemporaryFile("w+"))
            argv = [sys.executable, str(WORKER), *command]
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=streamdata_env(tree),
            )
            stack.callback(_reap, process)
            processes.append((argv, process, errors))
        for argv, process, errors in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise WorkerError(_failure(argv, process, errors))
        start = time.time() + 0.2
        for _, process, _ in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start!r}\n")
            process.stdin.flush()
        if during is not None:
            during(start)
        return [_record(argv, process, errors, timeout) for argv, process, errors in processes]


def run_one(tree: Path, command: list[str], timeout: float = 1800) -> dict[str, Any]:
    """One worker that needs no start signal (fill, reopen).

    Raises:
        WorkerError: If it fails, times out or prints no record.
    """
    argv = [sys.executable, str(WORKER), *command]
    return run_json(argv, env=streamdata_env(tree), timeout=timeout)


def _record(argv: list[str], process: Any, errors: Any, timeout: float) -> dict[str, Any]:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"{' '.join(argv)}: timed out after {timeout:g} s") from exc
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise WorkerError(_failure(argv, process, errors))
    record: dict[str, Any] = json.loads(lines[-1])
    return record


def _failure(argv: list[str], process: Any, errors: Any) -> str:
    process.kill()
    process.wait()
    errors.seek(0)
    tail = "\n".join(errors.read().strip().splitlines()[-15:])
    return f"{' '.join(argv)} exited {process.returncode}:\n{tail}"


def _reap(process: Any) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


# -- the measurements ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle so far (all CPUs)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


class CPUWindow:
    """The CPU spent inside a group's timed window by the PostgreSQL server and the machine.

    Sampled from 0.3 s after the start to 0.2 s before the end (the workers' own CPU is
    in their records).
    """

    def __init__(self, cluster: Any, seconds: float) -> None:
        self._cluster = cluster
        self._seconds = seconds
        self.server = self.busy = self.elapsed = 0.0

    def __call__(self, start: float) -> None:
        time.sleep(max(0.0, start + 0.3 - time.time()))
        pids = server_pids(self._cluster)
        server, busy, begin = sum(map(cpu_seconds, pids)), busy_seconds(), time.time()
        time.sleep(max(0.0, start + self._seconds - 0.2 - time.time()))
        self.server = sum(map(cpu_seconds, pids)) - server
        self.busy, self.elapsed = busy_seconds() - busy, time.time() - begin


def alternated(runs: int, keys: list[str]) -> Iterator[str]:
    """``keys`` ``runs`` times, each run in the order of the last one reversed."""
    for run in range(runs):
        yield from keys if run % 2 == 0 else reversed(keys)


def measure_registrations(
    catalogs: Catalogs, tree: Path, counts: tuple[int, ...], runs: int, seconds: float
) -> dict[tuple[str, int, int], list[dict[str, float]]]:
    """Registrations by (store, batch, processes), one record per run: the aggregate
    rate and, on PostgreSQL, the CPU per registration of the clients and of the server,
    and how busy the machine was (CPUs).

    Raises:
        WorkerError: If a worker fails, or a catalog holds fewer rows than reported.
    """
    found: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    for batch in (0, BATCH):
        for count in counts:
            progress(f"shared: register, {count} process(es), batch {batch or 'none'}")
            for store in alternated(runs, list(STORES)):
                catalog = catalogs.new(store)
                options = ["--catalog", catalog, "--seconds", str(seconds), "--batch", str(batch)]
                commands = [["register", *options, "--worker", str(k)] for k in range(count)]
                window = CPUWindow(catalogs.cluster, seconds)
                records = run_group(tree, commands, during=window)
                registered = sum(r["registered"] for r in records)
                stored = catalogs.count_explicit(store, catalog)
                if stored < registered:
                    raise WorkerError(f"{catalog}: {stored} rows for {registered} registered")
                rate = registered / seconds
                per = 1e6 / max(rate * window.elapsed, 1e-9)  # microseconds per registration
                found.setdefault((store, batch, count), []).append(
                    {
                        "rate": rate,
                        "client_us": sum(r["cpu_seconds"] for r in records) * 1e6 / registered,
                        "server_us": window.server * per if store == "postgresql" else 0.0,
                        "busy_cpus": window.busy / max(window.elapsed, 1e-9),
                    }
                )
    return found


def measure_lookups(
    catalogs: Catalogs, tree: Path, counts: tuple[int, ...], runs: int, seconds: float, n: int
) -> dict[tuple[str, str, int, str], list[float]]:
    """Lookup rates by (store or memory, operation, processes, wall or cpu), one per run.

    wall: operations per second of all processes; cpu: operations per CPU-second of
    the processes (the cost of a lookup, whatever else runs on the machine).
    """
    filled = {}
    for store in STORES:
        progress(f"shared: fill a {store} catalog with {n:,} replicas for the lookups")
        filled[store] = catalogs.new(store)
        run_one(tree, ["fill", "--catalog", filled[store], "--n", str(n)])
    filled["memory"] = "memory"
    rates: dict[tuple[str, str, int, str], list[float]] = {}
    for count in counts:
        progress(f"shared: lookups, {count} process(es)")
        for store in alternated(runs, list(filled)):
            command = ["lookup", "--catalog", filled[store], "--n", str(n)]
            records = run_group(tree, [[*command, "--seconds", str(seconds)]] * count)
            for operation in records[0]["rates"]:
                done = sum(r["counts"][operation] for r in records)
                cpu = sum(r["cpu_seconds"][operation] for r in records)
                rates.setdefault((store, operation, count, "wall"), []).append(done / seconds)
                rates.setdefault((store, operation, count, "cpu"), []).append(done / max(cpu, 1e-9))
    return rates


def measure_reopen(
    catalogs: Catalogs, tree: Path, runs: int, n: int
) -> dict[str, list[dict[str, Any]]]:
    """Fill a catalog of ``n`` replicas per store, then reopen it ``runs`` times."""
    records: dict[str, list[dict[str, Any]]] = {}
    filled = {}
    for store in STORES:
        progress(f"shared: fill a {store} catalog with {n:,} replicas to reopen")
        filled[store] = catalogs.new(store)
        fill = run_one(tree, ["fill", "--catalog", filled[store], "--n", str(n)])
        records[store] = [{"phase": "fill", **fill}]
    progress(f"shared: reopen the {n:,}-replica catalogs ({runs} run(s) each)")
    for store in alternated(runs, list(STORES)):
        records[store].append(run_one(tree, ["reopen", "--catalog", filled[store]]))
    return records


def measure_feed(catalogs: Catalogs, tree: Path, runs: int, count: int) -> dict[str, list[float]]:
    """Change-feed latencies (seconds) per store, every sample of every run."""
    latencies: dict[str, list[float]] = {}
    progress(f"shared: change feed, {count} samples x {runs} run(s) per store")
    for number, store in enumerate(alternated(runs, list(STORES))):
        catalog = catalogs.new(store)
        common = ["--catalog", catalog, "--count", str(count)]
        writer, reader = run_group(
            tree, [["feed-write", *common, "--seed", str(number)], ["feed-read", *common]]
        )
        latencies.setdefault(store, []).extend(
            seen - returned
            for seen, returned in zip(reader["seen"], writer["returned"], strict=True)
        )
    return latencies


# -- the report ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median (0 for no values)."""
    return statistics.median(values) if values else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def processes_header(counts: tuple[int, ...]) -> list[str]:
    """Column names for the process counts."""
    return [f"{count} process{'es' if count > 1 else ''}" for count in counts]


def registration_report(
    report: SectionReport,
    found: dict[tuple[str, int, int], list[dict[str, float]]],
    counts: tuple[int, ...],
) -> None:
    """The registration tables (rates; where the CPU goes) and the scaling target."""

    def medians(store: str, batch: int, key: str) -> list[float]:
        return [median([r[key] for r in found[(store, batch, count)]]) for count in counts]

    rows = []
    for store, label in STORES.items():
        for batch, mode in ((0, "one call at a time"), (BATCH, f"batches of {BATCH:,}")):
            rates = medians(store, batch, "rate")
            ratio = rates[-1] / rates[0] if rates[0] else 0.0
            rows.append([label, mode, *(format_rate(m) for m in rates), format_ratio(ratio)])
    header = ["catalog", "registrations (paths/s, all processes)", *processes_header(counts)]
    report.tables.append(([*header, f"{counts[-1]} / 1"], rows))
    cpus = os.cpu_count() or 1
    client, server = medians("postgresql", 0, "client_us"), medians("postgresql", 0, "server_us")
    cpu_rows = [
        ["client processes' CPU per registration", *(f"{v:,.0f} us" for v in client)],
        [
            "PostgreSQL's CPU per registration (all its processes)",
            *(f"{v:,.0f} us" for v in server),
        ],
        [
            f"whole machine busy (CPUs, of {cpus})",
            *(f"{v:.2f}" for v in medians("postgresql", 0, "busy_cpus")),
        ],
    ]
    report.tables.append((["PostgreSQL, one call at a time", *processes_header(counts)], cpu_rows))
    report.raw.extend(
        {"phase": "register", "store": store, "batch": batch, "processes": count, "runs": runs}
        for (store, batch, count), runs in found.items()
    )
    scaling_target(report, medians("postgresql", 0, "rate"), medians, counts)


def scaling_target(
    report: SectionReport,
    rates: list[float],
    medians: Callable[[str, int, str], list[float]],
    counts: tuple[int, ...],
) -> None:
    """Judge the PostgreSQL scaling target; say what bounds it on this machine."""
    ratio = rates[-1] / rates[0] if rates[0] else 0.0
    client, server = medians("postgresql", 0, "client_us"), medians("postgresql", 0, "server_us")
    busy_one = (client[0] + server[0]) * rates[0] / 1e6  # CPUs one process keeps busy
    cpus = os.cpu_count() or 1
    report.targets.append(
        Target(
            f"PostgreSQL registrations, one call at a time: 8 processes >= {SCALE_TARGET:g}x "
            "1 process",
            ratio >= SCALE_TARGET if counts[-1] == 8 else None,
            f"{ratio:.2f}x ({format_rate(rates[-1])} vs {format_rate(rates[0])} paths/s"
            f"{'' if counts[-1] == 8 else f', {counts[-1]} processes (--quick)'}); "
            f"one process keeps {busy_one:.2f} CPUs busy ({client[0] + server[0]:,.0f} us of "
            f"client and server CPU per registration): on {cpus} CPUs at most "
            f"{cpus / max(busy_one, 1e-9):.1f}x even if that cost stayed flat; at "
            f"{counts[-1]} processes it is {client[-1] + server[-1]:,.0f} us",
        )
    )


def lookup_report(
    report: SectionReport,
    rates: dict[tuple[str, str, int, str], list[float]],
    counts: tuple[int, ...],
) -> None:
    """The lookup table and its targets: within 1.5x of in-memory at every count.

    Judged per CPU-second (the cost of a lookup), as the catalog section does: on a
    shared 2-core machine the wall-clock rate of a group moves with the other work by
    more than the difference measured; the wall-clock ratios are in the table too.
    """
    rows = []
    for operation in ("get_data_locations", "get_source_location"):

        def medians(store: str, kind: str, operation: str = operation) -> list[float]:
            return [median(rates[(store, operation, count, kind)]) for count in counts]

        rows.append([operation, "in-memory", *(format_rate(m) for m in medians("memory", "wall"))])
        for store, label in STORES.items():
            ratios = {}
            for kind in ("wall", "cpu"):
                pairs = zip(medians(store, kind), medians("memory", kind), strict=True)
                ratios[kind] = [shared / memory if memory else 0.0 for shared, memory in pairs]
            rows.append([operation, label, *(format_rate(m) for m in medians(store, "wall"))])
            for kind, wording in (("wall", "/ in-memory"), ("cpu", "/ in-memory, per CPU-second")):
                rows.append([operation, f"{label} {wording}", *map(format_ratio, ratios[kind])])
            worst = min(ratios["cpu"])
            report.targets.append(
                Target(
                    f"{operation} on {label} within {LOOKUP_TARGET:g}x of in-memory "
                    f"({', '.join(map(str, counts))} processes)",
                    worst >= 1 / LOOKUP_TARGET,
                    f"worst {format_ratio(worst)} of the in-memory rate per CPU-second "
                    f"(wall clock: worst {format_ratio(min(ratios['wall']))})",
                )
            )
    report.raw.extend(
        {"phase": "lookup", "catalog": store, "operation": op, "processes": count, kind: values}
        for (store, op, count, kind), values in rates.items()
    )
    header = ["lookup", "catalog (ops/s, all processes)", *processes_header(counts)]
    report.tables.append((header, rows))


def reopen_report(report: SectionReport, records: dict[str, list[dict[str, Any]]], n: int) -> None:
    """The reopen table and its target."""
    rows = []
    for store, label in STORES.items():
        fill, *opens = records[store]
        seconds = median([r["open_seconds"] for r in opens])
        replicas = opens[0]["replicas"]
        count = "n/a" if replicas is None else f"{replicas:,}"
        rows.append(
            [
                label,
                count,
                f"{seconds:.2f} s",
                f"{opens[0]['rss_growth_mib']:,.0f} MiB",
                f"{format_rate(fill['rate'])} replicas/s",
            ]
        )
        if n >= REOPEN_REPLICAS:
            met: bool | None = seconds < REOPEN_TARGET
            detail = f"{seconds:.2f} s ({count} replicas incl. implied directories)"
        else:
            met = None
            scaled = seconds * REOPEN_REPLICAS / n
            detail = (
                f"{seconds:.2f} s for {count}; 10^6 not measured "
                f"(linear extrapolation: {scaled:.1f} s)"
            )
        report.targets.append(
            Target(f"{label}: reopen of 10^6 replicas < {REOPEN_TARGET:g} s", met, detail)
        )
    report.raw.extend(
        {"phase": "reopen", "store": store, **record}
        for store, store_records in records.items()
        for record in store_records
    )
    header = [
        "catalog",
        "replicas",
        "reopen until the first answer (median)",
        "RSS growth",
        f"fill (batches of {BATCH:,} files)",
    ]
    report.tables.append((header, rows))


def feed_report(report: SectionReport, latencies: dict[str, list[float]]) -> None:
    """The change-feed table and its target."""
    rows = []
    for store, label in STORES.items():
        values = latencies[store]
        p50, p99 = median(values), percentile(values, 0.99)
        rows.append(
            [
                label,
                f"{len(values):,}",
                f"{p50 * 1000:.1f} ms",
                f"{p99 * 1000:.1f} ms",
                f"{max(values) * 1000:.1f} ms",
            ]
        )
        report.targets.append(
            Target(
                f"{label}: change feed p99 < {FEED_TARGET:g} s",
                p99 < FEED_TARGET,
                f"p99 {p99 * 1000:.0f} ms, median {p50 * 1000:.0f} ms ({len(values):,} samples)",
            )
        )
    report.raw.extend(
        {
            "phase": "feed",
            "store": store,
            "samples": len(values),
            "percentiles_ms": {
                str(p): round(percentile(values, p / 100) * 1000, 2) for p in (50, 90, 99, 100)
            },
        }
        for store, values in latencies.items()
    )
    header = ["catalog", "samples", "latency median", "latency p99", "latency max"]
    report.tables.append((header, rows))


def section_notes(report: SectionReport, cluster: Any, runs: int, seconds: float) -> None:
    """How the numbers were made, and the PostgreSQL settings."""
    settings = server_settings(cluster)
    filesystem = data_filesystem(cluster)
    report.appendix.append(
        (
            "PostgreSQL settings",
            ["setting", "value"],
            [[name, value] for name, value in settings] + [["data directory", filesystem]],
        )
    )
    report.notes.extend(
        [
            f"Each number is the median of {runs} run(s); the stores (and memory) alternate "
            "run by run. Every process of a group opens its manager first, then all start at "
            f"one instant and count what returned within the window ({seconds:g} s per "
            "registration run and per lookup operation).",
            "Registrations: each process registers new paths on a location of its own "
            "(`/wK/dNNNNN/fNNNNNNN`, ancestors implied), in a fresh catalog; afterwards the "
            "catalog is checked to hold at least every registration counted. One call at a "
            "time: each `register_path` is durable (committed, WAL flushed) when it returns. "
            f"Batches: `with manager.batch():` around every {BATCH:,} calls, counted when the "
            "block exits. Every process also applies the others' changes (the feed), as a "
            "shared catalog must.",
            f"Lookups: a catalog of {LOOKUP_REPLICAS:,} replicas (N/2 files on 2 of 10 "
            "locations, related) opened by every process; a 20,000-path sample; "
            "`get_source_location(path, 'elsewhere')` (no replica on that deployment). "
            "In-memory: the same processes with `catalog=None`, each filled by itself.",
            "PostgreSQL: a throwaway cluster (`streamdata/testing/_postgres.py`) in /tmp "
            "with PostgreSQL's default durability (settings below), over TCP on 127.0.0.1; "
            "SQLite: WAL, synchronous=NORMAL, files in /tmp.",
        ]
    )


def run_section(options: Options) -> SectionReport:
    """Registrations, lookups, reopen and change feed on PostgreSQL and SQLite."""
    report = SectionReport(key="shared_catalog", title=TITLE)
    quick, runs, tree = options.quick, options.repeats, options.tree
    counts = (1, 2) if quick else (1, 2, 4, 8)
    seconds = 1.0 if quick else 3.0
    lookup_n = 10_000 if quick else LOOKUP_REPLICAS
    reopen_n = 100_000 if quick else REOPEN_REPLICAS
    with (
        tempfile.TemporaryDirectory(prefix="streamdata-bench-shared-", dir="/tmp") as scratch,
        bench_cluster() as cluster,
    ):
        catalogs = Catalogs(cluster, Path(scratch))
        section_notes(report, cluster, runs, seconds)
        steps: list[tuple[str, Callable[[], None]]] = [
            (
                "registration",
                lambda: registration_report(
                    report, measure_registrations(catalogs, tree, counts, runs, seconds), counts
                ),
            ),
            (
                "lookup",
                lambda: lookup_report(
                    report,
                    measure_lookups(catalogs, tree, counts, runs, seconds, lookup_n),
                    counts,
                ),
            ),
            (
                "reopen",
                lambda: reopen_report(
                    report, measure_reopen(catalogs, tree, runs, reopen_n), reopen_n
                ),
            ),
            (
                "feed",
                lambda: feed_report(
                    report, measure_feed(catalogs, tree, runs, 60 if quick else 400)
                ),
            ),
        ]
        chosen = {part.strip() for part in options.shared_parts.split(",")}
        unknown = chosen.difference(PARTS)
        if unknown:
            raise ValueError(f"unknown shared_catalog parts: {', '.join(sorted(unknown))}")
        for name, step in steps:
            if name not in chosen:
                report.notes.append(f"{name} part not run (--shared-parts)")
                continue
            try:
                step()
            except WorkerError as exc:
                report.notes.append(f"{name} part failed: {exc}")
    return report


SECTION = Section(key="shared_catalog", title=TITLE, run=run_section)


def main(argv: list[str] | None = None) -> None:
    """Run the section alone and print its tables (RESULTS.md untouched)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    args = parser.parse_args(argv)
    options = Options(
        quick=args.quick,
        streamflow_python="",
        repeats=1 if args.quick else args.runs,
        command=" ".join(["python", *sys.argv]),
        tree=Path(os.environ.get("STREAMDATA_TREE", REPO_ROOT)),
        shared_parts=args.parts,
    )
    print_report(run_section(options))


if __name__ == "__main__":
    main()

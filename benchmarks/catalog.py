"""Catalog benchmark: the same replica-catalog workload on streamdata or on StreamFlow.

Runs under either interpreter (streamdata's, or a virtualenv holding ``streamflow``) and
prints one JSON line::

    python benchmarks/catalog.py --impl streamdata --n 100000
    /work/sfvenv/bin/python benchmarks/catalog.py --impl streamflow --n 100000

Workload (identical for both implementations):

* 10 locations, deployment ``dep{k}``, name ``node{k}`` (not local);
* ``N / 2`` logical files ``/data/d{j // 100:05d}/f{j:07d}``, each registered on location
  ``k = j % 10`` and on ``k + 1 (mod 10)``, the two replicas related with
  ``register_relation``: N registrations and N / 2 relations in all;
* on a seeded random sample of ``M = min(N, 20000)`` of those replicas, in this order:
  ``get_data_locations(path)``, ``get_source_location(path, dst)`` with ``dst`` a
  deployment that holds no replica of the path (so the rule falls to the random tier),
  and ``invalidate_location(location, path)``. The two read-only lookups make
  ``LOOKUP_PASSES`` passes over the sample and report the fastest; the invalidation, which
  changes the catalog, makes one.

Rates are per CPU-second of the process (``time.process_time``): on a shared machine that
leaves out the time spent waiting for a CPU; wall-clock rates are recorded alongside.

Memory is the growth of the process' resident set (``VmRSS`` in ``/proc/self/status``,
after ``gc.collect()``) across the registrations, divided by N, measured without
tracemalloc so that it does not slow the timed loops. Run each size in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import importlib
import inspect
import json
import os
import platform
import pstats
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _harness import (
    BENCHMARKS_DIR,
    Options,
    Section,
    SectionReport,
    Target,
    WorkerError,
    format_rate,
    format_ratio,
    progress,
    run_json,
    streamdata_env,
)

LOCATIONS = 10
SAMPLE_MAX = 20_000
LOOKUP_PASSES = 5
LIBRARY_PREFIX = r"^.*/(site-packages|lib/python\d+\.\d+)/"
SEED = 20_240_601
IMPLS = ("streamdata", "streamflow")


def file_path(j: int) -> str:
    """The path of logical file ``j``: 100 files per directory."""
    return f"/data/d{j // 100:05d}/f{j:07d}"


def replica_of(index: int) -> tuple[int, str]:
    """Location number and path of replica ``index`` (two replicas per logical file)."""
    j = index // 2
    return (j + index % 2) % LOCATIONS, file_path(j)


def foreign_deployment(index: int) -> str:
    """A deployment holding no replica of replica ``index``'s file."""
    return f"dep{(index // 2 + LOCATIONS // 2) % LOCATIONS}"


@dataclasses.dataclass
class Driver:
    """The manager under test and the few things the workload needs from its package."""

    impl: str
    version: str
    manager: Any
    locations: list[Any]
    close: Callable[[], Any]


def streamdata_driver() -> Driver:
    """streamdata's DataManager, in-memory catalog, no connectors (none is contacted)."""
    import streamdata

    locations = [
        streamdata.ExecutionLocation(name=f"node{k}", deployment=f"dep{k}")
        for k in range(LOCATIONS)
    ]
    manager = streamdata.DataManager(rng=random.Random(SEED))
    version = getattr(streamdata, "__version__", "unknown")
    return Driver("streamdata", version, manager, locations, manager.close)


class _StreamFlowContext:
    """The minimal stand-in for ``StreamFlowContext`` that ``DefaultDataManager`` uses.

    ``register_path`` calls ``context.checkpoint_manager.register`` (the dummy manager does
    nothing) and builds a ``StreamFlowPath``, whose remote flavour asks
    ``context.deployment_manager.get_connector(deployment)`` (an empty
    ``DefaultDeploymentManager`` answers None; no connector is ever used here).
    """

    def __init__(self) -> None:
        recovery = importlib.import_module("streamflow.recovery.checkpoint_manager")
        deployment = importlib.import_module("streamflow.deployment.manager")
        self.config: dict[str, Any] = {}
        self.checkpoint_manager = recovery.DummyCheckpointManager(self)
        self.deployment_manager = deployment.DefaultDeploymentManager(self)


def streamflow_driver() -> Driver:
    """StreamFlow's ``DefaultDataManager`` on the minimal context above.

    StreamFlow is imported by name: it lives in another virtualenv, so type checkers of this
    repository cannot see it (its objects are ``Any`` here).
    """
    core = importlib.import_module("streamflow.core.deployment")
    data = importlib.import_module("streamflow.data.manager")
    version = importlib.import_module("streamflow.version").VERSION
    locations = [
        core.ExecutionLocation(name=f"node{k}", deployment=f"dep{k}") for k in range(LOCATIONS)
    ]
    manager = data.DefaultDataManager(_StreamFlowContext())
    return Driver("streamflow", version, manager, locations, manager.close)


def rss_bytes(field: str = "VmRSS") -> int:
    """A memory figure of this process from ``/proc/self/status``, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def settled_rss() -> int:
    """Resident set size after a full garbage collection."""
    gc.collect()
    return rss_bytes()


@contextmanager
def profiled(label: str, profile: frozenset[str], sink: dict[str, Any]) -> Iterator[None]:
    """cProfile the block when ``label`` is in ``profile``; top functions go to ``sink``.

    The full listing is printed on stderr; ``sink[label]`` gets the heaviest functions by
    cumulative time, as shares of the profiled time.
    """
    if label not in profile or label in sink:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        print(f"\n===== cProfile: {label} =====", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
        sink[label] = profile_rows(pstats.Stats(profiler))


def profile_rows(stats: pstats.Stats, top: int = 15) -> list[dict[str, Any]]:
    """The ``top`` functions by cumulative time, with self and cumulative shares in %."""
    total: float = stats.total_tt  # type: ignore[attr-defined]
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    table = stats.stats  # type: ignore[attr-defined]
    rows: list[dict[str, Any]] = [
        {
            "function": short_name(*where),
            "calls": calls,
            "self_pct": round(100 * own / total, 1),
            "cumulative_pct": round(100 * cumulative / total, 1),
        }
        for where, (_, calls, own, cumulative, _) in table.items()
    ]
    rows.sort(key=lambda row: row["cumulative_pct"], reverse=True)
    return [row for row in rows[:top] if row["cumulative_pct"] >= 0.5]


def short_name(filename: str, line: int, function: str) -> str:
    """``package/module.py:line(function)`` without the site-packages or checkout prefix."""
    if filename == "~":
        return function  # a built-in
    if re.search(LIBRARY_PREFIX, filename):
        filename = re.sub(LIBRARY_PREFIX, "", filename)
    else:
        filename = os.path.relpath(filename, BENCHMARKS_DIR.parent)
    return f"{filename}:{line}({function})"


def build(driver: Driver, n: int) -> None:
    """N registrations and N / 2 relations (the timed "register" phase)."""
    register_path = driver.manager.register_path
    register_relation = driver.manager.register_relation
    locations = driver.locations
    for j in range(n // 2):
        path = file_path(j)
        k = j % LOCATIONS
        first = register_path(locations[k], path)
        second = register_path(locations[(k + 1) % LOCATIONS], path)
        register_relation(first, second)


@dataclasses.dataclass(frozen=True)
class Sample:
    """The sampled replicas, spelled out before the timed loops so they time only the calls."""

    paths: list[str]
    locations: list[Any]
    foreign_deployments: list[str]

    @classmethod
    def of(cls, driver: Driver, indices: list[int]) -> Sample:
        """The paths, locations and foreign deployments of replicas ``indices``."""
        replicas = [replica_of(index) for index in indices]
        return cls(
            paths=[path for _, path in replicas],
            locations=[driver.locations[k] for k, _ in replicas],
            foreign_deployments=[foreign_deployment(index) for index in indices],
        )


def lookup_all(driver: Driver, sample: Sample) -> int:
    """``get_data_locations`` on every sampled path; returns the replicas seen."""
    get_data_locations = driver.manager.get_data_locations
    seen = 0
    for path in sample.paths:
        seen += len(get_data_locations(path))
    return seen


async def choose_all(driver: Driver, sample: Sample) -> int:
    """``get_source_location`` towards a foreign deployment; returns how many were found."""
    get_source_location = driver.manager.get_source_location
    queries = zip(sample.paths, sample.foreign_deployments, strict=True)
    found = 0
    if inspect.iscoroutinefunction(get_source_location):  # StreamFlow: async
        for path, deployment in queries:
            found += await get_source_location(path, deployment) is not None
        return found
    for path, deployment in queries:
        found += get_source_location(path, deployment) is not None
    return found


def invalidate_all(driver: Driver, sample: Sample) -> None:
    """``invalidate_location`` of every sampled replica."""
    invalidate_location = driver.manager.invalidate_location
    for location, path in zip(sample.locations, sample.paths, strict=True):
        invalidate_location(location, path)


@dataclasses.dataclass
class Phase:
    """CPU and wall-clock seconds of each pass of one timed phase."""

    cpu: list[float]
    wall: list[float]

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Time one pass."""
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)


def record(result: dict[str, Any], name: str, phase: Phase, ops: int) -> None:
    """Rates of the best pass: per CPU-second of this process (main figure) and per second.

    CPU time leaves out the time the process waited for a CPU while other work ran, so it
    is what wall time would be on an idle machine; the wall rate is kept for reference.
    """
    result[f"{name}_ops_s"] = ops / min(phase.cpu)
    result[f"{name}_wall_ops_s"] = ops / min(phase.wall)
    result.setdefault("seconds", {})[name] = {"cpu": phase.cpu, "wall": phase.wall}


async def run(impl: str, n: int, profile: frozenset[str]) -> dict[str, Any]:
    """Build the workload on ``impl``, time every phase, return the result record."""
    driver = streamdata_driver() if impl == "streamdata" else streamflow_driver()
    indices = random.Random(SEED).sample(range(n), min(n, SAMPLE_MAX))
    baseline = settled_rss()
    result: dict[str, Any] = {"impl": impl, "version": driver.version, "n": n, "m": len(indices)}
    profiles: dict[str, Any] = {}

    phase = Phase([], [])
    with phase.timing(), profiled("register", profile, profiles):
        build(driver, n)
    record(result, "register", phase, n)
    result["relations"] = n // 2
    result["peak_rss_bytes"] = rss_bytes("VmHWM")
    built = settled_rss()
    result["rss_delta_bytes"] = built - baseline
    result["bytes_per_replica"] = (built - baseline) / n
    sample = Sample.of(driver, indices)

    phase = Phase([], [])
    for _ in range(LOOKUP_PASSES):
        with phase.timing(), profiled("get_data_locations", profile, profiles):
            seen = lookup_all(driver, sample)
    record(result, "get_data_locations", phase, len(indices))
    result["replicas_per_lookup"] = seen / len(indices)

    phase = Phase([], [])
    for _ in range(LOOKUP_PASSES):
        with phase.timing(), profiled("get_source_location", profile, profiles):
            found = await choose_all(driver, sample)
    record(result, "get_source_location", phase, len(indices))
    result["sources_found"] = found

    phase = Phase([], [])
    with phase.timing(), profiled("invalidate_location", profile, profiles):
        invalidate_all(driver, sample)
    record(result, "invalidate_location", phase, len(indices))

    if profiles:
        result["profile"] = profiles
    result["python"] = platform.python_version()
    closing = driver.close()
    if inspect.isawaitable(closing):
        await closing
    return result


# -- the section run by run.py ----------------------------------------------------------------

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
TARGET_SIZE = 100_000
RATE_TARGET = 3.0
MEMORY_TARGET = 0.5
RATES = (
    ("register_ops_s", "register_path + register_relation (ops/s)"),
    ("get_data_locations_ops_s", "get_data_locations (ops/s)"),
    ("get_source_location_ops_s", "get_source_location (ops/s)"),
    ("invalidate_location_ops_s", "invalidate_location (ops/s)"),
)
MEMORY = ("bytes_per_replica", "memory per replica (bytes, RSS delta / N)")
PEAK = ("peak_rss_bytes", "peak RSS of the process (MiB)")


NOTES = (
    "Each (implementation, N) runs in a fresh interpreter; below N=10^6 the median of "
    "`--repeats` processes (default 3) is shown, the two implementations taking turns; at "
    "10^6 a single process each. Within a process, the two read-only lookups report the "
    "fastest of 5 passes over the sample; register and invalidate make one pass.",
    "Workload: N registrations over 10 locations, N/2 logical files each on locations k and "
    "k+1 related with `register_relation`; lookups and invalidations on a seeded sample of "
    "min(N, 20000) replicas; `get_source_location` asks for a deployment holding no replica, "
    "so both fall through to their last tier.",
    "StreamFlow is driven through `DefaultDataManager(context)` where `context` has only "
    "`checkpoint_manager = DummyCheckpointManager(context)` and `deployment_manager = "
    "DefaultDeploymentManager(context)` (empty); its locations are "
    "`streamflow.core.deployment.ExecutionLocation(name, deployment)`; its "
    "`get_source_location` is a coroutine and is awaited, the other calls are synchronous.",
    "Both replicas of a file share one path, so StreamFlow's `register_relation` finds each "
    "alias already present in the path node and stores nothing; its cost is the lookups.",
    "Rates are operations per CPU-second of the worker (`time.process_time`), which leaves "
    "out time spent waiting for a CPU while other work runs on the machine; wall-clock rates "
    "are in the raw records, and the targets show the wall-clock ratio and the range of the "
    "ratio over the paired runs.",
    "Memory per replica: VmRSS growth across the registrations after `gc.collect()`, "
    "divided by N (no tracemalloc, so timings are undisturbed); peak RSS includes the "
    "interpreter and imports.",
)


def worker_command(impl: str, n: int, options: Options) -> list[str]:
    """The command line of one catalog worker."""
    python = sys.executable if impl == "streamdata" else options.streamflow_python
    return [python, str(BENCHMARKS_DIR / "catalog.py"), "--impl", impl, "--n", str(n)]


def measure_size(
    n: int, impls: list[str], options: Options, report: SectionReport
) -> dict[str, dict[str, Any] | None]:
    """Median record per implementation over ``repeats`` fresh processes each.

    The implementations take turns (A B, B A, ...) so that both see the same share of
    whatever else the machine is doing. At 10^6 and above, one process each.
    """
    repeats = 1 if n >= 1_000_000 else options.repeats
    records: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    failed: set[str] = set()
    for attempt in range(repeats):
        for impl in impls if attempt % 2 == 0 else impls[::-1]:
            if impl in failed:
                continue
            progress(f"catalog: {impl} N={n:,} run {attempt + 1}/{repeats}")
            env = streamdata_env(options.tree) if impl == "streamdata" else None
            try:
                records[impl].append(run_json(worker_command(impl, n, options), env=env))
            except WorkerError as exc:
                report.notes.append(f"{impl} N={n:,} failed: {exc}")
                failed.add(impl)
    return {impl: None if impl in failed else merge(runs) for impl, runs in records.items()}


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record whose reported metrics are the medians over ``records``."""
    merged = dict(records[0])
    walls = [wall_key(name) for name, _ in RATES]
    for key in (*(name for name, _ in RATES), *walls, MEMORY[0], PEAK[0]):
        merged[key] = statistics.median(record[key] for record in records)
    merged["runs"] = len(records)
    merged["per_run"] = {key: [record[key] for record in records] for key, _ in RATES}
    return merged


def wall_key(key: str) -> str:
    """The wall-clock twin of a rate key (``x_ops_s`` -> ``x_wall_ops_s``)."""
    return key.replace("_ops_s", "_wall_ops_s")


def comparison_rows(
    n: int, ours: dict[str, Any] | None, theirs: dict[str, Any] | None
) -> list[list[str]]:
    """Table rows for one size: each metric for both implementations and their ratio."""
    metrics = [(key, label, 1) for key, label in (*RATES, MEMORY)] + [(*PEAK, 1024**2)]
    rows = []
    for key, label, scale in metrics:
        mine = ours[key] / scale if ours else None
        other = theirs[key] / scale if theirs else None
        rows.append(
            [
                f"{n:,}",
                label,
                "n/a" if mine is None else format_rate(mine),
                "n/a" if other is None else format_rate(other),
                "n/a" if mine is None or not other else format_ratio(mine / other),
            ]
        )
    return rows


def _target(text: str, ratio: float | None, met: Callable[[float], bool]) -> Target:
    return Target(text, None if ratio is None else met(ratio), _maybe(ratio, format_ratio))


def _maybe(value: float | None, formatter: Callable[[float], str]) -> str:
    return "n/a" if value is None else formatter(value)


def judge(n: int, ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> list[Target]:
    """The issue's catalog targets, judged on the records of size ``n``."""

    def ratio(key: str) -> float | None:
        return ours[key] / theirs[key] if ours and theirs else None

    targets = []
    for key, label in RATES:
        target = _target(
            f"{label.split(' (')[0]} >= {RATE_TARGET:g}x StreamFlow at N={n:,}",
            ratio(key),
            lambda value: value >= RATE_TARGET,
        )
        if ours and theirs:
            target = dataclasses.replace(target, detail=target.detail + spread(key, ours, theirs))
        targets.append(target)
    targets.append(
        _target(
            f"memory per replica <= {MEMORY_TARGET:g}x StreamFlow at N={n:,}",
            ratio(MEMORY[0]),
            lambda value: value <= MEMORY_TARGET,
        )
    )
    return targets


def spread(key: str, ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """The wall-clock ratio and the range of the ratio over the paired runs."""
    wall = format_ratio(ours[wall_key(key)] / theirs[wall_key(key)])
    pairs = zip(ours["per_run"][key], theirs["per_run"][key], strict=False)
    ratios = [mine / other for mine, other in pairs]
    low, high = format_ratio(min(ratios)), format_ratio(max(ratios))
    return f" (wall clock {wall}; run pairs {low}-{high})" if len(ratios) > 1 else f" (wall {wall})"


def run_section(options: Options) -> SectionReport:
    """Both implementations at every size, each run in its own interpreter."""
    report = SectionReport(key="catalog", title="Replica catalog: streamdata vs StreamFlow")
    report.notes.extend(NOTES)
    have_streamflow = os.access(options.streamflow_python, os.X_OK)
    if not have_streamflow:
        report.notes.append(f"StreamFlow interpreter {options.streamflow_python} not found.")
    rows: list[list[str]] = []
    judged: tuple[int, dict[str, Any] | None, dict[str, Any] | None] | None = None
    impls = ["streamdata", "streamflow"] if have_streamflow else ["streamdata"]
    for n in QUICK_SIZES if options.quick else SIZES:
        measured = measure_size(n, impls, options, report)
        ours, theirs = measured["streamdata"], measured.get("streamflow")
        report.raw.extend(record for record in (ours, theirs) if record)
        rows.extend(comparison_rows(n, ours, theirs))
        if judged is None or n <= TARGET_SIZE:
            judged = (n, ours, theirs)
        if theirs:
            report.notes.append(
                f"StreamFlow {theirs['version']} under Python {theirs['python']}; "
                f"streamdata under Python {ours['python'] if ours else '?'}."
            )
    header = ["N", "metric", "streamdata", "StreamFlow", "streamdata / StreamFlow"]
    report.tables.append((header, rows))
    if judged:
        report.targets.extend(judge(*judged))
        if options.profile:
            profile_misses(judged[0], report, options.tree)
    report.notes = list(dict.fromkeys(report.notes))
    return report


PHASES = {
    "register_ops_s": "register",
    "get_data_locations_ops_s": "get_data_locations",
    "get_source_location_ops_s": "get_source_location",
    "invalidate_location_ops_s": "invalidate_location",
}


def profile_misses(n: int, report: SectionReport, tree: Path) -> None:
    """cProfile streamdata's phases that missed their rate target, in one more process."""
    missed = [
        PHASES[key]
        for (key, _), target in zip(RATES, report.targets, strict=False)
        if target.met is False
    ]
    if not missed:
        return
    progress(f"catalog: profiling streamdata N={n:,}: {', '.join(missed)}")
    command = [sys.executable, str(BENCHMARKS_DIR / "catalog.py"), "--impl", "streamdata"]
    command += ["--n", str(n), *(f"--profile={phase}" for phase in missed)]
    try:
        record = run_json(command, env=streamdata_env(tree))
    except WorkerError as exc:
        report.notes.append(f"profiling failed: {exc}")
        return
    header = ["function", "calls", "self %", "cumulative %"]
    for phase in missed:
        rows = [
            [
                f"`{row['function']}`",
                f"{row['calls']:,}",
                f"{row['self_pct']}",
                f"{row['cumulative_pct']}",
            ]
            for row in record["profile"][phase]
        ]
        heading = (
            f"cProfile of streamdata `{phase}` at N={n:,} (missed target; top by cumulative time)"
        )
        report.appendix.append((heading, header, rows))


SECTION = Section("catalog", "Replica catalog: streamdata vs StreamFlow", run_section)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--n", type=int, required=True, help="number of registrations (even)")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=("register", "get_data_locations", "get_source_location", "invalidate_location"),
        help="cProfile this phase (top functions on stderr); may be repeated",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run one benchmark and print its JSON record on one line."""
    args = parse_args(argv)
    if args.n < 2 or args.n % 2:
        raise SystemExit("--n must be an even number >= 2")
    print(json.dumps(asyncio.run(run(args.impl, args.n, frozenset(args.profile)))))


if __name__ == "__main__":
    main()

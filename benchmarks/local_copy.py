"""Local copy benchmark: streamdata's DataManager between two local "sites" vs ``cp -a``.

Two deployments, each a :class:`streamdata.LocalConnector`, share this host's filesystem.
Each streamdata copy is ``transfer_data(site_a, src, [site_b], dst, writable=True)`` on a
fresh ``DataManager`` (so a real, independent copy is made, never a link); each baseline
copy is ``cp -a src dst``. Both run in the same process, alternating which goes first,
after one untimed warm-up of each, with ``sync`` before every timed copy and the copy
removed after it (untimed). The page cache cannot be dropped, so both read warm data.

Cases: (a) one 1 GiB file, (b) 10,000 files of 4 KiB in a tree, (c) 1,000 files of 1 MiB.
Prints one JSON line::

    python benchmarks/local_copy.py [--quick] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _harness import (
    BENCHMARKS_DIR,
    Options,
    Section,
    SectionReport,
    Target,
    WorkerError,
    format_ratio,
    progress,
    run_json,
    streamdata_env,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
RATIO_TARGET = 0.8
FILES_PER_DIRECTORY = 100


@dataclass(frozen=True)
class Case:
    """One dataset: ``files`` files of ``size`` bytes (a lone file when ``tree`` is False)."""

    key: str
    label: str
    files: int
    size: int
    tree: bool
    unit: str  # "MB/s" or "files/s"

    @property
    def total_bytes(self) -> int:
        """Bytes of file data in the dataset."""
        return self.files * self.size


CASES = (
    Case("a", "one 1 GiB file", 1, GiB, tree=False, unit="MB/s"),
    Case("b", "10,000 files of 4 KiB", 10_000, 4 * KiB, tree=True, unit="files/s"),
    Case("c", "1,000 files of 1 MiB", 1_000, MiB, tree=True, unit="MB/s"),
)
QUICK_CASES = (
    Case("a", "one 64 MiB file (quick)", 1, 64 * MiB, tree=False, unit="MB/s"),
    Case("b", "1,000 files of 4 KiB (quick)", 1_000, 4 * KiB, tree=True, unit="files/s"),
    Case("c", "100 files of 1 MiB (quick)", 100, MiB, tree=True, unit="MB/s"),
)


def write_file(path: Path, size: int, block: bytes) -> None:
    """A file of ``size`` bytes of incompressible data (``block`` repeated)."""
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            chunk = block[: min(remaining, len(block))]
            handle.write(chunk)
            remaining -= len(chunk)


def make_dataset(case: Case, root: Path) -> Path:
    """Create the case's data under ``root``; returns the path to copy."""
    block = os.urandom(min(case.size, 16 * MiB))
    root.mkdir(parents=True, exist_ok=True)
    if not case.tree:
        target = root / f"{case.key}.bin"
        write_file(target, case.size, block)
        return target
    tree = root / f"tree-{case.key}"
    for index in range(case.files):
        directory = tree / f"d{index // FILES_PER_DIRECTORY:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        # vary the first bytes so that no two files are identical
        data = index.to_bytes(8, "little") + block[8 : case.size]
        (directory / f"f{index:06d}.dat").write_bytes(data)
    return tree


def footprint(path: Path) -> tuple[int, int]:
    """(number of regular files, total bytes) under ``path``; links not followed."""
    if path.is_file():
        return 1, path.stat().st_size
    files = size = 0
    for directory, _, names in os.walk(path):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            files += 1
            size += info.st_size
    return files, size


def remove(path: Path) -> None:
    """Delete a copy (file or tree)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def copy_with_cp(src: Path, dst: Path) -> None:
    """The baseline: ``cp -a src dst``."""
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)


async def copy_with_streamdata(src: Path, dst: Path) -> None:
    """``transfer_data`` from site a to site b, writable, on a fresh DataManager."""
    from streamdata import DataManager, ExecutionLocation, LocalConnector

    site_a = ExecutionLocation(name="site-a", deployment="a", local=True)
    site_b = ExecutionLocation(name="site-b", deployment="b", local=True)
    async with DataManager({"a": LocalConnector(), "b": LocalConnector()}) as manager:
        manager.register_path(site_a, str(src))
        await manager.transfer_data(site_a, str(src), [site_b], str(dst), writable=True)


def verify(src: Path, dst: Path) -> None:
    """The copy is real (not a link) and holds the same files and bytes.

    Raises:
        RuntimeError: If it is not.
    """
    if dst.is_symlink() or os.lstat(dst).st_ino == os.lstat(src).st_ino:
        raise RuntimeError(f"{dst} is a link, not a copy")
    if footprint(src) != footprint(dst):
        raise RuntimeError(f"{dst} differs from {src}: {footprint(dst)} != {footprint(src)}")


def verify_content(src: Path, dst: Path, samples: int = 20) -> None:
    """Byte-compare the copy with its source (the lone file, or a spread of tree files).

    Raises:
        RuntimeError: If some content differs.
    """
    if src.is_file():
        pairs = [(src, dst)]
    else:
        files = sorted(path for path in src.rglob("*") if path.is_file())
        step = max(1, len(files) // samples)
        pairs = [(path, dst / path.relative_to(src)) for path in files[::step]]
    for original, copy in pairs:
        if not filecmp.cmp(original, copy, shallow=False):
            raise RuntimeError(f"{copy} differs from {original}")


def timed_copy(
    copier: Callable[[Path, Path], None], src: Path, dst: Path, *, check_content: bool = False
) -> float:
    """Seconds taken by one copy, started with no dirty pages pending; the copy is removed."""
    os.sync()
    start = time.perf_counter()
    copier(src, dst)
    seconds = time.perf_counter() - start
    verify(src, dst)
    if check_content:
        verify_content(src, dst)
    remove(dst)
    return seconds


def bench_case(case: Case, scratch: Path, runs: int) -> dict[str, Any]:
    """Warm-up plus ``runs`` alternating timed copies of each tool; medians and ratio."""
    src = make_dataset(case, scratch / "src")
    times: dict[str, list[float]] = {"streamdata": [], "cp -a": []}
    with asyncio.Runner() as runner:
        tools: dict[str, Callable[[Path, Path], None]] = {
            "streamdata": lambda s, d: runner.run(copy_with_streamdata(s, d)),
            "cp -a": copy_with_cp,
        }
        for copier in tools.values():  # warm-up (page cache, imports), content checked
            timed_copy(copier, src, scratch / "dst", check_content=True)
        for attempt in range(runs):
            order = list(tools) if attempt % 2 == 0 else list(reversed(tools))
            for name in order:
                times[name].append(timed_copy(tools[name], src, scratch / "dst"))
    remove(src)
    medians = {name: statistics.median(values) for name, values in times.items()}
    amount = case.files if case.unit == "files/s" else case.total_bytes / 1e6
    return {
        "case": asdict(case),
        "runs": runs,
        "seconds": times,
        "median_seconds": medians,
        "throughput": {name: amount / seconds for name, seconds in medians.items()},
        "ratio": medians["cp -a"] / medians["streamdata"],
    }


def run(quick: bool, runs: int) -> dict[str, Any]:
    """Every case in a scratch directory under /tmp, removed at the end."""
    results = []
    with tempfile.TemporaryDirectory(prefix="streamdata-bench-", dir="/tmp") as scratch:
        for case in QUICK_CASES if quick else CASES:
            print(f"local copy: case ({case.key}) {case.label}", file=sys.stderr, flush=True)
            results.append(bench_case(case, Path(scratch), runs))
    return {"cases": results}


# -- the section run by run.py ----------------------------------------------------------------


def run_section(options: Options) -> SectionReport:
    """The local copy cases in a fresh streamdata interpreter."""
    report = SectionReport(key="local_copy", title="Local copies: streamdata vs cp -a")
    runs = 3 if options.quick else 5
    command = [sys.executable, str(BENCHMARKS_DIR / "local_copy.py"), "--runs", str(runs)]
    progress(f"local copy: {runs} timed runs per tool and case")
    try:
        record = run_json(
            [*command, *(["--quick"] if options.quick else [])], env=streamdata_env(options.tree)
        )
    except WorkerError as exc:
        report.notes.append(str(exc))
        return report
    report.raw.append(record)
    rows = []
    for result in record["cases"]:
        case, unit = result["case"], result["case"]["unit"]
        seconds, throughput = result["median_seconds"], result["throughput"]
        rows.append(
            [
                f"({case['key']}) {case['label']}",
                f"{throughput['streamdata']:,.0f} {unit} ({seconds['streamdata']:.3f} s)",
                f"{throughput['cp -a']:,.0f} {unit} ({seconds['cp -a']:.3f} s)",
                format_ratio(result["ratio"]),
            ]
        )
        report.targets.append(
            Target(
                f"({case['key']}) {case['label']}: streamdata >= {RATIO_TARGET:g}x cp -a",
                result["ratio"] >= RATIO_TARGET,
                format_ratio(result["ratio"]),
            )
        )
    header = ["case", "streamdata (median)", "cp -a (median)", "streamdata / cp -a"]
    report.tables.append((header, rows))
    return report


SECTION = Section("local_copy", "Local copies: streamdata vs cp -a", run_section)


def main(argv: list[str] | None = None) -> None:
    """Run the local copy cases and print one JSON line."""
    parser = argparse.ArgumentParser(description="streamdata local copies vs cp -a")
    parser.add_argument("--quick", action="store_true", help="small datasets, for a smoke test")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool and case")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick, args.runs)))


if __name__ == "__main__":
    main()

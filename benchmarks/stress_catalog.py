"""Stress: N processes on one SQLite catalog doing random work, then a full audit.

Each worker process loops for the given time over random operations on one shared
catalog file and two local "sites" (``a`` holds sources, ``b`` the copies):
register a new file, copy one (to its own directory, or to a shared path that other
workers copy the same data to), invalidate a copy, check its directory (with or without
repair). It logs each operation whose call returned, as one JSON line. One worker is
killed with SIGKILL half-way. Then a fresh manager audits everything:

* no registration that returned is lost (unless that worker invalidated it later);
* every valid replica is on disk with the type, size and mtime recorded for it;
* each shared destination was copied at most once per content (identical concurrent
  transfers ran once, counted from the workers' logs);
* no temporary file is left once a check with repair has run on each directory.

    python benchmarks/stress_catalog.py --workers 4 --seconds 60 [--root DIR]

prints one JSON summary line and exits 1 if the audit found anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamdata import DataManager, DataType, ExecutionLocation, LocalConnector, StreamDataError

A = ExecutionLocation("a", "a")
B = ExecutionLocation("b", "b")
SHARED_SOURCES = 4


def _deployments() -> dict[str, LocalConnector]:
    return {"a": LocalConnector(), "b": LocalConnector()}


def _log(**record: object) -> None:
    print(json.dumps(record), flush=True)


async def _operation(
    dm: DataManager, rng: random.Random, root: Path, me: str, state: dict[str, list[str]]
) -> None:
    """One random operation; logs it once its call has returned."""
    kind = rng.choice(("register", "register", "copy", "copy", "shared", "invalidate", "check"))
    if kind == "register" or not state["sources"]:
        path = root / "src" / me / f"f{len(state['sources'])}"
        path.write_bytes(os.urandom(rng.randrange(1, 20_000)))
        dm.register_path(A, str(path))
        state["sources"].append(str(path))
        _log(op="register", path=str(path))
    elif kind == "copy":
        source = rng.choice(state["sources"])
        target = str(root / "dst" / me / os.path.basename(source))
        await dm.transfer_data(A, source, [B], target, writable=rng.random() < 0.3)
        state["copies"].append(target)
        _log(op="copy", src=source, dst=target)
    elif kind == "shared":
        index = rng.randrange(SHARED_SOURCES)
        source = str(root / "shared" / f"s{index}")
        await dm.transfer_data(A, source, [B], str(root / "dst" / "shared" / f"s{index}"))
        _log(op="shared", src=source)
    elif kind == "invalidate" and state["copies"]:
        target = state["copies"].pop(rng.randrange(len(state["copies"])))
        dm.invalidate_location(B, target)
        _log(op="invalidate", path=target)
    else:
        report = await dm.check(B, str(root / "dst" / me), repair=rng.random() < 0.5)
        _log(op="check", missing=report.missing)


async def worker(root: Path, me: str, seconds: float, seed: int) -> None:
    """Random operations for ``seconds`` (see the module docstring)."""
    rng = random.Random(seed)
    (root / "src" / me).mkdir(parents=True, exist_ok=True)
    (root / "dst" / me).mkdir(parents=True, exist_ok=True)
    state: dict[str, list[str]] = {"sources": [], "copies": []}
    deadline = time.monotonic() + seconds
    async with DataManager(_deployments(), catalog=root / "catalog.sqlite") as dm:
        for index in range(SHARED_SOURCES):
            dm.register_path(A, str(root / "shared" / f"s{index}"))
        _log(op="ready")
        while time.monotonic() < deadline:
            try:
                await _operation(dm, rng, root, me, state)
            except StreamDataError as exc:
                _log(op="error", error=str(exc))


def _prepare(root: Path) -> None:
    (root / "shared").mkdir(parents=True)
    (root / "dst" / "shared").mkdir(parents=True)
    for index in range(SHARED_SOURCES):
        (root / "shared" / f"s{index}").write_bytes(os.urandom(2_000_000))
    DataManager(catalog=root / "catalog.sqlite")


def _run_workers(root: Path, workers: int, seconds: float) -> list[list[dict[str, object]]]:
    def start(index: int) -> subprocess.Popen[str]:
        argv = ["--worker", f"w{index}", "--root", str(root), "--seconds", str(seconds)]
        command = [sys.executable, __file__, *argv, "--seed", str(index)]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    processes = [start(index) for index in range(workers)]
    time.sleep(seconds / 2)
    processes[0].send_signal(signal.SIGKILL)
    logs = []
    for process in processes:
        out, _ = process.communicate(timeout=seconds + 120)
        logs.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    return logs


def _lost_registrations(dm: DataManager, logs: list[list[dict[str, object]]]) -> list[str]:
    lost = []
    for log in logs:
        for record in log:
            if record["op"] == "register":
                path = str(record["path"])
                if not dm.get_data_locations(path, deployment="a"):
                    lost.append(path)
    return lost


def _untrue_replicas(dm: DataManager, root: Path) -> list[str]:
    """Valid replicas whose entry is not on disk as recorded."""
    untrue = []
    for replica in dm._catalog:
        if replica.data_type is DataType.INVALID or replica._implied:
            continue
        if not replica.path.startswith(str(root)):
            continue
        try:
            info = os.lstat(replica.path)
        except FileNotFoundError:
            untrue.append(replica.path)
            continue
        recorded = dm._catalog.entry_of(replica)
        if recorded is not None and recorded[0] == "file" and recorded[1] != info.st_size:
            untrue.append(replica.path)
    return untrue


async def audit(root: Path, logs: list[list[dict[str, object]]], workers: int) -> dict[str, object]:
    """Check what the catalog says against the logs and the disk."""
    async with DataManager(_deployments(), catalog=root / "catalog.sqlite") as dm:
        lost = _lost_registrations(dm, logs)
        untrue = _untrue_replicas(dm, root)
        missing = []
        for index in range(workers):
            report = await dm.check(B, str(root / "dst" / f"w{index}"), repair=True)
            missing += report.missing
        report = await dm.check(B, str(root / "dst" / "shared"), repair=True)
        temporaries = [
            str(path) for path in (root / "dst").rglob(".streamdata-tmp-*")
        ]  # after check(repair=True): none may be left
        ops = [record["op"] for log in logs for record in log]
    return {
        "operations": len(ops),
        "by_kind": {kind: ops.count(kind) for kind in sorted(set(ops))},
        "lost_registrations": lost,
        "untrue_replicas": untrue,
        "temporaries_left": temporaries,
        "missing_after_crash": sorted(missing),
    }


def main() -> int:
    """Run the stress (or, with --worker, one worker); print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--root")
    parser.add_argument("--worker")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(Path(args.root), args.worker, args.seconds, args.seed))
        return 0
    root = Path(args.root or tempfile.mkdtemp(prefix="streamdata-stress-"))
    _prepare(root)
    started = time.monotonic()
    logs = _run_workers(root, args.workers, args.seconds)
    summary = asyncio.run(audit(root, logs, args.workers))
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary))
    bad = summary["lost_registrations"] or summary["untrue_replicas"] or summary["temporaries_left"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

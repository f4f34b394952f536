"""The parent's side of benchmarks/stress_catalog.py: run the nodes, kill a claim holder, audit.

:func:`run_nodes` starts one launcher per node in a session (process group) of its own,
reads every worker's log lines as they come, and kills with SIGKILL the first worker that
logs writing the takeover destination. :func:`audit` then compares what a fresh manager
says (public API only) with the logs and the disk; see stress_catalog's docstring.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from streamdata import DataManager, ExecutionLocation, LocalConnector

__all__ = ["TAKEOVER_LIMIT", "Run", "audit", "run_nodes"]

B = ExecutionLocation("b", "b")
#: The most seconds from the kill to another worker's completed copy (issue 14).
TAKEOVER_LIMIT = 10.0
Record = dict[str, Any]


@dataclass
class Run:
    """What the workers logged, by worker, and the kill (None: nobody was killed)."""

    logs: dict[str, list[Record]] = field(default_factory=dict)
    killed: Record | None = None

    def records(self, *ops: str) -> Iterable[Record]:
        """Every logged record of these operations."""
        return (r for log in self.logs.values() for r in log if r["op"] in ops)


def _read(stream: IO[str], lines: queue.Queue[Record | None]) -> None:
    for line in stream:
        if line.startswith("{"):
            lines.put(json.loads(line))
    lines.put(None)


def _launch(
    script: str, root: Path, catalog: str, names: list[str], node: int, seconds: float, start: float
) -> subprocess.Popen[str]:
    command = [sys.executable, script, "--root", str(root), "--catalog", catalog]
    command += ["--seconds", str(seconds), "--start", repr(start), "--node", str(node)]
    command += ["--names", ",".join(names)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)


def run_nodes(
    script: str, root: Path, catalog: str, workers: int, nodes: int, seconds: float
) -> Run:
    """Run ``workers`` workers on ``nodes`` nodes for ``seconds``; kill the takeover's holder."""
    start, run = time.time(), Run()
    lines: queue.Queue[Record | None] = queue.Queue()
    launchers = []
    try:
        for node in range(nodes):
            names = [f"w{index}" for index in range(workers) if index % nodes == node]
            launchers.append(_launch(script, root, catalog, names, node, seconds, start))
            stdout = launchers[-1].stdout
            assert stdout is not None
            threading.Thread(target=_read, args=(stdout, lines), daemon=True).start()
        _follow(run, lines, len(launchers), root / "b" / "takeover", seconds + 300)
        for launcher in launchers:
            launcher.wait(timeout=60)
        with open(root / "log.jsonl", "w") as file:  # for a post-mortem
            file.writelines(json.dumps(r) + "\n" for log in run.logs.values() for r in log)
    finally:
        for launcher in launchers:  # a node left behind dies whole, as its group
            if launcher.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(launcher.pid, signal.SIGKILL)
    return run


def _follow(
    run: Run, lines: queue.Queue[Record | None], streams: int, takeover: Path, timeout: float
) -> None:
    """Collect the records until every stream ends; kill the first writer of ``takeover``."""
    deadline = time.monotonic() + timeout
    while streams:
        record = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if record is None:
            streams -= 1
            continue
        run.logs.setdefault(record["w"], []).append(record)
        writing = record["op"] == "writing" and Path(record["tmp"]).parent == takeover
        if writing and run.killed is None:  # it holds the takeover's claim, copying
            os.kill(record["pid"], signal.SIGKILL)
            run.killed = {"w": record["w"], "pid": record["pid"], "t": time.monotonic()}


def _takeover(run: Run, takeover: str) -> dict[str, object]:
    """Seconds from the kill to another worker's claim and completed copy of ``takeover``."""
    if run.killed is None:
        return {"killed": None}
    killed, at = run.killed["w"], run.killed["t"]
    others = [r for log in run.logs.values() for r in log if r["w"] != killed]
    claims = [r["t"] for r in others if r["op"] == "writing" and r["tmp"].startswith(takeover)]
    done = [r["t"] for r in others if r["op"] == "committed" and r["final"] == takeover + "/t"]
    return {
        "killed": killed,
        "claimed_after_kill": round(min(claims) - at, 3) if claims else None,
        "copied_after_kill": round(min(done) - at, 3) if done else None,
        "waiters_finished": sum(1 for r in run.records("takeover") if r["w"] != killed),
    }


def _lost(dm: DataManager, run: Run) -> dict[str, list[str]]:
    """Registrations and copies whose call returned but that the catalog lost (or kept valid
    after their worker invalidated them)."""
    registrations = [
        r["path"] for r in run.records("register") if not dm.get_data_locations(r["path"], "a")
    ]
    final: dict[tuple[str, str], bool] = {}  # (site, path) -> valid, as its worker left it
    for record in run.records("copy", "shared", "takeover", "invalidate"):
        site = record.get("site", "b")
        path = record.get("dst", record.get("path"))
        final[(site, path)] = record["op"] != "invalidate"
    copies, invalidated = [], []
    for (site, path), valid in sorted(final.items()):
        there = any(r.path == path for r in dm.get_data_locations(path, location=site))
        if valid and not there:
            copies.append(path)
        elif there and not valid:
            invalidated.append(path)
    return {
        "lost_registrations": registrations,
        "lost_copies": copies,
        "invalid_but_valid": invalidated,
    }


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


def _untrue(dm: DataManager, run: Run) -> list[str]:
    """Valid replicas (of every logged path and related to it) not on disk or not the same
    data as the rest of their replica set."""
    paths = {r.get("dst", r.get("path")) for r in run.records("register", "copy", "shared")}
    untrue: set[str] = set()
    for path in sorted(paths):
        found = dm.get_data_locations(path)
        digests = {replica.path: _digest(replica.path) for replica in found}
        untrue.update(p for p, digest in digests.items() if digest is None)
        if len(set(digests.values())) > 1:
            untrue.update(digests)
    return sorted(untrue)


def _copies(run: Run) -> dict[str, object]:
    """Identical transfers (to one destination on ``b``) against the copies they made."""
    asked = Counter(r["dst"] for r in run.records("shared", "takeover"))
    made = Counter(r["final"] for r in run.records("committed"))
    return {
        "shared_transfers": sum(asked.values()),
        "shared_destinations": len(asked),
        "shared_copies": sum(made.values()),
        "copied_twice": {path: n for path, n in made.items() if n > 1},
        "never_copied": sorted(set(asked) - set(made)),
    }


async def _repair_all(dm: DataManager, root: Path, nodes: int) -> list[str]:
    """check(repair=True) on every directory the workers wrote; returns what was missing."""
    missing = []
    for node in range(nodes):
        site = ExecutionLocation(f"node{node}", f"node{node}")
        for directory in sorted((root / site.name).iterdir()):
            missing += (await dm.check(site, str(directory), repair=True)).missing
    for directory in ("shared", "takeover"):
        if (root / "b" / directory).exists():
            report = await dm.check(B, str(root / "b" / directory), repair=True)
            missing += report.missing
    return sorted(missing)


async def audit(root: Path, catalog: str, run: Run, nodes: int) -> dict[str, object]:
    """Check what a fresh manager says against the logs and the disk (module docstring)."""
    deployments = {name: LocalConnector() for name in ("a", "b")}
    deployments.update({f"node{node}": LocalConnector() for node in range(nodes)})
    async with DataManager(deployments, catalog=catalog) as dm:
        summary: dict[str, Any] = _lost(dm, run)
        summary["untrue_replicas"] = _untrue(dm, run)
        summary.update(_copies(run))
        summary["takeover"] = _takeover(run, str(root / "b" / "takeover"))
        summary["missing_after_crash"] = await _repair_all(dm, root, nodes)
    leftovers = [*(root / "b").rglob(".streamdata-tmp-*")]
    for node in range(nodes):
        leftovers += (root / f"node{node}").rglob(".streamdata-tmp-*")
    summary["temporaries_left"] = sorted(map(str, leftovers))
    ops = [r["op"] for log in run.logs.values() for r in log]
    summary["by_kind"] = {kind: ops.count(kind) for kind in sorted(set(ops))}
    summary["errors"] = [r["error"] for r in run.records("error")][:10]
    summary["problems"] = _problems(summary)
    return summary


def _problems(summary: dict[str, Any]) -> list[str]:
    """The names of the properties the audit found broken."""
    lists = (
        "lost_registrations",
        "lost_copies",
        "invalid_but_valid",
        "untrue_replicas",
        "copied_twice",
        "never_copied",
        "temporaries_left",
    )
    problems = [name for name in lists if summary[name]]
    copied = summary["takeover"].get("copied_after_kill")
    if copied is None or copied >= TAKEOVER_LIMIT:
        problems.append("takeover")
    return problems

"""Stress: N processes on simulated nodes share one catalog, one is killed mid-copy, an audit.

    python benchmarks/stress_catalog.py [--catalog FILE_OR_URL] [--workers 8] [--nodes 2]
                                        [--seconds 60] [--root DIR]

The catalog is a SQLite file (default: ``ROOT/catalog.sqlite``) or a PostgreSQL URL.
Each node is a process group of its own (a launcher started with
``start_new_session=True`` and its workers) with a site directory of its own; each
worker has its own ``DataManager``. The sites are local directories, one deployment each:
``a`` holds the inputs, ``b`` is storage every node writes to (as a shared filesystem
would be), ``node<k>`` is node k's own. Workers loop over random operations and log each
one whose call returned (one JSON line):

* register a new file on ``a``; copy one of its own to its node's site (sometimes
  ``writable``); invalidate one of those copies; check its directory (with or without
  repair), or check ``b``'s shared directory with repair while others copy into it;
* copy this round's shared input to its destination on ``b``: every ``ROUND_SECONDS`` the
  inputs are new data, so identical transfers from several processes meet each round.

Copies to ``b`` stream at a limited bandwidth (``FaultyConnector``), and each worker logs
when it starts writing a temporary there (it then holds the destination's claim) and when
it commits one (it made that copy). Half-way through, every worker transfers one larger
input to one destination (the takeover): the first that logs writing it is killed with
SIGKILL; the others wait for its copy, see it die, and one of them takes the copy over.
Then a fresh manager audits, through the public API:

* no registration that returned is lost, every copy that returned is still valid unless
  its worker invalidated it later (and then it is not);
* every valid replica related to a logged path is on disk with the same content;
* each destination on ``b`` was copied exactly once (its data never changes), counted from
  the commit lines, however many transfers asked for it;
* the takeover: seconds from the kill to another worker's completed copy (at most
  ``TAKEOVER_LIMIT``), and to its claim;
* no temporary file is left once a check with repair has run on each directory.

It prints one JSON summary line and exits 1 if the audit found anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterable
from pathlib import Path

from _stress_audit import audit, run_nodes

from streamdata import DataManager, ExecutionLocation, LocalConnector, StreamDataError
from streamdata.connectors import Entry
from streamdata.testing import FaultyConnector

A = ExecutionLocation("a", "a")
B = ExecutionLocation("b", "b")
SHARED_SOURCES = 3
SHARED_SIZE = 200_000
TAKEOVER_SIZE = 1_500_000
#: Bytes per second written to ``b``: a shared copy lasts 0.2 s, the takeover's 1.5 s.
BANDWIDTH = 1_000_000
ROUND_SECONDS = 2.5


def node_location(node: int) -> ExecutionLocation:
    """Node ``node``'s own site."""
    return ExecutionLocation(f"node{node}", f"node{node}")


def round_count(seconds: float) -> int:
    """How many rounds of shared inputs a run of ``seconds`` needs."""
    return int(seconds / ROUND_SECONDS) + 2


def log(**record: object) -> None:
    """One JSON line on stdout, written at once (workers of a node share one pipe)."""
    record.update(pid=os.getpid(), t=time.monotonic())
    line = (json.dumps(record) + "\n").encode()
    if len(line) > 4000:  # atomic on a pipe only up to PIPE_BUF
        line = (json.dumps({k: record[k] for k in ("op", "w", "pid", "t")}) + "\n").encode()
    os.write(1, line)


class WitnessConnector(FaultyConnector):
    """A slow stream to ``b`` that logs when a temporary is written and committed."""

    def __init__(self, me: str) -> None:
        super().__init__(LocalConnector(), bandwidth=BANDWIDTH, own_filesystem=True)
        self._me = me

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        """Log ``writing`` (the destination is claimed), then write slowly."""
        log(op="writing", w=self._me, tmp=path)
        await super().write(location, path, entry, chunks)

    async def commit(self, location: ExecutionLocation, tmp_path: str, final_path: str) -> None:
        """Commit, then log ``committed``: this process made that copy."""
        await super().commit(location, tmp_path, final_path)
        log(op="committed", w=self._me, final=final_path)


class Worker:
    """One worker process's state and operations (see the module docstring)."""

    def __init__(self, dm: DataManager, root: Path, me: str, node: int, start: float) -> None:
        self.dm, self.root, self.me, self.start = dm, root, me, start
        self.site = node_location(node)
        self.sources: list[str] = []
        self.copies: list[str] = []
        self.takeover_done = False

    async def operation(self, rng: random.Random, seconds: float) -> None:
        """One random operation; logs it once its call has returned."""
        if not self.takeover_done and time.time() >= self.start + seconds / 2:
            self.takeover_done = True
            await self.takeover()
            return
        kinds = ("register", "register", "copy", "copy", "shared", "shared", "invalidate")
        kind = rng.choice((*kinds, "check", "check_shared"))
        if kind == "register" or not self.sources:
            self.register(rng)
        elif kind == "copy":
            await self.copy(rng)
        elif kind == "shared":
            await self.shared(rng)
        elif kind == "invalidate" and self.copies:
            target = self.copies.pop(rng.randrange(len(self.copies)))
            self.dm.invalidate_location(self.site, target)
            log(op="invalidate", w=self.me, path=target, site=self.site.name)
        elif kind == "check_shared" and rng.random() < 0.3:
            report = await self.dm.check(B, str(self.root / "b" / "shared"), repair=True)
            log(op="check_shared", w=self.me, missing=report.missing[:5])
        else:
            report = await self.dm.check(self.site, self.own_dir, repair=rng.random() < 0.5)
            log(op="check", w=self.me, missing=report.missing[:5])

    @property
    def own_dir(self) -> str:
        """This worker's directory on its node's site."""
        return str(self.root / self.site.name / self.me)

    def register(self, rng: random.Random) -> None:
        """A new file on ``a``, registered."""
        path = self.root / "src" / self.me / f"f{len(self.sources)}"
        path.write_bytes(os.urandom(rng.randrange(1, 20_000)))
        self.dm.register_path(A, str(path))
        self.sources.append(str(path))
        log(op="register", w=self.me, path=str(path))

    async def copy(self, rng: random.Random) -> None:
        """One of this worker's files to its node's site."""
        source = rng.choice(self.sources)
        target = os.path.join(self.own_dir, os.path.basename(source))
        writable = rng.random() < 0.3
        await self.dm.transfer_data(A, source, [self.site], target, writable=writable)
        self.copies.append(target)
        log(op="copy", w=self.me, src=source, dst=target, site=self.site.name)

    async def shared(self, rng: random.Random) -> None:
        """This round's shared input to its one destination on ``b``."""
        name = (
            f"r{int((time.time() - self.start) / ROUND_SECONDS)}/s{rng.randrange(SHARED_SOURCES)}"
        )
        source, target = self.root / "shared" / name, self.root / "b" / "shared" / name
        await self.dm.transfer_data(A, str(source), [B], str(target))
        log(op="shared", w=self.me, src=str(source), dst=str(target))

    async def takeover(self) -> None:
        """The larger input to the takeover destination, like every other worker."""
        source, target = self.root / "takeover" / "input", self.root / "b" / "takeover" / "t"
        await self.dm.transfer_data(A, str(source), [B], str(target))
        log(op="takeover", w=self.me, src=str(source), dst=str(target))


async def worker(args: argparse.Namespace) -> None:
    """Random operations until ``args.start + args.seconds`` (wall clock)."""
    root, me, node = Path(args.root), args.worker, args.node
    rng = random.Random(args.seed)
    (root / "src" / me).mkdir(parents=True, exist_ok=True)
    (root / node_location(node).name / me).mkdir(parents=True, exist_ok=True)
    deployments = {"a": LocalConnector(), "b": WitnessConnector(me)}
    deployments[node_location(node).deployment] = LocalConnector()
    async with DataManager(deployments, catalog=args.catalog) as dm:
        with dm.batch():
            for index in range(round_count(args.seconds)):
                for source in range(SHARED_SOURCES):
                    dm.register_path(A, str(root / "shared" / f"r{index}" / f"s{source}"))
            dm.register_path(A, str(root / "takeover" / "input"))
        log(op="ready", w=me)
        state = Worker(dm, root, me, node, args.start)
        while time.time() < args.start + args.seconds or not state.takeover_done:
            try:
                await state.operation(rng, args.seconds)
            except StreamDataError as exc:
                log(op="error", w=me, error=f"{type(exc).__name__}: {exc}"[:1000])


def launch_node(args: argparse.Namespace) -> int:
    """A node: start its workers (in this process group), wait for them."""
    common = ["--root", args.root, "--catalog", args.catalog, "--seconds", str(args.seconds)]
    common += ["--start", repr(args.start), "--node", str(args.node)]
    processes = [
        subprocess.Popen([sys.executable, __file__, *common, "--worker", name, "--seed", name[1:]])
        for name in args.names.split(",")
    ]
    for process in processes:
        process.wait()
    return 0


def prepare(root: Path, catalog: str, seconds: float) -> None:
    """The inputs (every round's, the takeover's), the directories, the catalog's schema."""
    for index in range(round_count(seconds)):
        (root / "shared" / f"r{index}").mkdir(parents=True)
        for source in range(SHARED_SOURCES):
            (root / "shared" / f"r{index}" / f"s{source}").write_bytes(os.urandom(SHARED_SIZE))
    (root / "takeover").mkdir()
    (root / "takeover" / "input").write_bytes(os.urandom(TAKEOVER_SIZE))
    (root / "b" / "shared").mkdir(parents=True)
    asyncio.run(DataManager(catalog=catalog).close())


def parse() -> argparse.Namespace:
    """The command line (see the module docstring; the rest is for launchers and workers)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--catalog", help="SQLite file or postgresql:// URL")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--root")
    parser.add_argument("--node", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    """Run the stress (or, internally, one node or one worker); print the JSON summary."""
    args = parse()
    if args.worker:
        asyncio.run(worker(args))
        return 0
    if args.names:
        return launch_node(args)
    root = Path(args.root or tempfile.mkdtemp(prefix="streamdata-stress-"))
    catalog = args.catalog or str(root / "catalog.sqlite")
    prepare(root, catalog, args.seconds)
    started = time.monotonic()
    run = run_nodes(__file__, root, catalog, args.workers, args.nodes, args.seconds)
    summary = asyncio.run(audit(root, catalog, run, args.nodes))
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

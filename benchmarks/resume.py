"""Resume benchmark: a 1 GiB copy cut at 70%, within the call and across a ``kill -9``.

Acceptance 2 of issue 15. A real OpenSSH ``sshd`` on a free loopback port (logged in as
the plain user of ``wan.py``, shell ``/bin/sh``), reached through a
:class:`streamdata.testing.DelayLine` run by this process, which counts the bytes each way
and cuts the connections. Each copy is one ``transfer_data(..., writable=True)`` by a
worker process (this script with ``--worker``), so the line and the copy do not share an
interpreter. For each round-trip time and direction (up: local to the host; down):

* ``clean``: the copy undisturbed (the line's overhead: SSH framing, logins);
* ``cut``: the line cuts every connection once 70% of the file went that way; the same
  call resumes and completes;
* ``kill -9`` + ``rerun``: with a SQLite catalog, the worker is killed once 70% went
  that way; a new worker runs the same transfer, which adopts the temporary left behind.

Bytes are those the line carried in the data's direction, as a ratio to the file's size;
every copy is compared with its source. Prints a table, then one JSON line::

    python benchmarks/resume.py [--size-mib 1024] [--rtt-ms 0,40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wan import LOOPBACK, Sshd, ensure_user, own, running_sshd

MiB = 1 << 20
CUT = 0.7
LOCAL_NAME, REMOTE_NAME = "localhost", "remote"


# -- the worker (a process of its own) ---------------------------------------------------


async def worker(argv: list[str]) -> None:
    """Copy SRC to DST up (local to the host) or down, with the catalog given ("-": memory)."""
    from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector, SSHHost

    catalog, direction, src, dst, port, user, key, known_hosts = argv
    local = ExecutionLocation(LOCAL_NAME, "local", local=True)
    remote = ExecutionLocation(REMOTE_NAME, "ssh")
    host = SSHHost(LOOPBACK, port=int(port), username=user, client_keys=[key],
                   known_hosts=known_hosts, name=REMOTE_NAME)  # fmt: skip
    origin, destination = (local, remote) if direction == "up" else (remote, local)
    deployments = {"local": LocalConnector(), "ssh": SSHConnector([host])}
    async with DataManager(deployments, catalog=None if catalog == "-" else catalog) as manager:
        manager.register_path(origin, src)
        print("copying", flush=True)
        await manager.transfer_data(origin, src, [destination], dst, writable=True)
    print("done", flush=True)


# -- the runs ----------------------------------------------------------------------------


class Bench:
    """The server, the files and the line of one round-trip time."""

    def __init__(self, sshd: Sshd, port: int, scratch: Path, remote: Path) -> None:
        self.sshd, self.port, self.scratch, self.remote = sshd, port, scratch, remote

    def argv(self, catalog: str, up: bool) -> list[str]:
        """The worker's arguments for a copy up or down."""
        src, dst = self.paths(up)
        sshd = self.sshd
        return [catalog, "up" if up else "down", str(src), str(dst), str(self.port), sshd.user,
                str(sshd.key), str(sshd.known_hosts)]  # fmt: skip

    def paths(self, up: bool) -> tuple[Path, Path]:
        """Source and destination of a copy up or down."""
        local, remote = self.scratch / "file.bin", self.remote / "file.bin"
        return (local, self.remote / "copy.bin") if up else (remote, self.scratch / "copy.bin")

    def check(self, up: bool) -> None:
        """The copy equals its source; it is then removed, with any catalog."""
        src, dst = self.paths(up)
        subprocess.run(["cmp", "--", str(src), str(dst)], check=True)
        dst.unlink()


async def run_worker(bench: Bench, catalog: str, up: bool) -> tuple[int, float]:
    """Run one copy to its end; its exit status and seconds."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", *bench.argv(catalog, up),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    status = await process.wait()
    return status, time.perf_counter() - started


async def kill_at(bench: Bench, line: Any, direction: Any, count: int, up: bool) -> None:
    """Run a copy with a catalog; kill -9 it once the line carried ``count`` bytes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", *bench.argv(str(bench.scratch / "catalog"), up),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while line.carried(direction) < count:
            if process.returncode is not None:
                raise RuntimeError("the worker ended before it was killed")
            await asyncio.sleep(0.002)
    finally:
        process.kill()
        await process.wait()


async def direction_runs(bench: Bench, line: Any, size: int, up: bool) -> list[dict[str, Any]]:
    """clean, cut, kill -9 and rerun, one direction."""
    from streamdata.testing import Direction

    direction = Direction.UP if up else Direction.DOWN
    rows = []

    async def measure(run: str, catalog: str) -> None:
        start = line.carried(direction)
        status, seconds = await run_worker(bench, catalog, up)
        if status:
            raise RuntimeError(f"{run} copy failed ({status})")
        rows.append({"run": run, "ratio": (line.carried(direction) - start) / size,
                     "seconds": seconds, "cuts": line.cuts})  # fmt: skip
        bench.check(up)

    await measure("clean", "-")
    line.cut_after(line.carried(direction) + int(CUT * size), direction)
    await measure("cut at 70%, same call", "-")
    start = line.carried(direction)
    await kill_at(bench, line, direction, start + int(CUT * size), up)
    rows.append({"run": "kill -9 at 70%", "ratio": (line.carried(direction) - start) / size,
                 "seconds": None, "cuts": line.cuts})  # fmt: skip
    await measure("rerun after kill -9", str(bench.scratch / "catalog"))
    for leftover in bench.scratch.glob("catalog*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    for row in rows:
        row["direction"] = "up" if up else "down"
    return rows


async def rtt_runs(sshd: Sshd, rtt_ms: int, size: int, scratch: Path, remote: Path) -> list[Any]:
    """Both directions through one delay line of ``rtt_ms``."""
    from streamdata.testing import DelayLine

    async with DelayLine(LOOPBACK, sshd.port, delay=rtt_ms / 2000) as line:
        sshd.through(line.port)  # its host key at the line's port
        bench = Bench(sshd, line.port, scratch, remote)
        rows = []
        for up in (True, False):
            for row in await direction_runs(bench, line, size, up):
                rows.append(row | {"rtt_ms": rtt_ms})
                print(f"  {fmt(rows[-1])}", file=sys.stderr, flush=True)
    return rows


def fmt(row: dict[str, Any]) -> str:
    """One row of the table."""
    seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
    where = f"{row['rtt_ms']:>4} ms  {row['direction']:<5} {row['run']:<24}"
    return f"{where} {row['ratio']:>6.3f}  {seconds:>6}"


async def run_all(size: int, rtts: list[int]) -> dict[str, Any]:
    """Every round-trip time, both directions."""
    user = ensure_user()
    with contextlib.ExitStack() as dirs:
        scratch = Path(dirs.enter_context(tempfile.TemporaryDirectory(prefix="sd-resume-")))
        remote = own(
            Path(dirs.enter_context(tempfile.TemporaryDirectory(prefix="sd-resume-r-"))), user
        )
        for directory in (scratch, remote):
            directory.chmod(0o755)
        with (scratch / "file.bin").open("wb") as file:
            for _ in range(size // MiB):
                file.write(os.urandom(MiB))
        (scratch / "file.bin").chmod(0o644)
        shutil.copyfile(scratch / "file.bin", remote / "file.bin")
        shutil.chown(remote / "file.bin", user, user)
        rows: list[Any] = []
        async with running_sshd(scratch / "sshd", user) as sshd:
            for rtt_ms in rtts:
                rows += await rtt_runs(sshd, rtt_ms, size, scratch, remote)
    return {"size": size, "user": user, "rows": rows}


def main() -> None:
    """Run the benchmark (or, with ``--worker``, one copy)."""
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(worker(sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rtt-ms", default="0,40", help="round-trip times, comma-separated")
    args = parser.parse_args()
    rtts = [int(value) for value in args.rtt_ms.split(",")]
    record = asyncio.run(run_all(args.size_mib * MiB, rtts))
    print(f"{'RTT':>7}  {'dir':<5} {'run':<24} {'bytes/size':>6}  {'s':>6}")
    for row in record["rows"]:
        print(fmt(row))
    print(json.dumps(record))


if __name__ == "__main__":
    main()

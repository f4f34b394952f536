"""WAN benchmark: streamdata and the OpenSSH tools through a delay line at 10, 40, 100 ms.

This machine's kernel has no ``netem``, so the link is the delay line of
``streamdata.testing.DelayLine`` (an asyncio TCP proxy holding each piece of data for
half the round-trip time in each direction, in a process of its own), in front of a real
OpenSSH ``sshd`` on a free loopback port. Every tool goes through the same line in the
same run: ``scp``, ``ssh -c aes128-gcm@openssh.com cat``, ``rsync -a``, ``tar | ssh
tar`` and streamdata (one ``transfer_data(..., writable=True)`` on a fresh
``DataManager``, connections included, as in ``ssh_transfer.py``).

The tools log in as a plain user with ``/bin/sh`` as its shell (created once, if missing:
:data:`_sshd.USER`), as on a real site: root's login shell here runs ``pyenv`` from
``~/.bashrc``, slow to start and leaving a stale lock if killed. Cases, at each round-trip
time: one 256 MiB file up and down; 1,000 files of 1 MiB and 10,000 files of 4 KiB up
(to a tmpfs, so that the disk's slowness at creating files does not hide the link's).
Per case the tools run in turn, the order rotating from run to run, each copy verified
and removed untimed; medians. Also measured: the line itself at 0 ms against a direct
connection, and the peak RSS of a 1 GiB download at 40 ms into a slow consumer. Prints
one JSON line::

    python benchmarks/wan.py [--quick] [--runs 3] [--cases mib,kib] [--rtts 40]

``--cases`` and ``--rtts`` run only some cases and round-trip times; such a partial run
skips the line check and the memory and resume records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
from _sshd import _keygen, _sshd, login_user
from ssh_transfer import (
    CIPHER,
    STREAMDATA,
    TMPFS,
    Copier,
    Server,
    is_tmpfs,
    make_dataset,
    md,
    remove,
    run_command,
    run_shell,
    streamdata_copy,
    summary,
    tool_versions,
    verify,
)
from ssh_transfer import Case as _LoopbackCase

MiB = 1 << 20
GiB = 1 << 30
LOOPBACK = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
DELAY_LINE = "streamdata.testing._delayline"
RTTS_MS = (10, 40, 100)
#: Timed runs per tool at 100 ms, whatever ``--runs`` says (each copy takes long there).
RUNS_AT_100MS = 1
SCP = "scp"
CAT = f"ssh -c {CIPHER} cat"
RSYNC = "rsync -a"
TAR = f"tar | ssh -c {CIPHER} tar"


@dataclass(frozen=True)
class Case:
    """One dataset and direction."""

    key: str
    label: str
    files: int
    size: int
    shape: str  # "file" or "tree"
    direction: str  # "up" or "down"
    unit: str  # "MB/s" or "files/s"

    @property
    def total_bytes(self) -> int:
        """Bytes of file data in the dataset."""
        return self.files * self.size


def cases(quick: bool, only: frozenset[str] = frozenset()) -> list[Case]:
    """The cases of a full or a quick run (those whose key is in ``only``, if given)."""
    big, medium, small = (16 * MiB, 50, 500) if quick else (256 * MiB, 1_000, 10_000)
    tag = " (quick)" if quick else ""
    every = [
        Case("file-up", f"one {big // MiB} MiB file, up{tag}", 1, big, "file", "up", "MB/s"),
        Case("file-down", f"one {big // MiB} MiB file, down{tag}", 1, big, "file", "down", "MB/s"),
        Case("mib", f"{medium:,} files of 1 MiB, up{tag}", medium, MiB, "tree", "up", "MB/s"),
        Case("kib", f"{small:,} files of 4 KiB, up{tag}", small, 4096, "tree", "up", "files/s"),
    ]
    return [case for case in every if not only or case.key in only]


#: Acceptance 1 of issue 15, at 40 ms: case key -> (tool, minimum ratio streamdata / tool).
TARGETS = {"file-up": (SCP, 4.0), "file-down": (SCP, 4.0), "mib": (TAR, 3.0), "kib": (TAR, 1.0)}
#: Acceptance 6: peak RSS of the slow 1 GiB download, MiB.
RSS_LIMIT_MIB = 256
#: Acceptance 2: bytes carried by a transfer resumed after a cut, over the file's size.
RESUME_LIMIT = 1.15


# -- the plain user, the server and the line ----------------------------------------------------


def ensure_user() -> str:
    """The plain user to log in as (see :func:`_sshd.login_user`)."""
    return login_user()


class Handle:
    """What ``ssh_transfer.streamdata_copy`` needs of a server: ``ssh_host(name=...)``."""

    def __init__(self, port: int, user: str, key: Path, known_hosts: Path) -> None:
        self.port, self.user, self.key, self.known_hosts = port, user, key, known_hosts

    def ssh_host(self, **options: Any) -> Any:
        """A :class:`streamdata.SSHHost` reaching the server through this port."""
        from streamdata import SSHHost

        settings: dict[str, Any] = {
            "port": self.port,
            "username": self.user,
            "client_keys": [str(self.key)],
            "known_hosts": str(self.known_hosts),
        }
        return SSHHost(LOOPBACK, **(settings | options))


@dataclass(frozen=True)
class Sshd:
    """The benchmark's ``sshd``: its port, the user, keys and a ``known_hosts`` file."""

    port: int
    user: str
    key: Path
    known_hosts: Path
    host_key_line: str  # "ssh-ed25519 AAAA..."

    def through(self, port: int) -> Server:
        """The tools' view of the server reached at ``port`` (the line's, or its own)."""
        with self.known_hosts.open("a") as known:
            known.write(f"[{LOOPBACK}]:{port} {self.host_key_line}\n")
        handle = Handle(port, self.user, self.key, self.known_hosts)
        return Server(LOOPBACK, port, self.user, str(self.key), str(self.known_hosts), handle)


@contextlib.asynccontextmanager
async def running_sshd(directory: Path, user: str) -> AsyncIterator[Sshd]:
    """``sshd`` on a free loopback port; the user's key readable by sshd acting as the user."""
    _sshd.make_privilege_separation_directory()
    directory.mkdir(mode=0o755, exist_ok=True)  # noqa: ASYNC240 -- set-up, before any timing
    directory.chmod(0o755)  # noqa: ASYNC240
    _keygen(directory / "host_key")
    _keygen(directory / "client_key")
    authorized = directory / "authorized_keys"
    authorized.write_bytes((directory / "client_key.pub").read_bytes())
    authorized.chmod(0o644)
    process, port = await _sshd.launch_sshd(
        SSHD,
        directory,
        LOOPBACK,
        host_key=directory / "host_key",
        authorized_keys=authorized,
        max_sessions=10,
        log=directory / "sshd.log",
        seconds=10.0,
    )
    try:
        public = " ".join((directory / "host_key.pub").read_text().split()[:2])
        known_hosts = directory / "known_hosts"
        known_hosts.write_text("")
        yield Sshd(port, user, directory / "client_key", known_hosts, public)
    finally:
        await _sshd.stop_sshd(process)


@dataclass
class Line:
    """A running delay line: its port, and its byte counts once it has stopped."""

    port: int
    counts: dict[str, int] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def delay_line(target_port: int, rtt: float, *options: str) -> AsyncIterator[Line]:
    """A delay line process in front of ``target_port`` (``options`` passed on to it)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", DELAY_LINE, LOOPBACK, str(target_port)),
        *("--delay", str(rtt / 2), *options),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 10)
        line = Line(int(json.loads(first)["port"]))
        yield line
        process.stdin.close()  # the line stops and prints its counts
        line.counts = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


# -- the tools -----------------------------------------------------------------------------------


def file_tools(server: Server, src: Path, dst: Path, down: bool) -> dict[str, Copier]:
    """streamdata, scp, ssh cat and rsync for one file, up or down."""
    from shlex import quote

    remote_src, remote_dst = f"{server.login}:{src}", f"{server.login}:{dst}"
    rsync = ["rsync", "-a", "-e", " ".join(server.ssh())]
    cat = [*server.ssh(cipher=CIPHER), server.login]
    if down:
        return {
            STREAMDATA: lambda: streamdata_copy([server], src, dst, down=True),
            SCP: lambda: run_command([*server.scp(), remote_src, str(dst)]),
            CAT: lambda: run_command([*cat, f"cat {quote(str(src))}"], stdout=dst),
            RSYNC: lambda: run_command([*rsync, remote_src, str(dst)]),
        }
    return {
        STREAMDATA: lambda: streamdata_copy([server], src, dst),
        SCP: lambda: run_command([*server.scp(), str(src), remote_dst]),
        CAT: lambda: run_command([*cat, f"cat > {quote(str(dst))}"], stdin=src),
        RSYNC: lambda: run_command([*rsync, str(src), remote_dst]),
    }


def tree_tools(server: Server, src: Path, dst: Path) -> dict[str, Copier]:
    """streamdata, ``tar | ssh tar`` and rsync for a tree, up."""
    from shlex import join, quote

    tar_ssh = join([*server.ssh(cipher=CIPHER), server.login])
    remote_tar = f"mkdir -p {quote(str(dst))} && tar xf - -C {quote(str(dst))}"
    rsync = ["rsync", "-a", "-e", " ".join(server.ssh())]
    return {
        STREAMDATA: lambda: streamdata_copy([server], src, dst),
        TAR: lambda: run_shell(f"tar cf - -C {quote(str(src))} . | {tar_ssh} {quote(remote_tar)}"),
        RSYNC: lambda: run_command([*rsync, f"{src}/", f"{server.login}:{dst}/"]),
    }


# -- measuring ------------------------------------------------------------------------------------


async def timed(copier: Copier, src: Path, dst: Path, *, content: bool) -> float:
    """Seconds one copy takes; the copy is verified and removed, untimed."""
    remove(dst)
    start = time.perf_counter()
    await copier()
    seconds = time.perf_counter() - start
    await asyncio.to_thread(verify, src, dst, content=content)
    remove(dst)
    return seconds


async def bench(
    case: Case, tools: dict[str, Copier], src: Path, dst: Path, runs: int
) -> dict[str, Any]:
    """``runs`` copies per tool, the order rotating; medians and streamdata / tool ratios."""
    names = list(tools)
    times: dict[str, list[float]] = {name: [] for name in names}
    for attempt in range(runs):
        shift = attempt % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(await timed(tools[name], src, dst, content=attempt == 0))
    return summary(case, runs, times)


def own(path: Path, user: str) -> Path:
    """Make ``path`` (a new directory) the user's, so the remote side can write there."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, user, user)
    return path


async def run_rtt(
    sshd: Sshd, rtt_ms: int, runs: int, chosen: list[Case], scratch: Path, remote: Path
) -> list[dict[str, Any]]:
    """Every case through one delay line of ``rtt_ms``."""
    results = []
    async with delay_line(sshd.port, rtt_ms / 1000) as line:
        server = sshd.through(line.port)
        for case in chosen:
            progress(f"wan: {rtt_ms} ms, {case.label}, {runs} run(s)")
            loopback = _LoopbackCase(case.key, case.label, case.files, case.size, case.shape,
                                     case.direction, case.unit)  # fmt: skip
            src = make_dataset(loopback, scratch / "src")
            if case.shape == "file":
                down = case.direction == "down"
                dst = (scratch / "local" if down else own(remote / "file", sshd.user)) / "copy"
                dst.parent.mkdir(exist_ok=True)
                tools = file_tools(server, src, dst, down)
            else:
                dst = own(remote / "trees", sshd.user) / f"tree-{case.key}"
                tools = tree_tools(server, src, dst)
            result = await bench(case, tools, src, dst, runs)
            result["rtt_ms"] = rtt_ms
            results.append(result)
    return results


async def line_overhead(sshd: Sshd, scratch: Path, size: int, runs: int) -> dict[str, Any]:
    """``ssh cat`` and streamdata downloads, direct vs through a 0 ms line: medians."""
    case = _LoopbackCase("line", "line", 1, size, "file", "down", "MB/s")
    src = make_dataset(case, scratch / "src")
    dst = scratch / "local" / "line-copy"
    dst.parent.mkdir(exist_ok=True)
    direct = sshd.through(sshd.port)
    async with delay_line(sshd.port, 0.0) as line:
        through = sshd.through(line.port)
        tools: dict[str, Copier] = {}
        for label, server in (("direct", direct), ("line 0 ms", through)):
            chosen = file_tools(server, src, dst, down=True)
            tools[f"{CAT}, {label}"] = chosen[CAT]
            tools[f"{STREAMDATA}, {label}"] = chosen[STREAMDATA]
        names, times = list(tools), {name: [] for name in tools}
        for attempt in range(runs):
            for name in names[attempt % 2 :] + names[: attempt % 2]:
                times[name].append(await timed(tools[name], src, dst, content=False))
    return {name: statistics.median(values) for name, values in times.items()}


async def memory_record(sshd: Sshd, scratch: Path, size: int, rate: float) -> dict[str, Any]:
    """A download of ``size`` bytes at 40 ms into a consumer taking ``rate`` bytes/s.

    Runs in a fresh worker process (``--memory``), whose peak RSS is the record.
    """
    case = _LoopbackCase("mem", "mem", 1, size, "file", "down", "MB/s")
    src = make_dataset(case, scratch / "src")
    dst = scratch / "local" / "slow-copy"
    dst.parent.mkdir(exist_ok=True)
    async with delay_line(sshd.port, 0.040) as line:
        server = sshd.through(line.port)
        settings = {"port": line.port, "user": sshd.user, "key": str(sshd.key)}
        settings |= {"known_hosts": str(sshd.known_hosts), "src": str(src), "dst": str(dst)}
        command = [sys.executable, __file__, "--memory", json.dumps(settings | {"rate": rate})]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, env=streamdata_env()
        )
    del server
    if done.returncode != 0:
        raise RuntimeError(f"memory worker exited {done.returncode}: {done.stderr[-800:]}")
    record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    remove(dst)
    return record | {"size": size, "rate": rate}


async def resume_record(sshd: Sshd, scratch: Path, remote: Path, size: int) -> list[dict[str, Any]]:
    """One file up and one down at 40 ms, every connection cut at 70% of its bytes.

    Returns:
        Per direction: seconds, whether the copy is complete, and the bytes the line
        carried that way (the cut's included) over the file size.
    """
    case = _LoopbackCase("resume", "resume", 1, size, "file", "up", "MB/s")
    src = make_dataset(case, scratch / "src")
    records = []
    for down in (False, True):
        dst = (scratch / "local" if down else own(remote / "file", sshd.user)) / "resumed"
        dst.parent.mkdir(exist_ok=True)
        remove(dst)
        direction = "down" if down else "up"
        cut = ("--cut-after", str(int(size * 0.7)), "--cut-direction", direction)
        async with delay_line(sshd.port, 0.040, *cut) as line:
            server = sshd.through(line.port)
            start = time.perf_counter()
            await streamdata_copy([server], src, dst, down=down)
            seconds = time.perf_counter() - start
        await asyncio.to_thread(verify, src, dst, content=True)
        remove(dst)
        carried = line.counts[direction]
        records.append(
            {
                "direction": direction,
                "seconds": seconds,
                "cuts": line.counts["cuts"],
                "carried_over_size": carried / size,
                "size": size,
            }
        )
    return records


async def slow_download(settings: dict[str, Any]) -> dict[str, Any]:
    """The memory worker: one download into a bandwidth-limited local connector."""
    from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector
    from streamdata.testing import FaultyConnector

    handle = Handle(settings["port"], settings["user"], Path(settings["key"]),
                    Path(settings["known_hosts"]))  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    local = ExecutionLocation("localhost", "local", local=True)
    remote = ExecutionLocation("remote", "ssh")
    slow = FaultyConnector(LocalConnector(), bandwidth=settings["rate"])
    connector = SSHConnector([handle.ssh_host(name="remote")])
    start = time.perf_counter()
    async with DataManager({"local": slow, "ssh": connector}) as manager:
        manager.register_path(remote, settings["src"])
        await manager.transfer_data(remote, settings["src"], [local], settings["dst"])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_rss_mib": peak, "rss_before_mib": before, "seconds": seconds}


async def run_all(
    quick: bool, runs: int, only: frozenset[str] = frozenset(), rtts: tuple[int, ...] = RTTS_MS
) -> dict[str, Any]:
    """Every round-trip time, the line's overhead and the memory record.

    With ``only`` or fewer ``rtts``: those cases and round-trip times, nothing else.
    """
    partial = bool(only) or rtts != RTTS_MS
    import streamdata  # noqa: F401 -- imported before any timing

    user = ensure_user()
    record: dict[str, Any] = {"tools": tool_versions(), "user": user, "results": []}
    if not is_tmpfs(TMPFS):
        raise RuntimeError(f"no tmpfs at {TMPFS}")
    with contextlib.ExitStack() as dirs:
        scratch = Path(dirs.enter_context(tempfile.TemporaryDirectory(prefix="sd-wan-")))
        remote = Path(dirs.enter_context(tempfile.TemporaryDirectory(dir=TMPFS, prefix="sd-wan-")))
        for directory in (scratch, remote):
            directory.chmod(0o755)
        async with running_sshd(scratch / "sshd", user) as sshd:
            overhead_size = 64 * MiB if quick else 256 * MiB
            if not partial:
                record["line_overhead"] = await line_overhead(sshd, scratch, overhead_size, runs)
            for rtt_ms in rtts:
                times = min(runs, RUNS_AT_100MS) if rtt_ms >= 100 else runs
                chosen = cases(quick, only)
                record["results"] += await run_rtt(sshd, rtt_ms, times, chosen, scratch, remote)
            if partial:
                return record
            size, rate = (128 * MiB, 50e6) if quick else (GiB, 200e6)
            record["memory"] = await memory_record(sshd, scratch, size, rate)
            record["resume"] = await resume_record(sshd, scratch, remote, size)
    return record


# -- the section run by run.py --------------------------------------------------------------------


def run_section(options: Options) -> SectionReport:
    """The WAN cases in a fresh streamdata interpreter."""
    report = SectionReport(key="wan", title=TITLE)
    runs = options.repeats
    command = [sys.executable, str(BENCHMARKS_DIR / "wan.py"), "--runs", str(runs)]
    if options.wan_cases:
        command += ["--cases", options.wan_cases]
    if options.wan_rtts:
        command += ["--rtts", options.wan_rtts]
    progress(f"wan: {runs} timed runs per tool and case ({RUNS_AT_100MS} at 100 ms)")
    try:
        record = run_json(
            [*command, *(["--quick"] if options.quick else [])], env=streamdata_env(options.tree)
        )
    except WorkerError as exc:
        report.notes.append(str(exc))
        return report
    report.raw.append(record)
    report.tables.append(result_table(record))
    report.targets.extend(targets(record))
    report.notes.extend(notes(record, runs))
    if "memory" not in record:  # a partial run (--cases, --rtts)
        return report
    overhead = [[md(name), f"{seconds:.2f}"] for name, seconds in record["line_overhead"].items()]
    report.tables.append((["download (delay line check)", "median s"], overhead))
    resumed = [
        [
            f"one {one['size'] // MiB} MiB file {one['direction']}, cut at 70%",
            f"{one['seconds']:.2f}",
            str(one["cuts"]),
            f"{one['carried_over_size']:.3f}x",
        ]
        for one in record["resume"]
    ]
    report.tables.append(
        (["40 ms, resumed in the same call", "s", "cuts", "bytes / size"], resumed)
    )
    return report


def result_table(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per round-trip time, case and tool."""
    rows = []
    for result in record["results"]:
        case, unit = result["case"], result["case"]["unit"]
        for tool, seconds in result["median_seconds"].items():
            ratio = "" if tool == STREAMDATA else format_ratio(result["ratio"][tool])
            rows.append(
                [
                    f"{result['rtt_ms']} ms",
                    case["label"],
                    md(tool),
                    f"{seconds:.2f}",
                    f"{result['throughput'][tool]:,.0f} {unit}",
                    ratio,
                ]
            )
    return ["RTT", "case", "tool", "median s", "throughput", "streamdata / tool"], rows


def targets(record: dict[str, Any]) -> list[Target]:
    """Acceptance 1 at 40 ms and acceptance 6."""
    found = []
    for result in record["results"]:
        key = result["case"]["key"]
        if result["rtt_ms"] != 40 or key not in TARGETS:
            continue
        tool, minimum = TARGETS[key]
        ratio = result["ratio"][tool]
        text = f"40 ms, {result['case']['label']}: streamdata >= {minimum:g}x {tool}"
        found.append(Target(md(text), ratio >= minimum, format_ratio(ratio)))
    if "memory" not in record:  # a partial run
        return found
    for one in record["resume"]:
        text = (
            f"connection cut at 70% of a {one['size'] // MiB} MiB {one['direction']}load: "
            f"completes in the same call, bytes sent <= {RESUME_LIMIT}x the file"
        )
        met = one["cuts"] == 1 and one["carried_over_size"] <= RESUME_LIMIT
        found.append(Target(text, met, f"{one['carried_over_size']:.3f}x, {one['cuts']} cut"))
    memory = record["memory"]
    found.append(
        Target(
            f"peak RSS of a {memory['size'] // MiB} MiB download at 40 ms into a consumer "
            f"taking {memory['rate'] / 1e6:.0f} MB/s < {RSS_LIMIT_MIB} MiB",
            memory["peak_rss_mib"] < RSS_LIMIT_MIB,
            f"{memory['peak_rss_mib']:.0f} MiB ({memory['seconds']:.1f} s)",
        )
    )
    return found


def notes(record: dict[str, Any], runs: int) -> list[str]:
    """How the numbers were made."""
    tools = record["tools"]
    return [
        f"Loopback OpenSSH sshd ({tools['ssh']}; {tools['rsync']}) behind the delay line "
        "`python -m streamdata.testing._delayline` (its own process; each direction holds every "
        "piece of data for half the RTT, so the SSH window updates take a whole RTT to come "
        f"back). Every tool logs in as the plain user `{record['user']}` (shell `/bin/sh`). "
        "Client and server share this machine's 2 cores.",
        f"Per case: {runs} timed copies of each tool at 10 and 40 ms, {RUNS_AT_100MS} at "
        "100 ms (a copy takes up to a minute there), the order rotating; median shown. "
        "Each copy is verified (files, bytes; the first of each tool byte for byte) and "
        "removed, untimed. Ratio = tool time / streamdata time (> 1: streamdata faster). "
        "Trees go to a tmpfs, so the disk's slowness at creating files after deletions "
        "(see ssh_transfer) does not hide the link's.",
        "Ciphers: `scp` and `rsync` use OpenSSH's default (chacha20-poly1305); `ssh cat`, "
        f"`tar | ssh tar` use `{CIPHER}`, as streamdata does.",
        "Delay line check: the same downloads direct and through the line at 0 ms; the line "
        "should cost little next to SSH's own work.",
        "Memory: one `transfer_data` of a file from the SSH host at 40 ms into a local "
        "connector slowed to the given rate (`streamdata.testing.FaultyConnector`), in a "
        "fresh process; peak RSS is that process's `ru_maxrss`.",
        "Resume: a fresh line at 40 ms cuts every connection (RST) once 70% of the file's "
        "size went its way; the same `transfer_data` call completes (content checked) and "
        "the line's count that way, SSH's own bytes and the cut included, is shown over "
        "the file's size.",
    ]


TITLE = "WAN transfers (OpenSSH through a delay line): streamdata vs scp, ssh cat, rsync, tar | ssh"
SECTION = Section("wan", TITLE, run_section)


def main(argv: list[str] | None = None) -> None:
    """Run the WAN cases (or, with ``--memory``, the memory worker) and print one JSON line."""
    parser = argparse.ArgumentParser(description="streamdata over a delayed link")
    parser.add_argument("--quick", action="store_true", help="small datasets, for a smoke test")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool and case")
    parser.add_argument("--cases", default="", help="only these case keys (comma-separated)")
    parser.add_argument("--rtts", default="", help="only these round-trip times (ms, comma)")
    parser.add_argument("--memory", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory:
        print(json.dumps(asyncio.run(slow_download(json.loads(args.memory)))))
        return
    only = frozenset(key for key in args.cases.split(",") if key)
    rtts = tuple(int(ms) for ms in args.rtts.split(",") if ms) or RTTS_MS
    print(json.dumps(asyncio.run(run_all(args.quick, max(1, args.runs), only, rtts))))


if __name__ == "__main__":
    main()

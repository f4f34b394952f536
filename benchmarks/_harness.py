"""Shared plumbing of the benchmark sections: options, reports, tables, subprocesses.

Standard library only, so that a section's worker script can import it under any
interpreter (e.g. the StreamFlow virtualenv, which has no streamdata).

A *section* is a module of ``benchmarks/`` that exposes ``SECTION = Section(...)``; its
``run`` callable receives the :class:`Options` of ``run.py`` and returns a
:class:`SectionReport`. Heavy work runs in fresh subprocesses (:func:`run_json`), so a
section measures a clean interpreter and ``run.py`` itself imports neither library.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent


@dataclass(frozen=True)
class Options:
    """What ``run.py`` was asked to do; every section reads what concerns it."""

    quick: bool
    streamflow_python: str
    repeats: int
    command: str
    #: The streamdata tree the workers import (put first on their ``PYTHONPATH``).
    tree: Path = REPO_ROOT
    #: Whether a catalog rate that misses its target is profiled in one more process.
    profile: bool = True
    #: The ssh_transfer cases to run (comma-separated keys, see ``ssh_transfer.cases``).
    ssh_cases: str = "a,b,c,d"
    #: The shared_catalog parts to run (comma-separated, see ``shared_catalog.PARTS``).
    shared_parts: str = "registration,lookup,reopen,feed"
    #: The wan cases and round-trip times to run ("" = all); a partial run skips the
    #: line check, memory and resume records (see ``wan.py --cases/--rtts``).
    wan_cases: str = ""
    wan_rtts: str = ""


@dataclass(frozen=True)
class Target:
    """One acceptance target and whether this run met it (None: could not be judged)."""

    text: str
    met: bool | None
    detail: str = ""

    @property
    def verdict(self) -> str:
        """PASS, MISS or n/a."""
        return {True: "PASS", False: "MISS", None: "n/a"}[self.met]


@dataclass
class SectionReport:
    """What a section hands back to ``run.py``: tables, targets, notes and raw records."""

    key: str
    title: str
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    #: Further tables, each under a heading: (heading, header, rows).
    appendix: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """A benchmark section: a key (used in RESULTS.md), a title and its runner."""

    key: str
    title: str
    run: Callable[[Options], SectionReport]


class WorkerError(RuntimeError):
    """A benchmark subprocess failed or printed no JSON record."""


def streamdata_env(tree: Path = REPO_ROOT) -> dict[str, str]:
    """The environment for a worker that imports streamdata from ``tree`` (this checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return env


#: What a worker waits for before it starts, in this thread: ``compare.py`` runs the two
#: trees' sections side by side in two threads and lets their workers take turns.
WORKER_GATE: contextvars.ContextVar[Callable[[], AbstractContextManager[None]] | None]
WORKER_GATE = contextvars.ContextVar("WORKER_GATE", default=None)


def run_json(
    command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run a worker script and parse the JSON record on the last line of its stdout.

    The worker starts when :data:`WORKER_GATE` (if set in this thread) lets it.

    Raises:
        WorkerError: If the worker exits non-zero, times out or prints no record.
    """
    gate = WORKER_GATE.get()
    try:
        with gate() if gate else contextlib.nullcontext():
            done = subprocess.run(
                list(command), capture_output=True, text=True, env=env, timeout=timeout, check=False
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkerError(f"{' '.join(command)}: {exc}") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise WorkerError(f"{' '.join(command)} exited {done.returncode}:\n{tail}")
    record: dict[str, Any] = json.loads(lines[-1])
    return record


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the final table)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def format_rate(value: float) -> str:
    """An operation rate, e.g. ``123,456``."""
    return f"{value:,.0f}"


def format_ratio(value: float) -> str:
    """A ratio, e.g. ``3.41x``."""
    return f"{value:.2f}x"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table, columns padded so it also reads as plain text."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def _filesystem(path: str) -> str:
    try:
        done = subprocess.run(
            ["df", "-T", path], capture_output=True, text=True, check=True, timeout=10
        )
        return done.stdout.splitlines()[1].split()[1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def streamdata_revision(tree: Path = REPO_ROOT) -> str:
    """Which streamdata code ran: git commit, whether the package differs from it, digest."""
    digest = hashlib.sha256()
    for source in sorted((tree / "streamdata").rglob("*.py")):
        digest.update(source.relative_to(tree).as_posix().encode())
        digest.update(source.read_bytes())
    try:
        head = git(tree, "rev-parse", "--short", "HEAD") or "no commit"
        changed = git(tree, "status", "--porcelain", "streamdata")
        dirty = " + uncommitted changes" if changed else ""
    except (OSError, subprocess.SubprocessError):
        head, dirty = "unknown", ""
    return f"git {head}{dirty}; sources sha256 {digest.hexdigest()[:12]}"


def git(cwd: Path, *args: str) -> str:
    """The stripped output of a git command run in ``cwd``.

    Raises:
        subprocess.CalledProcessError: If git fails.
    """
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def load_average() -> str:
    """The 1-minute load average, to show whether other work shared the machine."""
    return f"{os.getloadavg()[0]:.2f}"


def machine_info() -> dict[str, str]:
    """The machine the benchmark ran on."""
    return {
        "nproc": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "memory": _memory(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "/tmp filesystem": _filesystem("/tmp"),
    }


def replace_block(document: str, key: str, body: str) -> str:
    """Put ``body`` between the markers of ``key`` (appending the block if it is new)."""
    block = f"<!-- section:{key} -->\n{body}\n<!-- /section:{key} -->"
    pattern = re.compile(
        rf"<!-- section:{re.escape(key)} -->.*?<!-- /section:{re.escape(key)} -->", re.S
    )
    if pattern.search(document):
        return pattern.sub(lambda _: block, document)
    return document.rstrip("\n") + "\n\n" + block + "\n"


def print_report(report: SectionReport) -> None:
    """The section's tables and verdicts on stdout."""
    print(f"\n== {report.title} ==")
    for header, rows in report.tables:
        print(markdown_table(header, rows))
    for target in report.targets:
        print(f"  [{target.verdict}] {target.text}: {target.detail}")
    for note in report.notes:
        print(f"  note: {note}")
    for heading, header, rows in report.appendix:
        print(f"\n-- {heading} --")
        print(markdown_table(header, rows))

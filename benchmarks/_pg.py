"""A throwaway PostgreSQL cluster for the benchmarks, and the settings it ran with.

The cluster is the tests' (``streamdata/testing/_postgres.py``, standard library only),
loaded from this checkout's file whichever streamdata tree the workers import
(``run.py --before REF``). The benchmarks run it with PostgreSQL's durable defaults
(:data:`BENCH_SETTINGS`: ``fsync``, ``full_page_writes`` and ``synchronous_commit`` on, as
a real catalog would), not with the tests' ``fsync=off``; :func:`server_settings` reads
back what the server used, for the report.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE = Path(__file__).resolve().parent.parent / "streamdata" / "testing" / "_postgres.py"

#: Server settings of the benchmark cluster: PostgreSQL's defaults (durable commits),
#: with room for the benchmark's processes.
BENCH_SETTINGS = ("max_connections=200",)
#: The settings reported with the numbers.
REPORTED = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "wal_buffers",
    "wal_writer_delay",
    "commit_delay",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_buffers",
    "work_mem",
    "max_connections",
)


def _load() -> ModuleType:
    """This checkout's ``streamdata/testing/_postgres.py``, loaded from its file."""
    spec = importlib.util.spec_from_file_location("_bench_postgres", _MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclass looks its module up)
    spec.loader.exec_module(module)
    return module


_postgres = _load()
#: The tests' settings (``fsync=off``): for measuring a driver's own cost, not the disk's.
TEST_SETTINGS: tuple[str, ...] = _postgres.TEST_SETTINGS


@contextlib.contextmanager
def bench_cluster(
    database: str = "bench", settings: Sequence[str] = BENCH_SETTINGS
) -> Iterator[Any]:
    """A new cluster (a ``PostgresCluster``) with durable settings, removed on exit.

    Raises:
        RuntimeError: If the PostgreSQL server binaries are not installed.
        subprocess.CalledProcessError: If the cluster cannot be made.
    """
    with _postgres.postgres_cluster(database, settings=settings) as cluster:
        yield cluster


def server_settings(cluster: Any) -> list[tuple[str, str]]:
    """``(name, value)`` of each :data:`REPORTED` setting, as the server shows it."""
    names = ", ".join(f"'{name}'" for name in REPORTED)
    out = cluster.psql(
        "SELECT name || '=' || current_setting(name) FROM pg_settings "
        f"WHERE name IN ({names}) ORDER BY name"
    )
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return [(name, found.get(name, "?")) for name in REPORTED]


def server_pids(cluster: Any) -> list[int]:
    """The cluster's processes: the postmaster and its children (backends, WAL writer...)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    try:
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    except OSError:
        children = []
    return [postmaster, *map(int, children)]


def data_filesystem(cluster: Any) -> str:
    """The filesystem type of the cluster's data directory (e.g. ``ext4``)."""
    try:
        done = subprocess.run(
            ["df", "-T", str(cluster.directory)],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return done.stdout.splitlines()[1].split()[1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"

"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's server on a loopback port.

:func:`postgres_cluster` runs ``initdb`` in a new temporary directory, starts the server
with ``pg_ctl start -w`` on a free port of 127.0.0.1 (its Unix socket in a private
directory of its own), creates a database, and on the way out stops it
(``pg_ctl stop -m fast``) and removes the directory, also when something failed on the way
in. PostgreSQL refuses to run as root: when the tests do, ``initdb`` and ``pg_ctl`` run as
the ``postgres`` user (``runuser``), which owns the directory. Authentication is ``trust``
and the superuser is ``postgres``, whoever runs the tests.

The tests use :data:`TEST_SETTINGS` (no ``fsync``: speed over surviving an OS crash); the
benchmarks pass the settings they measure. The module needs only the standard library:
the benchmarks load it from its file, whichever streamdata tree they measure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TEST_SETTINGS", "PostgresCluster", "find_bindir", "postgres_cluster"]

#: Where Debian puts the server binaries; the newest version found is used.
BINDIR_PATTERN = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"
#: Settings for a test cluster: durability against the OS crashing is not needed, a
#: server or client being killed is still safe (the OS keeps what was written).
TEST_SETTINGS = ("fsync=off", "full_page_writes=off", "max_connections=200")


@dataclass(frozen=True, slots=True)
class PostgresCluster:
    """A running cluster and the database made in it.

    Attributes:
        bindir: The directory of the server binaries used.
        directory: The temporary directory holding the data, socket and log.
        port: The loopback TCP port the server listens on.
        database: The name of the database created at start.
    """

    bindir: str
    directory: Path
    port: int
    database: str

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.directory / "data"

    def url(self, database: str | None = None) -> str:
        """A ``postgresql://`` URL of ``database`` (default: the one created at start)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"

    def create_database(self, name: str) -> str:
        """Create one more database; returns its URL.

        Raises:
            subprocess.CalledProcessError: If ``createdb`` fails.
        """
        _run([f"{self.bindir}/createdb", *self._client_args(), name])
        return self.url(name)

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` with ``psql`` and return its unaligned output.

        Raises:
            subprocess.CalledProcessError: If ``psql`` fails.
        """
        args = [f"{self.bindir}/psql", *self._client_args(), "-d", database or self.database]
        return _run([*args, "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]).strip()

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``): every connection is dropped.

        Raises:
            subprocess.CalledProcessError: If ``pg_ctl`` fails.
        """
        restart = [f"{self.bindir}/pg_ctl", "restart", "-m", "fast", "-w", "-D", str(self.data)]
        _run([*restart, "-l", str(self.directory / "server.log")], as_server=True)

    def _client_args(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER]


def find_bindir() -> str | None:
    """The newest ``/usr/lib/postgresql/N/bin`` that holds ``initdb`` (None: not installed)."""
    found = [d for d in glob.glob(BINDIR_PATTERN) if os.access(f"{d}/initdb", os.X_OK)]
    found.sort(key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    return found[-1] if found else None


def _run(args: list[str], *, as_server: bool = False) -> str:
    """Run a command (as the ``postgres`` user if ``as_server`` and we are root)."""
    if as_server and os.geteuid() == 0:
        args = ["runuser", "-u", SUPERUSER, "--", *args]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, args, done.stdout, done.stderr)
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_directory() -> Path:
    """A new temporary directory, owned by ``postgres`` when we are root."""
    directory = Path(tempfile.mkdtemp(prefix="streamdata-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SUPERUSER)
        os.chown(directory, user.pw_uid, user.pw_gid)
    directory.chmod(0o700)
    return directory


def _start(bindir: str, directory: Path, port: int, settings: Sequence[str]) -> None:
    """``initdb`` and ``pg_ctl start -w`` in ``directory``, listening on ``port``."""
    data, sockets = directory / "data", directory / "sockets"
    initdb = [f"{bindir}/initdb", "-D", str(data), "-U", SUPERUSER]
    _run([*initdb, "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"], as_server=True)
    _run(["mkdir", "-m", "0700", str(sockets)], as_server=True)
    options = [
        f"-p {port}",
        "-c listen_addresses=127.0.0.1",
        f"-c unix_socket_directories={sockets}",
    ]
    options += [f"-c {setting}" for setting in settings]
    start = [f"{bindir}/pg_ctl", "start", "-w", "-t", "60", "-D", str(data)]
    _run([*start, "-l", str(directory / "server.log"), "-o", " ".join(options)], as_server=True)


def _stop(bindir: str, directory: Path) -> None:
    """Stop the server if it runs, then remove ``directory``."""
    try:
        if (directory / "data" / "postmaster.pid").exists():
            stop = [f"{bindir}/pg_ctl", "stop", "-m", "fast", "-w", "-D", str(directory / "data")]
            _run(stop, as_server=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster(
    database: str = "streamdata", *, settings: Sequence[str] = TEST_SETTINGS
) -> Iterator[PostgresCluster]:
    """A new cluster with one database, stopped and removed on exit (see the module).

    Args:
        database: The name of the database to create.
        settings: Server settings (``name=value``), passed to ``postgres -c``.

    Raises:
        RuntimeError: If the PostgreSQL server binaries are not installed.
        subprocess.CalledProcessError: If ``initdb``, ``pg_ctl`` or ``createdb`` fails.
    """
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(f"no PostgreSQL server in {BINDIR_PATTERN}: apt-get install postgresql")
    directory = _make_directory()
    try:
        port = _free_port()
        _start(bindir, directory, port, settings)
        cluster = PostgresCluster(bindir, directory, port, database)
        cluster.create_database(database)
        yield cluster
    finally:
        _stop(bindir, directory)

"""The throwaway PostgreSQL cluster (streamdata/testing/_postgres.py) works and goes away."""

from __future__ import annotations

import socket
import subprocess

import pytest

from streamdata.testing._postgres import PostgresCluster, postgres_cluster


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _running(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie left to a lazy init does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_session_cluster_answers_queries(postgres: PostgresCluster) -> None:
    """The session's cluster runs PostgreSQL and serves the database it created."""
    assert postgres.psql("SELECT current_database()") == postgres.database
    assert postgres.psql("SHOW listen_addresses") == "127.0.0.1"
    assert postgres.url().startswith(f"postgresql://postgres@127.0.0.1:{postgres.port}/")


def test_session_cluster_makes_more_databases(postgres: PostgresCluster) -> None:
    """create_database gives a new, empty database with its own URL."""
    url = postgres.create_database("more_databases")
    assert url.endswith("/more_databases")
    assert (
        postgres.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "more_databases"
        )
        == "0"
    )


def test_cluster_is_stopped_and_removed_on_exit() -> None:
    """Leaving the context stops the server (port closed) and removes its directory."""
    with postgres_cluster() as cluster:
        pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        assert _accepts(cluster.port)
    assert not cluster.directory.exists()
    assert not _accepts(cluster.port)
    assert not _running(pid)


def test_cluster_is_removed_after_a_failure() -> None:
    """A failure inside the context still stops the server and removes the directory."""
    with pytest.raises(subprocess.CalledProcessError), postgres_cluster() as cluster:
        cluster.psql("SELECT no_such_function()")
    assert not cluster.directory.exists()
    assert not _accepts(cluster.port)

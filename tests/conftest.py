"""Shared fixtures: real SSH servers on the loopback interface and connector environments.

``connector_env`` runs a test once per connector: the local one, SSH to an in-process
asyncssh server, and SSH to a real OpenSSH ``sshd``. Every server runs on this machine, so
each environment's files live in the test's own temporary directory on this filesystem.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from catalog_kinds import CATALOG_KINDS, Catalogs
from cli_env import Env, make_env

from streamdata import Connector, ExecutionLocation, LocalConnector, SSHConnector
from streamdata.testing import AsyncSSHTestServer, SSHTestServer, _openssh, open_ssh_server
from streamdata.testing._postgres import PostgresCluster, postgres_cluster

CONNECTOR_KINDS = ("local", "asyncssh", "openssh")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def openssh_server() -> AsyncIterator[SSHTestServer]:
    """A real OpenSSH sshd on a free loopback port, shared by the whole test session."""
    async with _openssh.openssh_server() as server:
        yield server


@pytest_asyncio.fixture
async def asyncssh_server() -> AsyncIterator[AsyncSSHTestServer]:
    """An in-process asyncssh server on a free loopback port, one per test."""
    async with open_ssh_server() as server:
        yield server


@dataclass
class ConnectorEnv:
    """A connector, one of its locations, and a fresh directory that location sees.

    Attributes:
        kind: ``"local"``, ``"asyncssh"`` or ``"openssh"``.
        connector: The connector under test.
        location: A location of it.
        root: An empty directory, visible to the location at the same path.
    """

    kind: str
    connector: Connector
    location: ExecutionLocation
    root: Path

    def path(self, relpath: str) -> str:
        """The absolute path of ``relpath`` below :attr:`root`."""
        return os.path.join(self.root, relpath)

    def write_file(
        self, relpath: str, data: bytes = b"", *, mode: int = 0o644, mtime: float | None = None
    ) -> str:
        """Create a file (and its parents) on the location; return its absolute path."""
        path = Path(self.path(relpath))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return str(path)


@pytest.fixture(params=CONNECTOR_KINDS)
async def connector_env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
) -> AsyncIterator[ConnectorEnv]:
    """The same test against the local connector, in-process SSH and OpenSSH."""
    kind: str = request.param
    root = tmp_path / "root"
    root.mkdir()
    connector: Connector
    if kind == "local":
        connector = LocalConnector()
        location = ExecutionLocation("localhost", "local", local=True)
    else:
        server = asyncssh_server if kind == "asyncssh" else openssh_server
        connector = SSHConnector([server.ssh_host(name="remote")])
        location = ExecutionLocation("remote", "ssh")
    async with connector:
        yield ConnectorEnv(kind, connector, location, root)


@pytest.fixture
def env(tmp_path: Path, ssh_server: AsyncSSHTestServer) -> Env:
    """A private environment for the ``streamdata`` command (see tests/cli_env.py)."""
    return make_env(tmp_path, ssh_server)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port, shared by the session."""
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=CATALOG_KINDS)
def catalogs(request: pytest.FixtureRequest, tmp_path: Path) -> Catalogs:
    """The same test against each kind of catalog (see tests/catalog_kinds.py)."""
    kind: str = request.param
    if kind != "postgresql":
        return Catalogs(kind, tmp_path)
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return Catalogs(kind, tmp_path, cluster.create_database)

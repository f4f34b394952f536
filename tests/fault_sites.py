"""SSH sites that fault tests can break: stopped, frozen, or cut mid-stream.

Each :class:`FaultSite` is a real SSH server of its own (the in-process asyncssh one, or
OpenSSH's ``sshd`` logged into as the plain user :data:`PLAIN_USER`, shell ``/bin/sh``),
reached through a :class:`~streamdata.testing.DelayLine` (no delay) that can cut its
connections. Its files live in a directory that the
user logging in owns (:func:`user_directory`): the tests' own ``tmp_path`` is private to
the user running them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from far import known_hosts_for

from streamdata import ExecutionLocation, SSHConnector
from streamdata.testing import DelayLine, Direction, SSHTestServer, open_ssh_server
from streamdata.testing._openssh import OpenSSHTestServer, openssh_server
from streamdata.testing._sshd import plain_user

#: The account OpenSSH fault tests log in as (created once, when run as root).
PLAIN_USER = "streamdata-faults"
SERVER_KINDS = ("asyncssh", "openssh")


@dataclass
class FaultSite:
    """One SSH deployment with one location, on a server the test may break.

    Attributes:
        deployment: The deployment name (also the location name).
        server: The server.
        line: The line the connector goes through (it counts and cuts connections).
        connector: An SSH connector to the location, through the line.
    """

    deployment: str
    server: SSHTestServer
    line: DelayLine
    connector: SSHConnector
    _stop: contextlib.AsyncExitStack

    @property
    def location(self) -> ExecutionLocation:
        """The site's location."""
        return ExecutionLocation(self.deployment, self.deployment)

    def cut_after(self, count: int) -> None:
        """Once ``count`` more bytes came from the server, cut every connection and reset
        each new one (the host went down mid-stream)."""
        limit = self.line.carried(Direction.DOWN) + count
        self.line.cut_after(limit, Direction.DOWN, then_refuse=True)

    async def stop(self) -> None:
        """Stop the server for real: connections are dropped, new ones refused."""
        await self.line.close()
        if isinstance(self.server, OpenSSHTestServer):
            await self.server.stop()
        await self._stop.aclose()


@contextlib.asynccontextmanager
async def fault_site(kind: str, deployment: str, scratch: Path) -> AsyncIterator[FaultSite]:
    """A :class:`FaultSite` on a fresh server of ``kind`` (``asyncssh`` or ``openssh``)."""
    async with contextlib.AsyncExitStack() as outer:
        stop = contextlib.AsyncExitStack()
        outer.push_async_callback(stop.aclose)
        server: SSHTestServer
        if kind == "asyncssh":
            server = await stop.enter_async_context(open_ssh_server())
        else:
            server = await stop.enter_async_context(openssh_server(user=PLAIN_USER))
        line = await outer.enter_async_context(DelayLine(server.host, server.port))
        # Copies of the key files: a stopped server's directory is gone.
        known = known_hosts_for(server, line.port, scratch / f"known_hosts-{deployment}")
        key = scratch / f"key-{deployment}"
        shutil.copy(server.client_key, key)
        host = server.ssh_host(
            name=deployment, port=line.port, known_hosts=known, client_keys=[key]
        )
        connector = SSHConnector([host], connect_timeout=5, max_connections=1)
        await outer.enter_async_context(connector)
        yield FaultSite(deployment, server, line, connector, stop)


@contextlib.contextmanager
def user_directory() -> Iterator[Path]:
    """A fresh directory the fault tests' login user owns (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix="streamdata-faults-"))
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(plain_user(PLAIN_USER))
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def same_file(path: Path, data: bytes, mtime: float = 1_700_000_000.0) -> str:
    """Write ``data`` at ``path`` (parents made, readable by all) with a fixed mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    path.write_bytes(data)
    path.chmod(0o644)
    os.utime(path, (mtime, mtime))
    return str(path)


def leftovers(directory: Path) -> list[str]:
    """Temporary files of transfers left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".streamdata-tmp"))

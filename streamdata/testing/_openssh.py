"""The system's OpenSSH ``sshd`` on the loopback interface, for tests.

:func:`openssh_server` generates the keys (as :mod:`._servers` does for the in-process
server) and yields the same :class:`~._servers.SSHTestServer`; the process handling is
in :mod:`._sshd`.
"""

from __future__ import annotations

import contextlib
import getpass
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from ._servers import LOOPBACK, ServerKeys, SSHTestServer
from ._sshd import (
    kill_sshd_children,
    launch_sshd,
    make_privilege_separation_directory,
    stop_sshd,
)

__all__ = ["openssh_server"]


@contextlib.asynccontextmanager
async def openssh_server(
    *,
    sshd: str = "/usr/sbin/sshd",
    max_sessions: int = 10,
    startup_timeout: float = 10.0,
) -> AsyncIterator[SSHTestServer]:
    """Run OpenSSH's ``sshd`` on ``127.0.0.1`` and a free port, with generated keys.

    ``sshd`` runs in the foreground (``-D -e``) with its own configuration in a temporary
    directory; its log is ``directory / "sshd.log"``. Running as root needs the privilege
    separation directory ``/run/sshd``, which is created if missing.

    Args:
        sshd: The ``sshd`` executable.
        max_sessions: The server's ``MaxSessions`` (channels per connection).
        startup_timeout: Seconds to wait for the server to accept connections.

    Yields:
        The running server; it is terminated when the context exits.

    Raises:
        RuntimeError: If ``sshd`` does not start listening in time.
    """
    make_privilege_separation_directory()
    with tempfile.TemporaryDirectory(prefix="streamdata-sshd-") as temp:
        directory = Path(temp)
        keys = ServerKeys(directory)
        process, port = await launch_sshd(
            sshd,
            directory,
            LOOPBACK,
            host_key=keys.host_key_path,
            authorized_keys=keys.authorized_keys_path,
            max_sessions=max_sessions,
            log=directory / "sshd.log",
            seconds=startup_timeout,
        )
        try:
            keys.write_known_hosts(port)
            yield SSHTestServer(
                port=port,
                username=getpass.getuser(),
                client_key=keys.client_key_path,
                known_hosts=keys.known_hosts_path,
                directory=directory,
                kill_connections=lambda: kill_sshd_children(process.pid),
            )
        finally:
            await stop_sshd(process)

"""The system's OpenSSH ``sshd`` on the loopback interface, for tests.

:func:`openssh_server` generates the keys (as :mod:`._servers` does for the in-process
server) and yields an :class:`OpenSSHTestServer`, an :class:`~._servers.SSHTestServer`
that can also be stopped, or frozen and thawed (``SIGSTOP``/``SIGCONT``: a server that
accepts connections and never answers). The process handling is in :mod:`._sshd`.

With ``user=``, clients log in as that user instead of the one running the tests: a
plain account whose shell is ``/bin/sh``, created once if missing (this needs root;
otherwise the current user is kept). Fault tests log in that way: a root login shell
that is killed mid-start may leave a stale lock behind (here root's ``~/.bashrc`` runs
``pyenv``), which makes every later root login wait for a minute.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from ._servers import LOOPBACK, ServerKeys, SSHTestServer
from ._sshd import (
    kill_sshd_children,
    launch_sshd,
    make_privilege_separation_directory,
    plain_user,
    stop_sshd,
)

__all__ = ["OpenSSHTestServer", "openssh_server"]


class OpenSSHTestServer(SSHTestServer):
    """An :class:`~._servers.SSHTestServer` run by a real ``sshd`` that tests may disturb."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        port: int,
        username: str,
        keys: ServerKeys,
        directory: Path,
    ) -> None:
        super().__init__(
            port=port,
            username=username,
            client_key=keys.client_key_path,
            known_hosts=keys.known_hosts_path,
            directory=directory,
            kill_connections=lambda: kill_sshd_children(process.pid),
        )
        self._process = process

    async def stop(self) -> None:
        """Stop the server and drop its connections: new connections are refused."""
        self.thaw()
        await stop_sshd(self._process)

    def freeze(self) -> None:
        """Stop the listening ``sshd`` (``SIGSTOP``): connections are accepted, never served."""
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server run again (``SIGCONT``)."""
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)


def _login(user: str | None) -> str:
    """The user to log in as: ``user`` (made if missing) when running as root, else ours."""
    return plain_user(user) if user is not None and os.geteuid() == 0 else getpass.getuser()


def _keys(directory: Path, login: str) -> ServerKeys:
    """Keys in ``directory``; the authorized ones readable by ``login`` (sshd reads them so)."""
    keys = ServerKeys(directory)
    if login != getpass.getuser():
        directory.chmod(0o711)
        keys.authorized_keys_path.chmod(0o644)
    return keys


@contextlib.asynccontextmanager
async def openssh_server(
    *,
    sshd: str = "/usr/sbin/sshd",
    max_sessions: int = 10,
    startup_timeout: float = 10.0,
    user: str | None = None,
) -> AsyncIterator[OpenSSHTestServer]:
    """Run OpenSSH's ``sshd`` on ``127.0.0.1`` and a free port, with generated keys.

    ``sshd`` runs in the foreground (``-D -e``) with its own configuration in a temporary
    directory; its log is ``directory / "sshd.log"``. Running as root needs the privilege
    separation directory ``/run/sshd``, which is created if missing.

    Args:
        sshd: The ``sshd`` executable.
        max_sessions: The server's ``MaxSessions`` (channels per connection).
        startup_timeout: Seconds to wait for the server to accept connections.
        user: Log in as this plain user (shell ``/bin/sh``, created if missing) when
            running as root; None (or not root): as the current user.

    Yields:
        The running server; it is terminated when the context exits.

    Raises:
        RuntimeError: If ``sshd`` does not start listening in time.
    """
    make_privilege_separation_directory()
    login = _login(user)
    with tempfile.TemporaryDirectory(prefix="streamdata-sshd-") as temp:
        directory = Path(temp)
        keys = _keys(directory, login)
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
        server = OpenSSHTestServer(
            process, port=port, username=login, keys=keys, directory=directory
        )
        try:
            keys.write_known_hosts(port)
            yield server
        finally:
            await server.stop()

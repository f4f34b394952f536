"""A loopback OpenSSH ``sshd`` for the SSH benchmarks, with keys made by ``ssh-keygen``.

The benchmarks do not use streamdata's own test servers (private modules that move
between versions): this module needs only the standard library and the OpenSSH tools,
and builds the :class:`streamdata.SSHHost` of the server through the public API, so the
same worker runs against any streamdata tree (``run.py --before REF``).

``sshd`` runs in the foreground (``-D -e``) on ``127.0.0.1`` and a free port, with its
own configuration, host key, client key and ``known_hosts`` in a temporary directory
(its log is ``sshd.log`` there); as root it needs ``/run/sshd``, created if missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

_SSHD_CONFIG = """\
ListenAddress {host}
Port {port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile {pid_file}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxSessions {max_sessions}
MaxStartups 100:30:200
Subsystem sftp {sftp_server}
"""


@dataclass(frozen=True)
class OpenSSHServer:
    """How to reach a running benchmark ``sshd``."""

    host: str
    port: int
    username: str
    client_key: Path
    known_hosts: Path
    directory: Path
    pid: int

    def ssh_host(self, **options: Any) -> Any:
        """A :class:`streamdata.SSHHost` reaching this server (``options`` override, e.g. name)."""
        from streamdata import SSHHost

        settings: dict[str, Any] = {
            "port": self.port,
            "username": self.username,
            "client_keys": [str(self.client_key)],
            "known_hosts": str(self.known_hosts),
        }
        settings.update(options)
        return SSHHost(self.host, **settings)

    def kill_connections(self) -> None:
        """Kill the per-connection processes of this ``sshd``."""
        kill_children(self.pid)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def kill_children(parent: int) -> None:
    """Kill the processes whose parent is ``parent`` (one per SSH connection)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


async def _listening(process: subprocess.Popen[bytes], port: int, seconds: float) -> bool:
    """Poll until ``port`` accepts connections; False if ``process`` exits first."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``sshd`` (kill after 10 s) and every connection it serves."""
    if process.poll() is None:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
    kill_children(process.pid)


async def _launch(
    sshd: str, directory: Path, max_sessions: int, seconds: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``sshd`` on a free port (three tries, in case the port was taken meanwhile)."""
    log = directory / "sshd.log"
    for _ in range(3):
        port = _free_port(LOOPBACK)
        config = directory / "sshd_config"
        config.write_text(
            _SSHD_CONFIG.format(
                host=LOOPBACK,
                port=port,
                host_key=directory / "host_key",
                authorized_keys=directory / "authorized_keys",
                pid_file=directory / "sshd.pid",
                max_sessions=max_sessions,
                sftp_server=SFTP_SERVER,
            )
        )
        with log.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: ASYNC220 -- only forks; waited for below
                [sshd, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        if await _listening(process, port, seconds):
            return process, port
        await _stop(process)
    tail = log.read_bytes()[-2000:].decode(errors="replace")
    raise RuntimeError(f"sshd did not start listening on {LOOPBACK}:\n{tail}")


@contextlib.asynccontextmanager
async def openssh_server(
    *, sshd: str = SSHD, max_sessions: int = 10, startup_timeout: float = 10.0
) -> AsyncIterator[OpenSSHServer]:
    """Run ``sshd`` on ``127.0.0.1`` and a free port with fresh keys; stop it on exit.

    Raises:
        RuntimeError: If ``sshd`` does not start listening in time.
    """
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="streamdata-bench-sshd-") as temp:
        directory = Path(temp)
        _keygen(directory / "host_key")
        _keygen(directory / "client_key")
        (directory / "authorized_keys").write_bytes((directory / "client_key.pub").read_bytes())
        process, port = await _launch(sshd, directory, max_sessions, startup_timeout)
        try:
            public = (directory / "host_key.pub").read_text().split()[:2]
            known_hosts = directory / "known_hosts"
            known_hosts.write_text(f"[{LOOPBACK}]:{port} {' '.join(public)}\n")
            yield OpenSSHServer(
                host=LOOPBACK,
                port=port,
                username=getpass.getuser(),
                client_key=directory / "client_key",
                known_hosts=known_hosts,
                directory=directory,
                pid=process.pid,
            )
        finally:
            await _stop(process)

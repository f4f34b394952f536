"""A loopback OpenSSH ``sshd`` for the SSH benchmarks, with keys made by ``ssh-keygen``.

The benchmark workers must run against any streamdata tree (``run.py --before REF``), so
they import streamdata only through its public API. The process handling of ``sshd``
(configuration, free port, start, stop) is this checkout's
``streamdata/testing/_sshd.py``, which needs only the standard library: it is loaded
from its file, whichever tree ``PYTHONPATH`` names. This module adds the keys and builds
the :class:`streamdata.SSHHost` of the server through the public API.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

LOOPBACK = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
#: The plain user (shell ``/bin/sh``) the tools log in as when the benchmark runs as root.
USER = "sdbench"
_SSHD_MODULE = Path(__file__).resolve().parent.parent / "streamdata" / "testing" / "_sshd.py"


def _load_sshd() -> ModuleType:
    """This checkout's ``streamdata/testing/_sshd.py``, loaded from its file."""
    spec = importlib.util.spec_from_file_location("_bench_sshd", _SSHD_MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_sshd = _load_sshd()


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


def login_user() -> str:
    """The user the tools log in as: :data:`USER` (made if missing) as root, else this one.

    As on a real site, a plain account whose shell is ``/bin/sh``: root's login shell here
    runs ``pyenv`` from ``~/.bashrc`` (some 135 ms of CPU per channel, paid by every tool),
    and a root login killed mid-start can leave a lock that stalls later logins.
    """
    return _sshd.plain_user(USER) if os.geteuid() == 0 else getpass.getuser()


def give(path: Path, user: str) -> Path:
    """Make ``path`` a directory (if missing) owned by ``user``: the remote side writes there."""
    path.mkdir(parents=True, exist_ok=True)
    if user != getpass.getuser():
        shutil.chown(path, user, user)
    return path


def kill_children(parent: int) -> None:
    """Kill the processes whose parent is ``parent`` (one per SSH connection)."""
    _sshd.kill_sshd_children(parent)


@contextlib.asynccontextmanager
async def openssh_server(
    *,
    sshd: str = SSHD,
    max_sessions: int = 10,
    startup_timeout: float = 10.0,
    user: str | None = None,
) -> AsyncIterator[OpenSSHServer]:
    """Run ``sshd`` on ``127.0.0.1`` and a free port with fresh keys; stop it on exit.

    ``user`` (default: the current one) is the account the keys log in as; sshd reads
    its authorized keys as that user, so they are made readable to it.

    Raises:
        RuntimeError: If ``sshd`` does not start listening in time.
    """
    _sshd.make_privilege_separation_directory()
    with tempfile.TemporaryDirectory(prefix="streamdata-bench-sshd-") as temp:
        directory = Path(temp)
        _keygen(directory / "host_key")
        _keygen(directory / "client_key")
        (directory / "authorized_keys").write_bytes((directory / "client_key.pub").read_bytes())
        login = user or getpass.getuser()
        if login != getpass.getuser():
            directory.chmod(0o711)  # noqa: ASYNC240 -- set-up, before any timing
            (directory / "authorized_keys").chmod(0o644)
        process, port = await _sshd.launch_sshd(
            sshd,
            directory,
            LOOPBACK,
            host_key=directory / "host_key",
            authorized_keys=directory / "authorized_keys",
            max_sessions=max_sessions,
            log=directory / "sshd.log",
            seconds=startup_timeout,
        )
        try:
            public = (directory / "host_key.pub").read_text().split()[:2]
            known_hosts = directory / "known_hosts"
            known_hosts.write_text(f"[{LOOPBACK}]:{port} {' '.join(public)}\n")
            yield OpenSSHServer(
                host=LOOPBACK,
                port=port,
                username=login,
                client_key=directory / "client_key",
                known_hosts=known_hosts,
                directory=directory,
                pid=process.pid,
            )
        finally:
            await _sshd.stop_sshd(process)

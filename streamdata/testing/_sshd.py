"""Running the system's OpenSSH ``sshd`` for tests: its configuration, a free port, start,
wait until it listens, stop, killing its per-connection processes, and the plain user
tests may log in as.

Used by :func:`streamdata.testing._openssh.openssh_server`, which generates the keys and
passes in the host and the key files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = [
    "kill_sshd_children",
    "launch_sshd",
    "make_privilege_separation_directory",
    "plain_user",
    "stop_sshd",
]

#: ``useradd``'s exit status when the user exists already (another test made it).
_USER_EXISTS = 9

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


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_listening(
    process: subprocess.Popen[bytes], host: str, port: int, seconds: float
) -> bool:
    """Poll until ``port`` accepts connections; False if ``process`` exits first."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def make_privilege_separation_directory() -> None:
    """``sshd`` run as root needs ``/run/sshd``; make it if missing."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


def plain_user(name: str) -> str:
    """Make sure the plain user ``name`` exists (shell ``/bin/sh``); return its name.

    Created once, with a home directory and a password that cannot be used (``*``: not
    locked, which ``sshd`` would refuse); an existing user is left as it is. Needs root.

    Raises:
        RuntimeError: If the user cannot be created.
    """
    try:
        pwd.getpwnam(name)
    except KeyError:
        command = ["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", name]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode not in (0, _USER_EXISTS):
            raise RuntimeError(f"cannot create the user {name!r}: {done.stderr.decode()}") from None
    return name


def kill_sshd_children(parent: int) -> None:
    """Kill the per-connection processes of the listening sshd ``parent``."""
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


def _write_sshd_config(
    directory: Path,
    host: str,
    port: int,
    *,
    host_key: Path,
    authorized_keys: Path,
    max_sessions: int,
) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        _SSHD_CONFIG.format(
            host=host,
            port=port,
            host_key=host_key,
            authorized_keys=authorized_keys,
            pid_file=directory / "sshd.pid",
            max_sessions=max_sessions,
            sftp_server="/usr/lib/openssh/sftp-server",
        )
    )
    return config


async def _start_sshd(
    sshd: str, config: Path, host: str, port: int, log: Path, seconds: float
) -> subprocess.Popen[bytes] | None:
    with log.open("ab") as log_file:
        # Popen only forks and execs; the process is watched without blocking below.
        process = subprocess.Popen(  # noqa: ASYNC220
            [sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    if await _wait_listening(process, host, port, seconds):
        return process
    await stop_sshd(process)
    return None


async def stop_sshd(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``sshd`` (killing it after 10 s) and every connection it serves."""
    if process.poll() is None:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
    kill_sshd_children(process.pid)


async def launch_sshd(
    sshd: str,
    directory: Path,
    host: str,
    *,
    host_key: Path,
    authorized_keys: Path,
    max_sessions: int,
    log: Path,
    seconds: float,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``sshd`` on ``host`` and a free port, trying another if it was taken meanwhile.

    Its configuration is written to ``directory``; its output is appended to ``log``.

    Returns:
        The running process and its port.

    Raises:
        RuntimeError: If ``sshd`` does not start listening within ``seconds``, three times.
    """
    for _ in range(3):
        port = _free_port(host)
        config = _write_sshd_config(
            directory,
            host,
            port,
            host_key=host_key,
            authorized_keys=authorized_keys,
            max_sessions=max_sessions,
        )
        process = await _start_sshd(sshd, config, host, port, log, seconds)
        if process is not None:
            return process, port
    tail = log.read_bytes()[-2000:].decode(errors="replace")  # noqa: ASYNC240 -- a failed start
    raise RuntimeError(f"sshd did not start listening on {host}:\n{tail}")

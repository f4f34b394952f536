"""Errors of the command as the operator reads them: one short line, the whole story on demand.

A full disk is simulated by the kernel: the command runs with ``RLIMIT_FSIZE`` of 1 MiB
and ``SIGXFSZ`` blocked (a mask its ``cp`` and ``tar`` inherit, unlike an ignored
signal), so every write past 1 MiB fails with ``EFBIG``, as ``ENOSPC`` would, in each
of the many files of a tree; ``cp`` and ``tar`` then complain once per file.
Permission problems use ``/sys``, where even root may create nothing.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from cli_env import Env, Result, closed_port, one_line_error, sites_text

from streamdata.testing import AsyncSSHTestServer, SSHTestServer

FILES = 30
_TEMPORARY = re.compile(r"\.streamdata-tmp-[0-9a-f]+")


def _small_disk() -> None:
    """In the child: writes past 1 MiB fail with EFBIG instead of killing the process."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGXFSZ})
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


async def _run_on_small_disk(env: Env, *args: str) -> Result:
    """Run the command as :meth:`Env.run` does, with writes limited to 1 MiB a file."""
    return await env.run(*args, preexec_fn=_small_disk, seconds=120)


def _tree_of_big_files(env: Env) -> Path:
    tree = env.root / "tree"
    tree.mkdir()
    for index in range(FILES):
        with open(tree / f"a-file-with-a-rather-long-name-{index:03}.bin", "wb") as big:
            big.write(b"\1" * 4096)
            big.truncate(3 << 19)  # 1.5 MiB, mostly a hole: cheap to make, too big to write
    return tree


@pytest.fixture
def out() -> Iterator[Path]:
    """A new directory with a short path, whatever the test's own (under xdist, a longer
    one): the tool's complaint names it, and the summary keeps only its first characters."""
    path = Path(tempfile.mkdtemp(prefix="sd-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("source", ["local", "remote"])
async def test_a_full_disk_is_one_short_line_and_debug_shows_everything(
    env: Env, out: Path, source: str
) -> None:
    """cp (local tree) or tar (SSH download) failing on every file: the error line is one
    short line with the tool's first complaint; --debug shows every file's complaint."""
    tree = _tree_of_big_files(env)
    target = f"site:{out}/copy"
    short = await _run_on_small_disk(env, "cp", f"{source}:{tree}", target)
    one_line_error(short, 1)
    assert "File too large" in short.err
    assert len(short.err) < 700, short.err
    assert short.err.count("a-file-with-a-rather-long-name") == 1
    full = await _run_on_small_disk(env, "--debug", "cp", f"{source}:{tree}", target)
    assert full.code == 1
    last = full.err.strip().splitlines()[-1]
    assert _TEMPORARY.sub("TMP", last) == _TEMPORARY.sub("TMP", short.err.strip())
    named = {f"a-file-with-a-rather-long-name-{index:03}" in full.err for index in range(FILES)}
    assert named == {True}
    assert list(out.iterdir()) == []


async def test_a_failing_remote_command_names_no_internal_script(env: Env) -> None:
    """A file that cannot be created on an SSH host reads `sh: ... cannot create`, with no
    internal name of streamdata's command launcher."""
    source = env.file("src/big.bin", os.urandom(2 << 20))  # big enough to go through `cat`
    result = await env.run("cp", source, "remote:box:/sys/kernel/streamdata-test.bin")
    one_line_error(result, 1)
    assert "cannot create" in result.err
    assert "standby" not in result.err


@pytest.mark.parametrize("server_kind", ["asyncssh", "openssh"])
async def test_parents_that_cannot_be_made_report_the_real_cause(
    tmp_path: Path,
    server_kind: str,
    ssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
) -> None:
    """mkdir refused under /sys on an SSH host: the error gives the refusal, not a missing
    directory or a file in the way."""
    server = ssh_server if server_kind == "asyncssh" else openssh_server
    for directory in ("home", "work"):
        (tmp_path / directory).mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(sites_text(server, closed_port()))
    env = Env(tmp_path, tmp_path / "catalog.sqlite", sites)
    source = env.file("src/f.txt")
    blocked = f"/sys/streamdata-{uuid.uuid4().hex}"
    result = await env.run("cp", source, f"remote:box:{blocked}/sub/f.txt")
    one_line_error(result, 1)
    assert "No such file" not in result.err and "not a directory" not in result.err
    assert "Permission denied" in result.err or "not permitted" in result.err, result.err
    assert blocked in result.err


def _with_known_hosts(env: Env, server: AsyncSSHTestServer, known_hosts: Path) -> None:
    """Point the sites file's SSH deployments at another known_hosts file."""
    text = sites_text(server, closed_port())
    env.sites.write_text(text.replace(str(server.known_hosts), str(known_hosts)))


async def test_changed_and_unknown_host_keys_are_told_apart(
    env: Env, ssh_server: AsyncSSHTestServer
) -> None:
    """A key other than the recorded one is called a change and a possible attack; a host
    the file does not know, or a missing file, is called unknown; each names the file."""
    source = env.file("src/f.txt")
    target = f"remote:{env.root}/copy.txt"
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    changed = env.root / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{ssh_server.port} {other}\n")
    _with_known_hosts(env, ssh_server, changed)
    result = await env.run("cp", source, target)
    one_line_error(result, 1)
    assert "CHANGED" in result.err and "man-in-the-middle" in result.err
    assert str(changed) in result.err and "is unknown" not in result.err
    unknown = env.root / "unknown_known_hosts"
    unknown.write_text(f"[192.0.2.1]:22 {other}\n")
    _with_known_hosts(env, ssh_server, unknown)
    result = await env.run("cp", source, target)
    one_line_error(result, 1)
    assert "is unknown" in result.err and str(unknown) in result.err
    assert "CHANGED" not in result.err and "attack" not in result.err
    missing = env.root / "missing_known_hosts"
    _with_known_hosts(env, ssh_server, missing)
    result = await env.run("cp", source, target)
    one_line_error(result, 1)
    assert "is unknown" in result.err and str(missing) in result.err
    assert "does not exist" in result.err
    assert not (env.root / "copy.txt").exists()


async def test_a_missing_client_key_is_a_configuration_error(
    env: Env, ssh_server: AsyncSSHTestServer
) -> None:
    """A client key file that does not exist: exit 2, one line naming it, no raw errno."""
    missing = env.root / "no_such_key"
    env.sites.write_text(env.sites.read_text().replace(str(ssh_server.client_key), str(missing)))
    result = await env.run("cp", env.file("src/f.txt"), f"remote:{env.root}/copy.txt")
    one_line_error(result, 2)
    assert str(missing) in result.err and "client key" in result.err
    assert "Errno" not in result.err

"""The command in a real terminal (a pty): progress bars render, tables follow."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from streamdata.testing import AsyncSSHTestServer

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_in_pty(args: list[str], env: dict[str, str], seconds: float) -> tuple[int, str]:
    """Run ``args`` with a 40x120 pty as its terminal; return its status and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            output += data
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return process.wait(), output.decode(errors="replace")


def test_demo_draws_progress_bars_and_the_replica_table(tmp_path: Path) -> None:
    """Under a terminal the demo shows bars reaching 100% with a rate, then the tables."""
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "LINES": "40",
        "PYTHONWARNINGS": "error",
    }
    for variable in ("NO_COLOR", "CI", "TERM_PROGRAM"):
        env.pop(variable, None)
    started = time.monotonic()
    status, raw = _run_in_pty(
        [sys.executable, "-m", "streamdata", "demo", "--files", "3", "--size", "4"], env, 60
    )
    assert status == 0, raw[-2000:]
    assert time.monotonic() - started < 60
    assert "\x1b[" in raw  # drawn with terminal control sequences
    text = _ANSI.sub("", raw)
    assert "━" in text
    assert re.search(r"sample-0\.dat: laptop:localhost -> site-a:login-a .*100%", text)
    assert re.search(r"\d+(\.\d+)? [kMG]?B/s", text)
    assert "replicas after the copies" in text
    tail = text[text.index("replicas after check --repair") :]
    assert tail.count("site-b:login-b") == 3
    assert len(re.findall(r"│\s*yes\s*│", tail)) == 9  # every replica available again
    assert not re.search(r"│\s*no\s*│", tail)
    assert not list(tmp_path.glob("data/streamdata/*"))  # the demo keeps its catalog private


async def test_cp_of_a_tree_shows_its_files_in_the_bar(
    ssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Copying a tree over SSH in a terminal shows the files counted, all of them at the end."""
    tree = tmp_path / "tree"
    for index in range(30):
        (tree / f"d{index % 3}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{index % 3}" / f"f{index}").write_bytes(os.urandom(64 << 10))
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[deployments.remote]\ntype = "ssh"\n\n[[deployments.remote.hosts]]\n'
        f'host = "127.0.0.1"\nport = {ssh_server.port}\nname = "box"\n'
        f'username = "{ssh_server.username}"\nclient_keys = ["{ssh_server.client_key}"]\n'
        f'known_hosts = "{ssh_server.known_hosts}"\n'
    )
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm-256color", "COLUMNS": "160"}
    for variable in ("NO_COLOR", "CI", "TERM_PROGRAM"):
        env.pop(variable, None)
    argv = [sys.executable, "-m", "streamdata", "--catalog", str(tmp_path / "catalog.sqlite")]
    argv += ["--sites", str(sites), "cp", f"local:localhost:{tree}", f"remote:box:{tmp_path}/copy"]
    status, raw = await asyncio.to_thread(_run_in_pty, argv, env, 60)
    assert status == 0, raw[-2000:]
    assert "30/30 files" in _ANSI.sub("", raw)
    assert len(list((tmp_path / "copy").rglob("f*"))) == 30


def test_replicate_and_repair_draw_progress_bars(tmp_path: Path) -> None:
    """In a terminal, the copies of replicate and check --repair draw bars reaching 100%."""
    source = tmp_path / "src" / "blob.bin"
    source.parent.mkdir()
    source.write_bytes(os.urandom(4 << 20))
    sites = tmp_path / "sites.toml"
    sites.write_text('[deployments.site]\ntype = "local"\n')
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm-256color", "COLUMNS": "160"}
    for variable in ("NO_COLOR", "CI", "TERM_PROGRAM"):
        env.pop(variable, None)
    argv = [sys.executable, "-m", "streamdata", "--catalog", str(tmp_path / "catalog.sqlite")]
    argv += ["--sites", str(sites)]
    seeded = subprocess.run([*argv, "cp", str(source), f"site:{tmp_path}/seed.bin"], env=env)
    assert seeded.returncode == 0
    replica = tmp_path / "out" / "blob.bin"
    replicate = [*argv, "replicate", str(source), "site", "--dst-path", str(replica)]
    status, raw = _run_in_pty(replicate, env, 60)
    assert status == 0, raw[-2000:]
    assert re.search(r"\.bin: site:localhost -> site:localhost .*100%", _ANSI.sub("", raw))
    replica.unlink()
    status, raw = _run_in_pty([*argv, "check", "site", str(replica.parent), "--repair"], env, 60)
    assert status == 0, raw[-2000:]
    assert re.search(r"\.bin: site:localhost -> site:localhost .*100%", _ANSI.sub("", raw))
    assert replica.read_bytes() == source.read_bytes()

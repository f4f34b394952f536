"""The command stopped by a signal during a local tree copy (``cp -a``), as a real process.

The test finds the command's ``cp`` child, stops it (SIGSTOP) and lets it run a few
milliseconds at a time until it has written part of the tree, so that the copy is
certainly in progress, however fast the disk, when the command gets its signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="needs Linux /proc/PID/task/TID/children",
)

FILES = 4000


def _tree(root: Path) -> Path:
    tree = root / "tree"
    for index in range(FILES):
        directory = tree / f"d{index % 40}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}").write_bytes(b"x" * 512)
    return tree


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (or is stopped); a zombie or a missing process is dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _copying_child(command: subprocess.Popen[bytes], tree: Path, seconds: float = 30) -> int:
    """The pid of the command's ``cp -a`` of ``tree``, stopped as soon as it is seen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for child in _children(command.pid):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if argv[0] == b"cp" and os.fsencode(tree) in argv:
                    os.kill(child, signal.SIGSTOP)
                    return child
        if command.poll() is not None:
            break
        time.sleep(0.001)
    raise AssertionError(f"no cp of {tree} seen (the command ended with {command.poll()})")


def _advance_until_it_writes(copier: int, out: Path, seconds: float = 30) -> None:
    """Let the stopped ``copier`` run a few milliseconds at a time until it wrote in ``out``."""
    deadline = time.monotonic() + seconds
    while not any(out.glob("*/*")) and time.monotonic() < deadline:
        os.kill(copier, signal.SIGCONT)
        time.sleep(0.002)
        os.kill(copier, signal.SIGSTOP)
    assert any(out.glob("*/*")), "the cp wrote nothing"


@contextlib.contextmanager
def _copy_running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """Start `streamdata cp TREE site:OUT/copy`, yield it once its cp is stopped mid-way."""
    tree = _tree(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text('[deployments.site]\ntype = "local"\n')
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    argv = [sys.executable, "-m", "streamdata", "--sites", str(sites)]
    argv += ["--catalog", str(tmp_path / "catalog.sqlite"), "cp", str(tree), f"site:{out}/copy"]
    command = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    copier = None
    try:
        copier = _copying_child(command, tree)
        _advance_until_it_writes(copier, out)
        yield command, copier, out
    finally:
        if copier is not None and _alive(copier):
            os.kill(copier, signal.SIGKILL)
        command.kill()
        command.communicate()


def test_sigterm_cancels_the_copy_and_cleans_up_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM mid-copy: the copy is cancelled, its cp killed, its temporary removed, and
    the command exits 143 with one line."""
    with _copy_running(tmp_path) as (command, copier, out):
        command.send_signal(signal.SIGTERM)
        _, err = command.communicate(timeout=30)
        assert command.returncode == 143, err
        assert err.decode().strip() == "streamdata: terminated"
        assert not _alive(copier)
        assert list(out.iterdir()) == []


def test_sigkill_of_the_command_kills_its_cp(tmp_path: Path) -> None:
    """SIGKILL mid-copy: the command's cp dies with it instead of writing on, orphaned."""
    with _copy_running(tmp_path) as (command, copier, _):
        command.kill()
        command.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(copier) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(copier)

"""The contract's transfer semantics over SSH, in every direction, on real servers.

Each test runs against the in-process asyncssh server and a real OpenSSH sshd, both on
loopback. The servers run on this machine, so the test reads and writes the "remote"
files directly to check what the transfer did.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamdata import (
    ConnectorError,
    DataManager,
    DataType,
    ExecutionLocation,
    LocalConnector,
    SSHConnector,
    TransferError,
)
from streamdata.connectors.ssh import _unpack as unpack
from streamdata.testing import AsyncSSHTestServer, SSHTestServer

LOCAL = ExecutionLocation("localhost", "local")
REMOTE = ExecutionLocation("remote", "ssh")
HOSTILE = [
    "with space",
    "quote'\"",
    "$(touch PWNED)",
    "semi;colon",
    "new\nline",
    "-leading",
    "ñandú",
]


@dataclass
class Env:
    """A manager with a local deployment and one SSH deployment, plus the server."""

    manager: DataManager
    server: SSHTestServer
    root: Path


@pytest.fixture(params=["asyncssh", "openssh"])
async def env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
) -> AsyncIterator[Env]:
    """A DataManager whose "ssh" deployment reaches one real server on loopback."""
    server = asyncssh_server if request.param == "asyncssh" else openssh_server
    deployments = {
        "local": LocalConnector(),
        "ssh": SSHConnector([server.ssh_host(name="remote")]),
    }
    async with DataManager(deployments) as manager:
        yield Env(manager, server, tmp_path)


def _make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "sub" / "data.bin").write_bytes(os.urandom(70_000))
    script = tree / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (tree / "link").symlink_to("sub/data.bin")
    os.link(tree / "sub" / "data.bin", tree / "sub" / "deeper" / "hard.bin")
    os.utime(tree / "sub" / "data.bin", (1_600_000_000, 1_600_000_000))
    return tree


def _assert_same_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        twin = dst / path.relative_to(src)
        info, other = path.lstat(), twin.lstat()
        assert stat.S_IFMT(info.st_mode) == stat.S_IFMT(other.st_mode), twin
        assert stat.S_IMODE(info.st_mode) == stat.S_IMODE(other.st_mode), twin
        if path.is_symlink():
            assert os.readlink(twin) == os.readlink(path)
        elif path.is_file():
            assert twin.read_bytes() == path.read_bytes()
            assert int(other.st_mtime) == int(info.st_mtime), twin


async def test_local_to_ssh_tree_fidelity(env: Env) -> None:
    """A tree copied local->ssh keeps modes, mtimes, empty dirs, inner links and contents."""
    tree = _make_tree(env.root)
    dst = env.root / "remote" / "copy"
    env.manager.register_path(LOCAL, str(tree))
    await env.manager.transfer_data(LOCAL, str(tree), [REMOTE], str(dst))
    _assert_same_tree(tree, dst)
    assert (dst / "empty").is_dir()
    hard = dst / "sub" / "deeper" / "hard.bin"
    assert hard.read_bytes() == (tree / "sub" / "data.bin").read_bytes()
    replicas = env.manager.get_data_locations(str(tree), deployment="ssh")
    assert [(r.path, r.data_type) for r in replicas] == [(str(dst), DataType.PRIMARY)]


async def test_ssh_to_local_file_and_tree(env: Env) -> None:
    """Files and trees come back ssh->local intact and registered on the local location."""
    tree = _make_tree(env.root)
    env.manager.register_path(REMOTE, str(tree))
    await env.manager.transfer_data(REMOTE, str(tree), [LOCAL], str(env.root / "back"))
    _assert_same_tree(tree, env.root / "back")
    single = tree / "sub" / "data.bin"
    env.manager.register_path(REMOTE, str(single))
    await env.manager.transfer_data(REMOTE, str(single), [LOCAL], str(env.root / "one.bin"))
    assert (env.root / "one.bin").read_bytes() == single.read_bytes()
    assert env.manager.get_source_location(str(single), "local") is not None


async def test_same_ssh_location_gets_a_link(env: Env) -> None:
    """Not writable, same SSH location: a symbolic link, registered SYMBOLIC_LINK."""
    data = env.root / "data.txt"
    data.write_text("payload")
    env.manager.register_path(REMOTE, str(data))
    await env.manager.transfer_data(REMOTE, str(data), [REMOTE], str(env.root / "alias"))
    assert os.readlink(env.root / "alias") == str(data)
    link = env.manager.get_data_locations(
        str(env.root / "alias"), location_type=DataType.SYMBOLIC_LINK
    )
    assert [r.path for r in link] == [str(env.root / "alias")]


async def test_writable_copy_on_the_same_ssh_location(env: Env) -> None:
    """writable=True on the same SSH location: a real, unrelated copy made remotely."""
    data = env.root / "data.txt"
    data.write_text("payload")
    env.manager.register_path(REMOTE, str(data))
    copy = env.root / "mine.txt"
    await env.manager.transfer_data(REMOTE, str(data), [REMOTE], str(copy), writable=True)
    assert not copy.is_symlink()
    assert copy.read_text() == "payload"
    assert [r.path for r in env.manager.get_data_locations(str(data))] == [str(data)]


async def test_hostile_names_over_ssh(env: Env) -> None:
    """Every hostile name crosses SSH exactly and nothing in it is executed."""
    tree = env.root / "hostile"
    tree.mkdir()
    for name in HOSTILE:
        (tree / name).write_text(name)
    env.manager.register_path(LOCAL, str(tree))
    for name in HOSTILE:
        env.manager.register_path(LOCAL, str(tree / name))
        await env.manager.transfer_data(
            LOCAL, str(tree / name), [REMOTE], str(env.root / f"single-{name}")
        )
        assert (env.root / f"single-{name}").read_text() == name
    await env.manager.transfer_data(LOCAL, str(tree), [REMOTE], str(env.root / "-copy $(x)"))
    assert sorted(p.name for p in (env.root / "-copy $(x)").iterdir()) == sorted(HOSTILE)
    assert not list(env.root.rglob("PWNED"))
    assert not Path("PWNED").exists()


async def test_one_source_to_two_ssh_servers_and_local(
    tmp_path: Path, asyncssh_server: AsyncSSHTestServer, openssh_server: SSHTestServer
) -> None:
    """local -> {asyncssh, openssh} at one shared path, then a relay ssh -> ssh."""
    a = ExecutionLocation("a", "ssh-a")
    b = ExecutionLocation("b", "ssh-b")
    deployments = {
        "local": LocalConnector(),
        "ssh-a": SSHConnector([asyncssh_server.ssh_host(name="a")]),
        "ssh-b": SSHConnector([openssh_server.ssh_host(name="b")]),
    }
    data = tmp_path / "big.bin"
    data.write_bytes(os.urandom(3 << 20))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with DataManager(deployments) as dm:
        dm.register_path(LOCAL, str(data))
        # Both servers see this filesystem: two locations, one path, no collision.
        await dm.transfer_data(LOCAL, str(data), [a, b], str(tmp_path / "a"))
        await dm.transfer_data(
            a, str(tmp_path / "a" / "big.bin"), [b], str(tmp_path / "b" / "linked.bin")
        )
        relayed = str(tmp_path / "b" / "relayed.bin")
        await dm.transfer_data(a, str(tmp_path / "a" / "big.bin"), [b], relayed, writable=True)
        names = {(r.deployment, r.path) for r in dm.get_data_locations(str(data))}
    assert names == {
        ("local", str(data)),
        ("ssh-a", str(tmp_path / "a" / "big.bin")),
        ("ssh-b", str(tmp_path / "a" / "big.bin")),
        ("ssh-b", str(tmp_path / "b" / "linked.bin")),
    }
    assert os.readlink(tmp_path / "b" / "linked.bin") == str(tmp_path / "a" / "big.bin")
    assert not (tmp_path / "b" / "relayed.bin").is_symlink()
    assert (tmp_path / "a" / "big.bin").read_bytes() == data.read_bytes()
    assert (tmp_path / "b" / "relayed.bin").read_bytes() == data.read_bytes()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["big.bin"]


async def test_unreachable_destination_fails_alone(env: Env, unused_tcp_port: int) -> None:
    """One unreachable SSH destination fails with a ConnectorError; the good one stays valid."""
    env.manager.add_deployment(
        "dead", SSHConnector([env.server.ssh_host(name="dead", port=unused_tcp_port)])
    )
    dead = ExecutionLocation("dead", "dead")
    data = env.root / "data.txt"
    data.write_text("x")
    env.manager.register_path(LOCAL, str(data))
    with pytest.raises(TransferError) as caught:
        await asyncio.wait_for(
            env.manager.transfer_data(LOCAL, str(data), [REMOTE, dead], str(env.root / "out.txt")),
            60,
        )
    assert set(caught.value.failures) == {dead}
    assert isinstance(caught.value.failures[dead], ConnectorError)
    assert (env.root / "out.txt").read_text() == "x"
    replicas = env.manager.get_data_locations(str(data))
    assert {(r.deployment, r.path) for r in replicas} == {
        ("local", str(data)),
        ("ssh", str(env.root / "out.txt")),
    }


async def test_wrong_host_key_is_refused_and_nothing_written(env: Env, tmp_path: Path) -> None:
    """A known_hosts file naming another key: ConnectorError naming the host, no file."""
    other = tmp_path / "other_known_hosts"
    other.write_text(
        f"[127.0.0.1]:{env.server.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIDx3mP5pQ6YjVt1jz3QzN6H7mJk6cQ5bJqzG1vUj4dNm\n"
    )
    env.manager.add_deployment(
        "spoof", SSHConnector([env.server.ssh_host(name="spoof", known_hosts=other)])
    )
    data = env.root / "secret.txt"
    data.write_text("secret")
    env.manager.register_path(LOCAL, str(data))
    with pytest.raises(TransferError) as caught:
        await env.manager.transfer_data(
            LOCAL, str(data), [ExecutionLocation("spoof", "spoof")], str(env.root / "leak.txt")
        )
    cause = next(iter(caught.value.failures.values()))
    assert isinstance(cause, ConnectorError)
    assert "127.0.0.1" in str(cause) or "spoof" in str(cause)
    assert not (env.root / "leak.txt").exists()


async def test_two_thousand_file_tree(env: Env) -> None:
    """A 2,000-file tree crosses SSH complete."""
    tree = env.root / "many"
    for index in range(2000):
        directory = tree / f"d{index // 100}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index}").write_bytes(index.to_bytes(4, "big") * 256)
    env.manager.register_path(LOCAL, str(tree))
    await env.manager.transfer_data(LOCAL, str(tree), [REMOTE], str(env.root / "many-copy"))
    copied = sorted(
        p.relative_to(env.root / "many-copy") for p in (env.root / "many-copy").rglob("f*")
    )
    assert len(copied) == 2000
    assert (env.root / "many-copy" / "d19" / "f1999").read_bytes() == (
        tree / "d19" / "f1999"
    ).read_bytes()


async def test_sixty_concurrent_transfers_respect_max_sessions(
    tmp_path: Path, asyncssh_server: AsyncSSHTestServer
) -> None:
    """60 concurrent single-file transfers with max_sessions=4 never open more than 4 channels."""
    connector = SSHConnector([asyncssh_server.ssh_host(name="remote")], max_sessions=4)
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "dst").mkdir()
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as dm:
        for index in range(60):
            (src / f"f{index}").write_bytes(os.urandom(20_000))
            dm.register_path(LOCAL, str(src / f"f{index}"))
        asyncssh_server.reset_channel_count()
        async with asyncio.timeout(120):
            await asyncio.gather(
                *(
                    dm.transfer_data(LOCAL, str(src / f"f{i}"), [REMOTE], str(tmp_path / "dst"))
                    for i in range(60)
                )
            )
    assert asyncssh_server.max_open_channels <= 4
    assert len(list((tmp_path / "dst").iterdir())) == 60


async def test_check_and_repair_over_ssh(env: Env) -> None:
    """check finds a deleted and an orphan entry on an SSH location and repairs from local."""
    tree = _make_tree(env.root)
    env.manager.register_path(LOCAL, str(tree))
    dst = env.root / "site"
    await env.manager.transfer_data(LOCAL, str(tree), [REMOTE], str(dst))
    (dst.parent / "stray.txt").write_text("orphan")
    report = await env.manager.check(REMOTE, str(dst.parent))
    assert report.missing == []
    assert str(dst.parent / "stray.txt") in report.orphans
    os.remove(dst / "run.sh")
    for path in sorted(dst.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    dst.rmdir()
    report = await env.manager.check(REMOTE, str(dst.parent), repair=True)
    assert report.missing == [str(dst)]
    assert report.repaired == [str(dst)]
    _assert_same_tree(tree, dst)


@pytest.mark.parametrize("direction", ["up", "down"])
async def test_connection_killed_mid_transfer_never_leaves_a_valid_partial(
    env: Env, direction: str
) -> None:
    """Dropping every SSH connection mid-transfer: TransferError or success, never a partial."""
    data = env.root / "big.bin"
    payload = os.urandom(1 << 20) * 96
    data.write_bytes(payload)
    source, target = (LOCAL, REMOTE) if direction == "up" else (REMOTE, LOCAL)
    env.manager.register_path(source, str(data))
    out = env.root / "out"
    out.mkdir()
    progressed = asyncio.Event()
    env.manager.add_listener(lambda event: progressed.set())
    transfer = asyncio.create_task(
        env.manager.transfer_data(source, str(data), [target], str(out / "big.bin"), writable=True)
    )
    await asyncio.wait_for(progressed.wait(), 30)
    await asyncio.sleep(0.05)
    env.server.kill_connections()
    async with asyncio.timeout(90):
        (outcome,) = await asyncio.gather(transfer, return_exceptions=True)
    if isinstance(outcome, TransferError):
        assert set(outcome.failures) == {target}
        assert env.manager.get_data_locations(str(out / "big.bin")) == []
        assert not (out / "big.bin").exists()
    else:  # finished before the kill landed, or retried from a clean state
        assert outcome is None
        assert (out / "big.bin").read_bytes() == payload
    assert [p.name for p in out.iterdir() if p.name.startswith(".streamdata-")] == []


def _many_file_tree(root: Path) -> Path:
    """More than a MiB of small files (unpacked in parallel), and what the last pass fixes."""
    tree = root / "parallel"
    for index in range(80):
        folder = tree / f"d{index % 4}" / ("inner" if index % 3 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index} {HOSTILE[index % len(HOSTILE)]}").write_bytes(os.urandom(16_000))
    os.link(tree / "d0" / f"f0 {HOSTILE[0]}", tree / "d3" / "hard across")
    (tree / "d1" / "rel").symlink_to(f"../d2/f2 {HOSTILE[2]}")
    (tree / "empty").mkdir()
    (tree / "d2" / "inner").chmod(0o750)
    for number, path in enumerate(sorted(tree.rglob("*"), reverse=True)):
        os.utime(path, (1_600_000_000 + number,) * 2, follow_symlinks=False)
    return tree


def _assert_same_directories(src: Path, dst: Path) -> None:
    for path in [src, *src.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            twin = dst / path.relative_to(src)
            assert int(twin.stat().st_mtime) == int(path.stat().st_mtime), twin
            assert stat.S_IMODE(twin.stat().st_mode) == stat.S_IMODE(path.stat().st_mode), twin


def _split_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the unpack start its extra ``tar`` at the first chunk, however fast one is."""
    monkeypatch.setattr(unpack, "SPLIT_AFTER", 0.0)
    monkeypatch.setattr(unpack, "SLOW_FILES", float("inf"))


async def test_many_files_are_unpacked_in_parallel_exactly(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several tar at once on the server, and the tree is still the same to the last mtime.

    The split starts after the first chunk went to one ``tar``: directories it already
    got are replayed to the others.
    """
    _split_at_once(monkeypatch)
    tree = _many_file_tree(env.root)
    dst = env.root / "remote-parallel"
    env.manager.register_path(LOCAL, str(tree))
    if isinstance(env.server, AsyncSSHTestServer):
        env.server.reset_channel_count()
    await env.manager.transfer_data(LOCAL, str(tree), [REMOTE], str(dst))
    if isinstance(env.server, AsyncSSHTestServer):
        assert env.server.max_open_channels >= 4  # SFTP, two workers and the last pass
    _assert_same_tree(tree, dst)
    _assert_same_directories(tree, dst)
    assert (dst / "d3" / "hard across").stat().st_ino == (
        dst / "d0" / f"f0 {HOSTILE[0]}"
    ).stat().st_ino
    assert not (env.root / "PWNED").exists()


def _stalled_first_tar(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch, *, broken_helper: bool = False
) -> None:
    """Put a ``tar`` first on PATH whose first unpacking run takes nothing in for 1.5 s.

    The in-process server runs commands with this process's environment. Its first
    ``tar -x`` is then a tar that falls behind (a slow disk), later ones are not; with
    ``broken_helper``, the second one reads its input and fails as a full disk would.
    """
    bin_dir.mkdir()
    real = shutil.which("tar")
    first, second = (shlex.quote(str(bin_dir / name)) for name in ("first", "second"))
    broken = (
        f"mkdir {second} 2>/dev/null && cat >/dev/null && echo 'No space left' >&2 && exit 2"
        if broken_helper
        else "true"
    )
    wrapper = bin_dir / "tar"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -xpf "*) '
        f"if mkdir {first} 2>/dev/null; then sleep 1.5; else {broken}; fi ;; esac\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _small_files(root: Path, count: int) -> Path:
    tree = root / "small"
    for index in range(count):
        folder = tree / f"d{index % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}").write_bytes(os.urandom(4096))
    (tree / "d3").chmod(0o500)  # a directory its owner cannot write: the last pass sets it
    return tree


async def test_slow_tar_gets_more_workers(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote ``tar`` that falls behind gets helpers mid-stream; the tree is exact."""
    _stalled_first_tar(tmp_path / "bin", monkeypatch)
    tree = _small_files(tmp_path, 2400)  # 11 MiB: more than the server buffers (4 MiB)
    connector = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as manager:
        manager.register_path(LOCAL, str(tree))
        asyncssh_server.reset_channel_count()
        await manager.transfer_data(LOCAL, str(tree), [REMOTE], str(tmp_path / "copy"))
    assert asyncssh_server.max_open_channels >= 4  # SFTP, the first tar and two more
    _assert_same_tree(tree, tmp_path / "copy")
    _assert_same_directories(tree, tmp_path / "copy")


async def test_a_failing_helper_tar_fails_the_copy_and_leaves_nothing(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper started mid-stream fails: TransferError naming it, no tree, no replica."""
    _stalled_first_tar(tmp_path / "bin", monkeypatch, broken_helper=True)
    tree = _small_files(tmp_path, 2400)
    (tree / "d3").chmod(0o700)
    connector = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    copy = tmp_path / "copy"
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as manager:
        manager.register_path(LOCAL, str(tree))
        with pytest.raises(TransferError) as caught:
            await asyncio.wait_for(manager.transfer_data(LOCAL, str(tree), [REMOTE], str(copy)), 60)
        assert "No space left" in str(caught.value.failures[REMOTE])
        assert isinstance(caught.value.failures[REMOTE], ConnectorError)
        assert {(r.deployment, r.path) for r in manager.get_data_locations(str(tree))} == {
            ("local", str(tree))
        }
    assert (tmp_path / "bin" / "second").is_dir()  # the helper did start
    assert not copy.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".streamdata-")] == []


async def test_fast_tar_unpacks_alone(asyncssh_server: AsyncSSHTestServer, tmp_path: Path) -> None:
    """A tree the server's buffers take at once never waits: one tar, no extra channel.

    (When a tar that does fall behind counts as slow: tests/test_unpack_backlog.py.)
    """
    tree = _small_files(tmp_path, 900)
    (tree / "d3").chmod(0o700)
    connector = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as manager:
        manager.register_path(LOCAL, str(tree))
        asyncssh_server.reset_channel_count()
        await manager.transfer_data(LOCAL, str(tree), [REMOTE], str(tmp_path / "copy"))
    assert asyncssh_server.max_open_channels <= 2  # SFTP and one tar
    _assert_same_tree(tree, tmp_path / "copy")
    _assert_same_directories(tree, tmp_path / "copy")


async def test_busy_host_unpacks_many_files_in_one_stream(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no channel to spare (max_sessions=3), the same tree arrives through one tar."""
    _split_at_once(monkeypatch)
    tree = _many_file_tree(tmp_path)
    connector = SSHConnector([asyncssh_server.ssh_host(name="remote")], max_sessions=3)
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as manager:
        manager.register_path(LOCAL, str(tree))
        await manager.transfer_data(LOCAL, str(tree), [REMOTE], str(tmp_path / "copy"))
    assert asyncssh_server.max_open_channels <= 3
    _assert_same_tree(tree, tmp_path / "copy")
    _assert_same_directories(tree, tmp_path / "copy")

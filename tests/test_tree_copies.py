"""Symbolic links and special files inside a copied tree, on every way a tree is copied.

A link whose absolute target lies inside the copied tree must point at the same entry of
the copy (it becomes the equivalent relative link); relative links and absolute links
out of the tree are kept verbatim, like ``cp -a``. Special files (fifos, sockets, devices)
are left out. Each test copies one tree along one path: local to local (``cp -a``), local
to SSH and back, SSH to SSH through this process, and a same-host copy on an SSH server
(in-process asyncssh and OpenSSH); the direct route between two SSH hosts is in
``test_ssh_direct.py``. The servers run on this machine, so the test reads both trees
directly.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ConnectorEnv

from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector, TransferError
from streamdata.connectors import Connector, Entry, EntryKind
from streamdata.testing import AsyncSSHTestServer, SSHTestServer

#: (source kind, destination kind); "same" copies on the source's own location.
PATHS = [
    ("local", "local"),
    ("local", "asyncssh"),
    ("local", "openssh"),
    ("asyncssh", "local"),
    ("openssh", "local"),
    ("asyncssh", "openssh"),
    ("asyncssh", "same"),
    ("openssh", "same"),
]
#: The modification time of every link of the tree.
MTIME = 1_500_000_000


@dataclass
class Copying:
    """A manager, the source and destination locations of one path, and a directory."""

    manager: DataManager
    source: ExecutionLocation
    destination: ExecutionLocation
    root: Path


def _connector(
    kind: str, asyncssh_server: AsyncSSHTestServer, openssh_server: SSHTestServer
) -> Connector:
    if kind == "local":
        return LocalConnector()
    server = asyncssh_server if kind == "asyncssh" else openssh_server
    return SSHConnector([server.ssh_host(name=kind)])


@pytest.fixture(params=PATHS, ids=lambda path: "->".join(path))
async def copying(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
) -> AsyncIterator[Copying]:
    """One way of copying a tree: its manager, source and destination locations."""
    src_kind, dst_kind = request.param
    source = ExecutionLocation(src_kind, "src")
    deployments = {"src": _connector(src_kind, asyncssh_server, openssh_server)}
    if dst_kind == "same":
        destination = source
    else:
        destination = ExecutionLocation(dst_kind, "dst")
        deployments["dst"] = _connector(dst_kind, asyncssh_server, openssh_server)
    async with DataManager(deployments) as manager:
        yield Copying(manager, source, destination, tmp_path)


def make_linked_tree(root: Path) -> tuple[Path, Path]:
    """A tree reached through an alias, whose links point in and out of it every way.

    Returns:
        The tree's real path and the alias (a symbolic link to it) it is registered by.
    """
    tree = root / "real" / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "other").mkdir()
    (tree / "sub" / "data.txt").write_text("source data")
    (tree / "other" / "x").write_text("x")
    (root / "outside.txt").write_text("outside")
    alias = root / "alias"
    alias.symlink_to(tree)
    links: dict[str, str | Path] = {
        "abs-file": tree / "sub" / "data.txt",
        "sub/abs-dir": tree / "other",
        "sub/deeper/to-root": tree,
        "via-alias": alias / "other" / "x",
        "not-normal": f"{tree}//sub/../other/./x",
        "relative": "sub/data.txt",
        "outside": root / "outside.txt",
        "escaping": "../../outside.txt",
    }
    for name, target in links.items():
        os.symlink(target, tree / name)
        os.utime(tree / name, (MTIME, MTIME), follow_symlinks=False)
    return tree, alias


#: What each link of the copy reads (absolute links out of the tree are checked apart).
EXPECTED = {
    "abs-file": "sub/data.txt",
    "sub/abs-dir": "../other",
    "sub/deeper/to-root": "../..",
    "via-alias": "other/x",
    "not-normal": "other/x",
    "relative": "sub/data.txt",
    "escaping": "../../outside.txt",
}


async def test_in_tree_absolute_links_point_into_the_copy(copying: Copying) -> None:
    """An absolute link into the tree becomes relative; other links are kept verbatim."""
    _, alias = make_linked_tree(copying.root)
    copying.manager.register_path(copying.source, str(alias))
    copy = copying.root / "copy"
    await copying.manager.transfer_data(
        copying.source, str(alias), [copying.destination], str(copy), writable=True
    )
    found = {name: os.readlink(copy / name) for name in EXPECTED}
    assert found == EXPECTED
    assert os.readlink(copy / "outside") == str(copying.root / "outside.txt")
    assert int((copy / "abs-file").lstat().st_mtime) == MTIME
    assert (copy / "sub" / "deeper" / "to-root").resolve() == copy.resolve()


async def test_writing_through_a_copied_link_leaves_the_source_alone(copying: Copying) -> None:
    """A writable copy is independent: writing through its links changes the copy only."""
    tree, _ = make_linked_tree(copying.root)
    copying.manager.register_path(copying.source, str(tree))
    copy = copying.root / "copy"
    await copying.manager.transfer_data(
        copying.source, str(tree), [copying.destination], str(copy), writable=True
    )
    (copy / "abs-file").write_text("changed in the copy")
    (copy / "sub" / "abs-dir" / "x").write_text("changed too")
    assert (tree / "sub" / "data.txt").read_text() == "source data"
    assert (tree / "other" / "x").read_text() == "x"
    assert (copy / "sub" / "data.txt").read_text() == "changed in the copy"
    os.rename(copying.root / "real", copying.root / "gone")
    assert (copy / "not-normal").read_text() == "changed too"


def make_special_tree(root: Path) -> Path:
    """A tree holding a fifo, a socket and (as root) a character device beside its data."""
    tree = root / "sp"
    (tree / "sub").mkdir(parents=True)
    (tree / "data.txt").write_text("data")
    (tree / "sub" / "kept.txt").write_text("kept")
    os.mkfifo(tree / "sub" / "fifo")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tree / "sock"))
    if os.geteuid() == 0:
        os.mknod(tree / "sub" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return tree


SPECIALS = ("sub/fifo", "sock", "sub/null")


async def test_special_files_in_a_tree_are_skipped(copying: Copying) -> None:
    """Fifos, sockets and devices inside a tree are left out; everything else is copied."""
    tree = make_special_tree(copying.root)
    copying.manager.register_path(copying.source, str(tree))
    copy = copying.root / "copy"
    await copying.manager.transfer_data(
        copying.source, str(tree), [copying.destination], str(copy), writable=True
    )
    assert not [name for name in SPECIALS if os.path.lexists(copy / name)]
    assert (copy / "data.txt").read_text() == "data"
    assert (copy / "sub" / "kept.txt").read_text() == "kept"


async def test_a_tree_with_special_files_passes_verification_and_check(copying: Copying) -> None:
    """verify=True compares what is copied; a check of the copy finds nothing missing."""
    tree = make_special_tree(copying.root)
    copying.manager.register_path(copying.source, str(tree))
    copy = copying.root / "copy"
    await copying.manager.transfer_data(
        copying.source, str(tree), [copying.destination], str(copy), writable=True, verify=True
    )
    report = await copying.manager.check(copying.destination, str(copy))
    assert report.missing == []
    assert (copy / "data.txt").read_text() == "data"


async def test_connector_copy_skips_special_files(connector_env: ConnectorEnv) -> None:
    """Every connector's copy of a tree leaves its special files out."""
    tree = make_special_tree(connector_env.root)
    copy = connector_env.root / "copy"
    await connector_env.connector.copy(connector_env.location, str(tree), str(copy))
    assert not [name for name in SPECIALS if os.path.lexists(copy / name)]
    assert (copy / "sub" / "kept.txt").read_text() == "kept"


async def test_connector_tree_stream_skips_special_files(connector_env: ConnectorEnv) -> None:
    """Every connector's tar stream of a tree leaves its special files out."""
    tree = make_special_tree(connector_env.root)
    copy = connector_env.root / "copy"
    location = connector_env.location
    entry = Entry(str(tree), EntryKind.DIRECTORY, 0, 0.0, 0o755)
    async with connector_env.connector.read(location, entry) as chunks:
        await connector_env.connector.write(location, str(copy), entry, chunks)
    assert not [name for name in SPECIALS if os.path.lexists(copy / name)]
    assert (copy / "sub" / "kept.txt").read_text() == "kept"


def _special_source(root: Path, kind: str) -> str:
    """A special file of ``kind`` (or a link to one) for a transfer's source."""
    path = root / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))
    elif kind == "link-to-fifo":
        os.mkfifo(root / "fifo")
        path.symlink_to(root / "fifo")
    else:
        return "/dev/zero"
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "link-to-fifo"])
async def test_a_special_file_as_source_is_refused_and_invalidated(
    connector_env: ConnectorEnv, tmp_path: Path, kind: str
) -> None:
    """A special source fails with TransferError, nothing written, its replica INVALID."""
    source = _special_source(connector_env.root, kind)
    here = ExecutionLocation("here", "here", local=True)
    out = tmp_path / "out"
    out.mkdir()
    deployments = {connector_env.location.deployment: connector_env.connector}
    async with DataManager({**deployments, "here": LocalConnector()}) as manager:
        manager.register_path(connector_env.location, source)
        transfer = manager.transfer_data(connector_env.location, source, [here], str(out / "x"))
        with pytest.raises(TransferError, match="special file") as caught:
            await asyncio.wait_for(transfer, 30)
        assert set(caught.value.failures) == {here}
        assert list(out.iterdir()) == []
        assert manager.get_data_locations(source) == []

"""A tree's tar stream has its headers read once, however many readers it passes.

A local->ssh tree passes the tree filter (source), the engine's file counter (progress)
and the splitter that feeds several ``tar -x`` (destination). The filter reads each
header block with :func:`streamdata.connectors._tar.header.parse`; the others take what
it read from the chunks (:class:`~streamdata.connectors._tar.header.TarChunk`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector
from streamdata.connectors._tar import header
from streamdata.testing import AsyncSSHTestServer

SSH = ExecutionLocation("remote", "ssh")
LOCAL = ExecutionLocation("localhost", "local", local=True)


def _make_tree(root: Path, directories: int, files: int) -> int:
    """A tree of small files; returns how many entries ``tar -C root -cf - .`` holds."""
    for d in range(directories):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"f{f}").write_bytes(os.urandom(100))
    return 1 + directories * (1 + files)  # "./", then each directory and its files


@pytest.mark.parametrize(("directories", "files"), [(2, 5), (8, 50)])
async def test_a_local_to_ssh_tree_has_each_header_parsed_once(
    asyncssh_server: AsyncSSHTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    directories: int,
    files: int,
) -> None:
    """Filter, counter and splitter together parse each header block exactly once."""
    entries = _make_tree(tmp_path / "tree", directories, files)
    parsed: list[bytes] = []
    parse = header.parse

    def counting(block: bytes) -> header.Header | None:
        parsed.append(block)
        return parse(block)

    monkeypatch.setattr(header, "parse", counting)
    ssh = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    async with DataManager({"local": LocalConnector(), "ssh": ssh}) as manager:
        manager.register_path(LOCAL, str(tmp_path / "tree"))
        await manager.transfer_data(LOCAL, str(tmp_path / "tree"), [SSH], str(tmp_path / "copy"))
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*"))
    assert len(copied) == entries - 1
    assert len(parsed) == entries
    assert len(set(parsed)) == entries

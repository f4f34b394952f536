"""The connector contract, run against every connector (local, asyncssh server, OpenSSH).

Each test drives the methods the transfer engine uses, with real files, and checks the
result on disk: streams and copies keep the tree (modes, mtimes, empty directories, inner
symbolic links, hard links), hostile names are copied exactly and never executed, commit
replaces what is there, and failures are :class:`ConnectorError`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import ConnectorEnv

from streamdata import ConnectorError
from streamdata.connectors import Entry, EntryKind

MTIME = 1_600_000_000.0
HOSTILE_NAMES = (
    "with space",
    "single'quote",
    'double"quote',
    "$(touch PWNED)",
    "`touch PWNED`",
    "semi;touch PWNED",
    "new\nline",
    "-leading-dash",
    "--help",
    "ünïcødé ☃ 文件",
    "back\\slash",
    "glob*?[x]",
    "~tilde",
    "tab\there",
    "amp&pipe|gt>",
)


def make_tree(root: Path) -> None:
    """Build a tree exercising everything the contract says must survive a copy."""
    (root / "empty").mkdir(parents=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o755)
    (root / "private").write_bytes(b"secret")
    (root / "private").chmod(0o600)
    (root / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "deeper" / "note.txt").write_text("note")
    os.link(root / "sub" / "data.bin", root / "hardlink.bin")
    os.symlink("sub/deeper/note.txt", root / "link-to-note")
    os.symlink("../script.sh", root / "sub" / "link-up")
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


def describe_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything about a tree the contract promises to keep, keyed by relative path."""
    result: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            result[rel] = ("link", os.readlink(path), int(info.st_mtime))
        elif stat.S_ISDIR(info.st_mode):
            result[rel] = ("dir", stat.S_IMODE(info.st_mode), int(info.st_mtime))
        else:
            data = path.read_bytes()
            result[rel] = ("file", stat.S_IMODE(info.st_mode), int(info.st_mtime), data)
    return result


def assert_same_tree(source: Path, copy: Path) -> None:
    """The copy holds the same entries, modes, mtimes, link targets and hard links."""
    assert describe_tree(copy) == describe_tree(source)
    assert stat.S_IMODE(copy.stat().st_mode) == stat.S_IMODE(source.stat().st_mode)
    linked = (copy / "hardlink.bin").stat(), (copy / "sub" / "data.bin").stat()
    assert linked[0].st_ino == linked[1].st_ino


def entry_for(path: str, kind: EntryKind, size: int = 0, mode: int = 0o644) -> Entry:
    """An entry describing a stream's source, as the engine passes it."""
    return Entry(path, kind, size, MTIME, mode)


async def read_all(env: ConnectorEnv, path: str, kind: EntryKind) -> bytes:
    """Read a whole stream from the environment's location."""
    entry = await env.connector.stat(env.location, path) or entry_for(path, kind)
    async with env.connector.read(env.location, entry) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def stream_copy(env: ConnectorEnv, source: str, target: str, kind: EntryKind) -> None:
    """Pipe ``read`` of ``source`` into ``write`` of ``target``, like the engine does."""
    entry = await env.connector.stat(env.location, source)
    assert entry is not None
    assert entry.kind is kind
    async with env.connector.read(env.location, entry) as chunks:
        await env.connector.write(env.location, target, entry, chunks)


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    """An async stream of the given chunks."""
    for part in parts:
        yield part


def assert_nothing_executed(env: ConnectorEnv) -> None:
    """No hostile name was run as a command anywhere a shell could have run it."""
    for directory in (Path.home(), Path.cwd(), env.root, Path("/tmp")):
        assert not (directory / "PWNED").exists()


# -- stat ---------------------------------------------------------------------------------


async def test_stat_describes_a_file(connector_env: ConnectorEnv) -> None:
    """stat reports kind, size, permission bits and mtime of a file."""
    path = connector_env.write_file("f.txt", b"12345", mode=0o750, mtime=MTIME)
    entry = await connector_env.connector.stat(connector_env.location, path)
    assert entry is not None
    assert (entry.path, entry.kind, entry.size, entry.mode) == (path, EntryKind.FILE, 5, 0o750)
    assert entry.mtime == MTIME


async def test_stat_describes_a_directory(connector_env: ConnectorEnv) -> None:
    """stat reports a directory with size 0."""
    entry = await connector_env.connector.stat(connector_env.location, str(connector_env.root))
    assert entry is not None
    assert (entry.kind, entry.size) == (EntryKind.DIRECTORY, 0)


async def test_stat_follows_a_link_and_reports_a_dangling_one(connector_env: ConnectorEnv) -> None:
    """stat follows a link at the path itself; a dangling link is reported as a link."""
    target = connector_env.write_file("target", b"abc")
    os.symlink(target, connector_env.path("good"))
    os.symlink(connector_env.path("nowhere"), connector_env.path("dangling"))
    good = await connector_env.connector.stat(connector_env.location, connector_env.path("good"))
    bad = await connector_env.connector.stat(connector_env.location, connector_env.path("dangling"))
    assert good is not None
    assert (good.kind, good.size) == (EntryKind.FILE, 3)
    assert bad is not None
    assert bad.kind is EntryKind.SYMLINK


async def test_stat_of_a_missing_path_is_none(connector_env: ConnectorEnv) -> None:
    """stat returns None when nothing is there, also below a missing directory."""
    connector, location = connector_env.connector, connector_env.location
    assert await connector.stat(location, connector_env.path("missing")) is None
    assert await connector.stat(location, connector_env.path("no/such/dir")) is None


# -- prepare_destination ------------------------------------------------------------------


async def test_prepare_destination_into_an_existing_directory(connector_env: ConnectorEnv) -> None:
    """An existing directory receives the data under the source's basename."""
    connector, location = connector_env.connector, connector_env.location
    final = await connector.prepare_destination(location, str(connector_env.root), "data")
    assert final == connector_env.path("data")


async def test_prepare_destination_creates_the_parents(connector_env: ConnectorEnv) -> None:
    """A new path is used as is, its missing parents created."""
    connector, location = connector_env.connector, connector_env.location
    wanted = connector_env.path("a/b/c/out")
    assert await connector.prepare_destination(location, wanted, "data") == wanted
    assert Path(wanted).parent.is_dir()
    assert not Path(wanted).exists()


async def test_prepare_destination_over_a_file_and_through_a_link(
    connector_env: ConnectorEnv,
) -> None:
    """An existing file is the destination itself; a link to a directory is followed."""
    connector, location = connector_env.connector, connector_env.location
    existing = connector_env.write_file("existing", b"x")
    assert await connector.prepare_destination(location, existing, "data") == existing
    os.mkdir(connector_env.path("real"))
    os.symlink(connector_env.path("real"), connector_env.path("alias"))
    alias = connector_env.path("alias")
    assert await connector.prepare_destination(location, alias, "d") == f"{alias}/d"


async def test_prepare_destination_under_a_file_fails(connector_env: ConnectorEnv) -> None:
    """A parent that is a regular file cannot be created: ConnectorError."""
    blocker = connector_env.write_file("blocker", b"x")
    with pytest.raises(ConnectorError):
        await connector_env.connector.prepare_destination(
            connector_env.location, f"{blocker}/sub/out", "data"
        )


# -- symlink, copy --------------------------------------------------------------------------


async def test_symlink_points_at_the_target(connector_env: ConnectorEnv) -> None:
    """symlink makes a link with exactly the given target; an existing path is an error."""
    target = connector_env.write_file("t", b"x")
    link = connector_env.path("l")
    await connector_env.connector.symlink(connector_env.location, target, link)
    assert os.readlink(link) == target
    with pytest.raises(ConnectorError):
        await connector_env.connector.symlink(connector_env.location, target, link)


async def test_copy_a_file_keeps_mode_and_mtime(connector_env: ConnectorEnv) -> None:
    """copy of a file keeps its bytes, permission bits and modification time."""
    source = connector_env.write_file("src", os.urandom(100_000), mode=0o751, mtime=MTIME)
    target = connector_env.path("dst")
    await connector_env.connector.copy(connector_env.location, source, target)
    assert Path(target).read_bytes() == Path(source).read_bytes()
    info = os.stat(target)
    assert (stat.S_IMODE(info.st_mode), info.st_mtime) == (0o751, MTIME)


async def test_copy_a_tree_keeps_everything(connector_env: ConnectorEnv) -> None:
    """copy of a tree keeps modes, mtimes, empty dirs, inner links and hard links."""
    source = connector_env.root / "tree"
    make_tree(source)
    target = connector_env.path("copy")
    await connector_env.connector.copy(connector_env.location, str(source), target)
    assert_same_tree(source, Path(target))


def make_absolute_links(root: Path) -> None:
    """A tree holding absolute links into itself, and one out of it."""
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "data.txt").write_text("data")
    os.symlink(root / "sub" / "data.txt", root / "abs-file")
    os.symlink(root, root / "sub" / "abs-root")
    os.symlink("/etc/hostname", root / "sub" / "outside")


def assert_links_made_relative(copy: Path) -> None:
    """In-tree absolute links of :func:`make_absolute_links` point into ``copy``."""
    assert os.readlink(copy / "abs-file") == "sub/data.txt"
    assert os.readlink(copy / "sub" / "abs-root") == ".."
    assert os.readlink(copy / "sub" / "outside") == "/etc/hostname"


async def test_copy_makes_in_tree_absolute_links_relative(connector_env: ConnectorEnv) -> None:
    """copy of a tree turns absolute links into it relative, keeps the others verbatim."""
    source = connector_env.root / "tree"
    make_absolute_links(source)
    target = connector_env.path("copy")
    await connector_env.connector.copy(connector_env.location, str(source), target)
    assert_links_made_relative(Path(target))


async def test_copy_keeps_absolute_links_out_of_the_tree(connector_env: ConnectorEnv) -> None:
    """copy of a tree whose absolute links all point out of it keeps them verbatim."""
    source = connector_env.root / "tree"
    source.mkdir()
    os.symlink("/etc/hostname", source / "outside")
    os.symlink(connector_env.root, source / "parent")
    target = connector_env.path("copy")
    await connector_env.connector.copy(connector_env.location, str(source), target)
    assert os.readlink(Path(target) / "outside") == "/etc/hostname"
    assert os.readlink(Path(target) / "parent") == str(connector_env.root)


async def test_tree_stream_makes_in_tree_absolute_links_relative(
    connector_env: ConnectorEnv,
) -> None:
    """A tree read as a stream carries absolute links into it as relative links."""
    source = connector_env.root / "tree"
    make_absolute_links(source)
    target = connector_env.path("unpacked")
    await stream_copy(connector_env, str(source), target, EntryKind.DIRECTORY)
    assert_links_made_relative(Path(target))


async def test_copy_of_a_missing_source_fails(connector_env: ConnectorEnv) -> None:
    """copy of a missing source raises ConnectorError."""
    with pytest.raises(ConnectorError):
        await connector_env.connector.copy(
            connector_env.location, connector_env.path("missing"), connector_env.path("dst")
        )


# -- streams --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 3_000_000])
async def test_file_stream_round_trip(connector_env: ConnectorEnv, size: int) -> None:
    """A file read as a stream and written back is identical, with its mode and mtime."""
    data = os.urandom(size)
    source = connector_env.write_file("big", data, mode=0o700, mtime=MTIME)
    target = connector_env.path("big-copy")
    await stream_copy(connector_env, source, target, EntryKind.FILE)
    assert Path(target).read_bytes() == data
    info = os.stat(target)
    assert (stat.S_IMODE(info.st_mode), info.st_mtime) == (0o700, MTIME)


async def test_write_keeps_fractional_mtime_and_exec_bit(connector_env: ConnectorEnv) -> None:
    """write applies mode and a fractional mtime after the last byte."""
    target = connector_env.path("fresh")
    entry = Entry(target, EntryKind.FILE, 2, MTIME + 0.5, 0o755)
    await connector_env.connector.write(
        connector_env.location, target, entry, chunks_of(b"a", b"b")
    )
    info = os.stat(target)
    assert Path(target).read_bytes() == b"ab"
    assert stat.S_IMODE(info.st_mode) == 0o755
    assert info.st_mtime == pytest.approx(MTIME + 0.5, abs=1e-3)


async def test_empty_file_round_trip(connector_env: ConnectorEnv) -> None:
    """An empty file travels as an empty stream and is created empty."""
    source = connector_env.write_file("empty", b"")
    assert await read_all(connector_env, source, EntryKind.FILE) == b""
    target = connector_env.path("empty-copy")
    await stream_copy(connector_env, source, target, EntryKind.FILE)
    assert Path(target).read_bytes() == b""


async def test_tree_stream_round_trip(connector_env: ConnectorEnv) -> None:
    """A tree read as a tar stream and unpacked elsewhere keeps everything."""
    source = connector_env.root / "tree"
    make_tree(source)
    target = connector_env.path("unpacked")
    await stream_copy(connector_env, str(source), target, EntryKind.DIRECTORY)
    assert_same_tree(source, Path(target))


@pytest.mark.parametrize("size", [3, 3_000_000])
async def test_write_does_not_replace_an_existing_path(
    connector_env: ConnectorEnv, size: int
) -> None:
    """write to a path that exists fails with ConnectorError and keeps the old data."""
    existing = connector_env.write_file("existing", b"old")
    with pytest.raises(ConnectorError):
        await connector_env.connector.write(
            connector_env.location,
            existing,
            entry_for(existing, EntryKind.FILE, size),
            chunks_of(b"n" * size),
        )
    assert Path(existing).read_bytes() == b"old"


@pytest.mark.parametrize("size", [0, 3_000_000])
async def test_write_into_a_missing_directory_fails(connector_env: ConnectorEnv, size: int) -> None:
    """write below a missing directory raises ConnectorError, for files and trees."""
    for kind in (EntryKind.FILE, EntryKind.DIRECTORY):
        target = connector_env.path("no/dir/x")
        with pytest.raises(ConnectorError):
            await connector_env.connector.write(
                connector_env.location,
                target,
                entry_for(target, kind, size),
                chunks_of(b"x" * size),
            )


async def test_reading_a_missing_source_fails(connector_env: ConnectorEnv) -> None:
    """Reading a missing file or directory raises ConnectorError, never an empty stream."""
    for kind in (EntryKind.FILE, EntryKind.DIRECTORY):
        with pytest.raises(ConnectorError):
            await read_all(connector_env, connector_env.path("missing"), kind)


async def test_garbage_tar_stream_fails(connector_env: ConnectorEnv) -> None:
    """Unpacking bytes that are not a tar stream raises ConnectorError (tar's status)."""
    with pytest.raises(ConnectorError):
        await connector_env.connector.write(
            connector_env.location,
            connector_env.path("bad"),
            entry_for(connector_env.path("bad"), EntryKind.DIRECTORY),
            chunks_of(b"this is not a tar archive" * 100),
        )


# -- hostile names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
async def test_hostile_file_name_through_every_method(
    connector_env: ConnectorEnv, name: str
) -> None:
    """A hostile name is stat'ed, streamed, copied, linked, committed and removed as data."""
    connector, location = connector_env.connector, connector_env.location
    source = connector_env.write_file(name, name.encode(), mtime=MTIME)
    entry = await connector.stat(location, source)
    assert entry is not None
    assert entry.size == len(name.encode())
    folder = connector_env.path(f"dir {name}")
    final = await connector.prepare_destination(location, f"{folder}/{name}", name)
    tmp = f"{folder}/tmp {name}"
    await stream_copy(connector_env, source, tmp, EntryKind.FILE)
    await connector.commit(location, tmp, final)
    await connector.copy(location, final, f"{final}.copy")
    await connector.symlink(location, final, f"{final}.link")
    assert Path(final).read_bytes() == Path(f"{final}.copy").read_bytes() == name.encode()
    assert os.readlink(f"{final}.link") == final
    assert sorted(os.listdir(folder)) == sorted([name, f"{name}.copy", f"{name}.link"])
    await connector.remove(location, folder)
    assert not os.path.lexists(folder)
    assert_nothing_executed(connector_env)


async def test_hostile_names_inside_a_tree(connector_env: ConnectorEnv) -> None:
    """A tree full of hostile names is streamed and listed exactly."""
    source = connector_env.root / "-tree $(touch PWNED)"
    source.mkdir()
    for name in HOSTILE_NAMES:
        (source / name).mkdir()
        (source / name / name).write_bytes(name.encode())
    target = connector_env.path("copy;touch PWNED")
    await stream_copy(connector_env, str(source), target, EntryKind.DIRECTORY)
    for name in HOSTILE_NAMES:
        assert (Path(target) / name / name).read_bytes() == name.encode()
    listed = {e.path async for e in connector_env.connector.walk(connector_env.location, target)}
    assert len(listed) == 1 + 2 * len(HOSTILE_NAMES)
    assert f"{target}/{HOSTILE_NAMES[6]}/{HOSTILE_NAMES[6]}" in listed
    assert_nothing_executed(connector_env)


# -- commit, remove, walk -------------------------------------------------------------------


async def test_commit_replaces_a_file(connector_env: ConnectorEnv) -> None:
    """commit moves the temporary file over an existing file."""
    final = connector_env.write_file("final", b"old")
    tmp = connector_env.write_file("tmp", b"new")
    await connector_env.connector.commit(connector_env.location, tmp, final)
    assert Path(final).read_bytes() == b"new"
    assert not os.path.lexists(tmp)


async def test_commit_replaces_a_non_empty_directory(connector_env: ConnectorEnv) -> None:
    """commit replaces a non-empty directory and leaves nothing of the old one behind."""
    connector_env.write_file("final/old/inner", b"old")
    connector_env.write_file("tmp/new", b"new")
    await connector_env.connector.commit(
        connector_env.location, connector_env.path("tmp"), connector_env.path("final")
    )
    assert os.listdir(connector_env.path("final")) == ["new"]
    assert sorted(os.listdir(connector_env.root)) == ["final"]


async def test_commit_a_file_over_a_directory_and_to_a_new_path(
    connector_env: ConnectorEnv,
) -> None:
    """commit puts a file where a directory was, and onto a path that does not exist."""
    connector_env.write_file("dir/inner", b"x")
    tmp = connector_env.write_file("tmp", b"file")
    await connector_env.connector.commit(connector_env.location, tmp, connector_env.path("dir"))
    assert Path(connector_env.path("dir")).read_bytes() == b"file"
    tmp2 = connector_env.write_file("tmp2", b"second")
    await connector_env.connector.commit(connector_env.location, tmp2, connector_env.path("new"))
    assert sorted(os.listdir(connector_env.root)) == ["dir", "new"]


async def test_commit_of_a_missing_path_fails(connector_env: ConnectorEnv) -> None:
    """commit of a temporary path that does not exist raises ConnectorError."""
    with pytest.raises(ConnectorError):
        await connector_env.connector.commit(
            connector_env.location, connector_env.path("gone"), connector_env.path("final")
        )


async def test_remove_files_trees_links_and_missing_paths(connector_env: ConnectorEnv) -> None:
    """remove deletes a file, a tree, a link (not its target); a missing path is fine."""
    connector, location = connector_env.connector, connector_env.location
    target = connector_env.write_file("keep/target", b"x")
    os.symlink(os.path.dirname(target), connector_env.path("link"))
    make_tree(connector_env.root / "tree")
    file = connector_env.write_file("file", b"x")
    for path in ("link", "tree", "file", "missing"):
        await connector.remove(location, connector_env.path(path))
    assert sorted(os.listdir(connector_env.root)) == ["keep"]
    assert Path(target).read_bytes() == b"x"
    assert not os.path.exists(file)


async def test_walk_lists_every_entry_once(connector_env: ConnectorEnv) -> None:
    """walk yields the root and every entry below it, links not followed."""
    root = connector_env.root / "tree"
    make_tree(root)
    entries = {
        e.path: e async for e in connector_env.connector.walk(connector_env.location, str(root))
    }
    expected = {str(root)} | {str(p) for p in root.rglob("*")}
    assert set(entries) == expected
    assert entries[str(root / "link-to-note")].kind is EntryKind.SYMLINK
    assert entries[str(root / "empty")].kind is EntryKind.DIRECTORY
    data = entries[str(root / "sub" / "data.bin")]
    assert (data.kind, data.size, data.mode, data.mtime) == (EntryKind.FILE, 300_000, 0o644, MTIME)
    assert entries[str(root / "script.sh")].mode == 0o755


async def test_walk_of_a_file_and_of_a_missing_path(connector_env: ConnectorEnv) -> None:
    """walk of a file yields that file; of a missing path, nothing."""
    file = connector_env.write_file("single", b"abc")
    connector, location = connector_env.connector, connector_env.location
    assert [e.path async for e in connector.walk(location, file)] == [file]
    assert [e async for e in connector.walk(location, connector_env.path("missing"))] == []

"""The local listing: GNU ``find`` when there is one, ``os.scandir`` otherwise.

Both must report exactly what ``os.lstat`` reports, to the last bit of the modification
time, for hostile names and non-UTF-8 bytes too; a failing or garbled ``find`` is a
:class:`ConnectorError` naming the location, and a command that floods its standard error
cannot stall a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import stat
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest

from streamdata import ConnectorError, ExecutionLocation, LocalConnector
from streamdata.connectors import Entry
from streamdata.connectors._base import entry_from_stat
from streamdata.connectors._process import read_process, run_process

LOCATION = ExecutionLocation("localhost", "local", local=True)
NAMES = ("plain", "with space", "new\nline", "-leading-dash", "$(touch PWNED)", "ünï ☃")


def build(root: Path) -> None:
    """Files, directories, links and odd names, each with its own nanosecond mtime."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    for index, name in enumerate(NAMES):
        (root / "sub" / name).write_bytes(b"x" * index)
    os.symlink("sub/plain", root / "link")
    os.symlink("/nowhere", root / "sub" / "dangling")
    raw = os.fsencode(root / "sub") + b"/bad-\xff-utf8"
    with open(raw, "wb") as handle:
        handle.write(b"raw")
    os.mkfifo(root / "fifo")
    (root / "script").write_bytes(b"#!/bin/sh\n")
    (root / "script").chmod(0o4751)
    (root / "old").mkdir()
    for name in ("minus-1.5s", "minus-1ns", "minus-1e9-and-a-bit"):
        (root / "old" / name).write_bytes(b"")
    for offset, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        nanoseconds = 1_700_000_000_123_456_789 + offset * 1_000_000_007
        os.utime(path, ns=(nanoseconds, nanoseconds), follow_symlinks=False)
    for name, nanoseconds in (
        ("minus-1.5s", -1_500_000_000),
        ("minus-1ns", -1),
        ("minus-1e9-and-a-bit", -1_000_000_000_123_456_789),
    ):  # before 1970: GNU find prints floor seconds, then nanoseconds
        os.utime(root / "old" / name, ns=(nanoseconds, nanoseconds))


def lstat_entries(root: Path) -> dict[str, Entry]:
    paths = [str(root)] + [str(p) for p in root.rglob("*")]
    return {path: entry_from_stat(path, os.lstat(path)) for path in paths}


async def walk(connector: LocalConnector, root: Path) -> list[Entry]:
    return [entry async for entry in connector.walk(LOCATION, str(root))]


def check_order(entries: list[Entry]) -> None:
    """Every entry comes after its parent directory."""
    position = {entry.path: index for index, entry in enumerate(entries)}
    for entry in entries[1:]:
        assert position[os.path.dirname(entry.path)] < position[entry.path]


def fake_find(directory: Path, body: str) -> Path:
    """A ``find`` on ``PATH`` that passes the probe, then runs ``body``."""
    directory.mkdir()
    script = directory / "find"
    script.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = -prune ] && exit 0; done\n' + body + "\n"
    )
    script.chmod(0o755)
    return directory


async def test_find_listing_equals_lstat(tmp_path: Path) -> None:
    """With GNU find, every entry is what lstat says, parents first."""
    root = tmp_path / "tree"
    build(root)
    connector = LocalConnector()
    entries = await walk(connector, root)
    assert connector._find is True  # the find path was taken, not the fallback
    assert {entry.path: entry for entry in entries} == lstat_entries(root)
    assert len(entries) == len(lstat_entries(root))
    assert entries[0].path == str(root)
    check_order(entries)
    script = next(e for e in entries if e.path.endswith("/script"))
    assert script.mode == 0o4751 and stat.S_IMODE(os.lstat(script.path).st_mode) == 0o4751
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


async def test_scandir_fallback_without_gnu_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a find that knows -printf, os.scandir lists the same entries."""
    root = tmp_path / "tree"
    build(root)
    bare = tmp_path / "bin"  # a find that knows no -printf, as BSD find
    bare.mkdir()
    (bare / "find").write_text("#!/bin/sh\necho 'find: -printf: unknown primary' >&2\nexit 1\n")
    (bare / "find").chmod(0o755)
    monkeypatch.setenv("PATH", str(bare))
    connector = LocalConnector()
    entries = await walk(connector, root)
    assert connector._find is False
    assert {entry.path: entry for entry in entries} == lstat_entries(root)
    check_order(entries)


async def test_walk_of_a_file_a_missing_path_and_a_link(tmp_path: Path) -> None:
    """A file or a link to a directory is one entry; a missing path is none."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_bytes(b"1")
    os.symlink("dir", tmp_path / "to-dir")
    connector = LocalConnector()
    assert [e.path for e in await walk(connector, tmp_path / "to-dir")] == [
        str(tmp_path / "to-dir")
    ]
    assert await walk(connector, tmp_path / "missing") == []


async def test_failing_find_is_a_connector_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """find exiting non-zero: ConnectorError with its message and the location's name."""
    (tmp_path / "tree").mkdir()
    directory = fake_find(tmp_path / "bin", "echo 'find: boom: Permission denied' >&2; exit 1")
    monkeypatch.setenv("PATH", str(directory))
    with pytest.raises(ConnectorError, match="Permission denied") as caught:
        await walk(LocalConnector(), tmp_path / "tree")
    assert caught.value.host == LOCATION.name
    assert "list" in str(caught.value)


async def test_garbled_listing_is_a_connector_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing cut in the middle of a record is an error, not a silent short list."""
    (tmp_path / "tree").mkdir()
    listing = tmp_path / "listing"
    listing.write_bytes(b"d\x000\x001.5\x00755\x00/x\x00f\x003")
    directory = fake_find(tmp_path / "bin", f"exec /bin/cat {shlex.quote(str(listing))}")
    monkeypatch.setenv("PATH", str(directory))
    with pytest.raises(ConnectorError, match="middle of a record") as caught:
        await walk(LocalConnector(), tmp_path / "tree")
    assert caught.value.host == LOCATION.name


@pytest.mark.parametrize("leave", ["aclose", "cancel"])
async def test_leaving_a_walk_early_stops_find(leave: str) -> None:
    """A walk left after one entry, while find's output fills the pipe, ends at once:
    find is killed and reaped, nothing is left running."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as temp:
        root = Path(temp) / ("long-directory-name-" * 10)
        root.mkdir()
        for index in range(2000):  # some 500 KiB of listing: more than pipe and buffer
            (root / f"file-{index:05d}").touch()
        connector = LocalConnector()
        listing = cast(AsyncGenerator[Entry, None], connector.walk(LOCATION, str(root)))
        first = await anext(listing)
        assert first.path == str(root)
        await asyncio.sleep(0.3)  # find fills the pipe and asyncio's buffer meanwhile
        async with asyncio.timeout(5):
            if leave == "aclose":
                await listing.aclose()
            else:
                task = asyncio.ensure_future(anext(listing))
                await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await task
                await listing.aclose()
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    names = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in children]
    assert "find" not in names


async def test_a_flood_on_stderr_does_not_stall_the_reader() -> None:
    """1 MiB of complaints before the output: read to the end, no pipe deadlock."""
    command = ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' e >&2; echo done"]
    async with asyncio.timeout(20):
        async with read_process(command, what="complain") as chunks:
            output = b"".join([chunk async for chunk in chunks])
    assert output == b"done\n"


async def test_a_command_cancelled_again_while_reaped_is_waited_for_first() -> None:
    """A reader cancelled, then cancelled again while the killed command is being reaped:
    the cancellation ends it only once the command was waited for, no task left behind."""
    started = asyncio.Event()

    async def read() -> None:
        async with read_process(["yes"], what="flood") as chunks:
            async for _ in chunks:
                started.set()

    task = asyncio.ensure_future(read())
    async with asyncio.timeout(10):
        await started.wait()
        task.cancel()
        await asyncio.sleep(0)  # the reader is now killing and reaping `yes`
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_command_cancelled_at_any_step_of_its_start_is_not_left_running() -> None:
    """Cancelled (twice) after 0, 1, 2, ... event-loop steps of starting a command: each
    time, no command is left running and no task is left behind."""
    for steps in range(40):
        task = asyncio.ensure_future(run_process(["sleep", "30"], what="sleep"))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()
        async with asyncio.timeout(10):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == [], steps
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        names = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in children]
        assert "sleep" not in names, steps

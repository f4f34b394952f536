"""Cutting a tar stream for parallel unpacking: the unpacked tree is the tree."""

from __future__ import annotations

import io
import os
import random
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from streamdata.connectors._tar.split import END, EVERY, TarSplitter


def _tree(root: Path) -> None:
    """Long and hostile names, a hard link across directories, links, odd modes, mtimes."""
    (root / "a" / "deep" / "er").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "empty").mkdir()
    for index in range(40):
        folder = root / ("a" if index % 2 else "b")
        (folder / f"f{index} 'q' $(x)\n").write_bytes(os.urandom(index * 700))
    (root / "a" / "deep" / "er" / ("long-" * 40 + "name")).write_bytes(b"long")
    os.link(root / "b" / "f0 'q' $(x)\n", root / "a" / "hard")
    (root / "a" / "rel").symlink_to("../b/f2 'q' $(x)\n")
    (root / "a" / "run.sh").write_text("#!/bin/sh\n")
    (root / "a" / "run.sh").chmod(0o755)
    (root / "locked").mkdir(mode=0o555)
    for number, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(path, (1_600_000_000 + number, 1_600_000_000 + number), follow_symlinks=False)
    os.utime(root, (1_500_000_000, 1_500_000_000))


def _describe(root: Path) -> dict[str, tuple[object, ...]]:
    found: dict[str, tuple[object, ...]] = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        kind = stat.S_IFMT(info.st_mode)
        body = (
            path.read_bytes()
            if stat.S_ISREG(info.st_mode)
            else os.readlink(path)
            if path.is_symlink()
            else None
        )
        mtime = info.st_mtime_ns if not stat.S_ISLNK(info.st_mode) else None
        found[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode), mtime, body)
    return found


def _split(
    stream: bytes, workers: int, rng: random.Random, *, grow_at: int | None = None
) -> tuple[list[bytes], bytes]:
    """Split ``stream`` in random pieces; with ``grow_at``, one worker until that offset."""
    splitter = TarSplitter(workers, active=None if grow_at is None else 1)
    outputs = [bytearray() for _ in range(workers)]
    position = 0
    while position < len(stream):
        if grow_at is not None and position >= grow_at and splitter.can_grow:
            replay = splitter.grow(workers - 1)
            for out in outputs[1:]:
                out += replay
        piece = rng.randint(1, 9000)
        for route, data in splitter.feed(stream[position : position + piece]):
            for index in range(splitter.active) if route == EVERY else [route]:
                outputs[index] += data
        position += piece
    splitter.close()
    return [bytes(out) + END for out in outputs], bytes(splitter.deferred) + END


def _unpack(parts: list[bytes], last: bytes | None, target: Path) -> None:
    """Unpack ``parts`` with one ``tar`` each at once, then ``last`` (if any)."""
    target.mkdir()
    command = ["tar", "-C", str(target), "-xpf", "-", "--no-same-owner"]
    running = [subprocess.Popen(command, stdin=subprocess.PIPE) for _ in parts]
    for process, part in zip(running, parts, strict=True):
        assert process.stdin is not None
        process.stdin.write(part)
        process.stdin.close()
    assert all(process.wait() == 0 for process in running)
    if last is not None:
        subprocess.run(command, input=last, check=True)


def _members(stream: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        return archive.getmembers()


def _stream(source: Path) -> bytes:
    return subprocess.run(
        ["tar", "-C", str(source), "-cf", "-", "."], capture_output=True, check=True
    ).stdout


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_unpack_gives_the_same_tree(tmp_path: Path, workers: int) -> None:
    """Workers unpacked at once, then the held-back pass: every attribute survives."""
    source = tmp_path / "src"
    source.mkdir()
    _tree(source)
    parts, last = _split(_stream(source), workers, random.Random(workers))
    assert sum(bool(part.strip(b"\0")) for part in parts) == workers  # all of them got work
    target = tmp_path / "dst"
    _unpack(parts, last, target)
    assert _describe(target) == _describe(source)
    assert (target / "a" / "hard").stat().st_ino == (target / "b" / "f0 'q' $(x)\n").stat().st_ino


@pytest.mark.parametrize("grow_at", [0, 700, 5000, 30_000])
def test_workers_added_mid_stream_give_the_same_tree(tmp_path: Path, grow_at: int) -> None:
    """One worker first, two more from ``grow_at`` on (replay first): the same tree."""
    source = tmp_path / "src"
    source.mkdir()
    _tree(source)
    stream = _stream(source)
    parts, last = _split(stream, 3, random.Random(grow_at), grow_at=grow_at)
    assert all(part.strip(b"\0") for part in parts[1:])  # the new ones got work
    directories = {m.name for m in _members(stream) if m.isdir()}
    for part in parts:  # the ones added late got the earlier directories (the replay)
        assert {m.name for m in _members(part) if m.isdir()} == directories
    for part in parts[1:]:  # links after the growth wait for the last pass
        assert not any(m.islnk() for m in _members(part))
    if grow_at == 0:
        assert [m.name for m in _members(last) if m.islnk()] == ["./a/hard"]
    target = tmp_path / "dst"
    _unpack(parts, last, target)
    assert _describe(target) == _describe(source)
    assert (target / "a" / "hard").stat().st_ino == (target / "b" / "f0 'q' $(x)\n").stat().st_ino


def test_one_worker_needs_no_last_pass_unless_a_directory_was_locked(tmp_path: Path) -> None:
    """Never grown: hard links go to the one worker; a last pass only for a locked dir."""
    source = tmp_path / "src"
    source.mkdir()
    _tree(source)
    splitter = TarSplitter(3, active=1)
    out = [data for _, data in splitter.feed(_stream(source))]  # all of it is worker 0's
    assert splitter.needs_last_pass  # "locked" is 0555: its owner could not write in it
    target = tmp_path / "dst"
    _unpack([b"".join(out) + END], bytes(splitter.deferred) + END, target)
    assert _describe(target) == _describe(source)
    assert (target / "a" / "hard").stat().st_ino == (target / "b" / "f0 'q' $(x)\n").stat().st_ino
    (source / "locked").chmod(0o755)
    os.utime(source / "locked", (1_600_000_000, 1_600_000_000))
    splitter = TarSplitter(3, active=1)
    out = [data for _, data in splitter.feed(_stream(source))]
    assert not splitter.needs_last_pass
    splitter.freeze()
    assert not splitter.can_grow
    again = tmp_path / "again"
    _unpack([b"".join(out) + END], None, again)
    assert _describe(again) == _describe(source)


def test_growth_alone_makes_the_last_pass_needed(tmp_path: Path) -> None:
    """Every directory writable by its owner: once grown, the last pass is still needed."""
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f").write_bytes(b"x")
    stream = _stream(source)
    alone = TarSplitter(2, active=1)
    alone.feed(stream)
    assert not alone.needs_last_pass
    grown = TarSplitter(2, active=1)
    grown.grow(1)
    grown.feed(stream)
    assert grown.needs_last_pass


def test_growth_is_refused_once_frozen_or_full() -> None:
    """grow() past the workers there are, or after freeze(): ValueError."""
    splitter = TarSplitter(3, active=1)
    with pytest.raises(ValueError, match="cannot grow"):
        splitter.grow(3)
    assert splitter.grow(2) == b""
    assert not splitter.can_grow and splitter.active == 3
    frozen = TarSplitter(2, active=1)
    frozen.freeze()
    with pytest.raises(ValueError, match="cannot grow"):
        frozen.grow(1)


def test_pax_records_and_global_headers_travel_with_their_members() -> None:
    """A pax size record and a global header are routed so that each stream still parses."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.pax_headers = {"comment": "global"}
        for index in range(10):
            info = tarfile.TarInfo(f"dir/ü-{index}")
            info.size = 1000 + index
            info.pax_headers = {"size": str(1000 + index), "comment": "x" * index}
            archive.addfile(info, io.BytesIO(bytes([index]) * (1000 + index)))
    parts, last = _split(buffer.getvalue(), 2, random.Random(5))
    names = []
    for part in parts:
        with tarfile.open(fileobj=io.BytesIO(part)) as archive:
            for member in archive.getmembers():
                data = archive.extractfile(member)
                assert data is not None and len(data.read()) == member.size
                names.append(member.name)
    assert sorted(names) == sorted(f"dir/ü-{index}" for index in range(10))
    with tarfile.open(fileobj=io.BytesIO(last)) as archive:
        assert archive.getmembers() == []  # no directories or links here


def test_garbage_and_truncation_are_errors() -> None:
    """Not a tar stream, or one cut in a member: ValueError, never a silent half tree."""
    with pytest.raises(ValueError, match="not a tar archive"):
        TarSplitter(2).feed(os.urandom(2048))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("f")
        info.size = 5000
        archive.addfile(info, io.BytesIO(bytes(5000)))
    splitter = TarSplitter(2)
    splitter.feed(buffer.getvalue()[:3000])
    with pytest.raises(ValueError, match="middle of a member"):
        splitter.close()

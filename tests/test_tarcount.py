"""The tar stream file counter behind tree progress reports."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

from streamdata.connectors._tar.count import TarFileCounter
from streamdata.connectors._tar.header import checksum_ok, header_number


def _tree(root: Path) -> int:
    """A tree with long and non-ASCII names, links and empty things; returns its files."""
    (root / "d" / "empty").mkdir(parents=True)
    (root / "d" / ("long-" * 40 + "name")).write_bytes(os.urandom(1000))
    (root / "d" / "é spaced 'q'\n").write_bytes(b"")
    (root / "big").write_bytes(os.urandom(70_000))
    os.link(root / "big", root / "hard")
    (root / "sym").symlink_to("big")
    return 4  # long name, empty file, big, and its hard link


def _count(stream: bytes, rng: random.Random, *, max_piece: int) -> int:
    counter = TarFileCounter()
    total, position = 0, 0
    while position < len(stream):
        piece = rng.randint(1, max_piece)
        total += counter.feed(stream[position : position + piece])
        position += piece
    assert not counter.broken
    return total


@pytest.mark.parametrize("max_piece", [1, 511, 513, 65536])
def test_counts_the_files_of_gnu_tar_output(tmp_path: Path, max_piece: int) -> None:
    """What `tar -cf -` writes is counted exactly, however the stream is cut."""
    files = _tree(tmp_path / "t")
    stream = subprocess.run(
        ["tar", "-C", str(tmp_path / "t"), "-cf", "-", "."], capture_output=True, check=True
    ).stdout
    assert _count(stream, random.Random(max_piece), max_piece=max_piece) == files


@pytest.mark.parametrize("form", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_counts_every_tar_format(tmp_path: Path, form: int) -> None:
    """GNU long names, pax headers and plain ustar all count the same files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=form) as archive:
        for index in range(30):
            data = os.urandom(index * 100)
            name = (
                f"dir/{'x' * (index % 3) * 40}{index}-ü"
                if form != tarfile.USTAR_FORMAT
                else f"f{index}"
            )
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if form == tarfile.PAX_FORMAT:
                info.pax_headers = {"comment": "é" * index}
            archive.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
    assert _count(buffer.getvalue(), random.Random(form), max_piece=700) == 30


def test_a_pax_size_record_overrides_the_header() -> None:
    """A pax 'size' (how sizes beyond 8 GiB are written) decides how much data to skip."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("a")
        info.size = 3000
        info.pax_headers = {"size": "3000"}
        archive.addfile(info, io.BytesIO(os.urandom(3000)))
        second = tarfile.TarInfo("b")
        archive.addfile(second, io.BytesIO(b""))
    assert TarFileCounter().feed(buffer.getvalue()) == 2


def test_base256_sizes() -> None:
    """GNU writes sizes of 8 GiB and more in base-256."""
    field = bytes([0x80]) + (9 << 30).to_bytes(11, "big")
    assert header_number(field) == 9 << 30
    assert header_number(b"00000001750\0") == 1000


def test_garbage_stops_counting_without_errors() -> None:
    """A stream that is not tar is not counted, and never raises."""
    counter = TarFileCounter()
    assert counter.feed(os.urandom(4096)) == 0
    assert counter.broken
    assert counter.feed(b"more") == 0


def _by_definition(header: bytes) -> bool:
    """The checksum rule as POSIX states it: the byte sum, checksum field as spaces."""
    return header_number(header[148:156]) == sum(header[:148]) + 8 * 32 + sum(header[156:])


def test_checksum_agrees_with_its_definition() -> None:
    """The Adler-32 shortcut gives the plain byte sum's verdict, at the extremes too."""
    rng = random.Random(7)
    headers = [bytes(512), bytes([255]) * 512, bytes([255]) * 256 + bytes(256)]
    for _ in range(3000):
        header = bytearray(rng.randbytes(512) if rng.random() < 0.5 else bytes(512))
        if rng.random() < 0.7:  # a valid checksum, then maybe one byte off
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\0 " % sum(header)
            if rng.random() < 0.5:
                header[rng.randrange(512)] ^= 1 << rng.randrange(8)
        headers.append(bytes(header))
    buffer = io.BytesIO()
    for form in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        with tarfile.open(fileobj=buffer, mode="w", format=form) as archive:
            ustar = form == tarfile.USTAR_FORMAT  # no long names or huge numbers there
            info = tarfile.TarInfo("é/" + "n" * (20 if ustar else 120))
            info.size, info.mode = 3, 0o7777
            info.mtime = 1_600_000_000 if ustar else 2**33 + 5  # GNU: base-256
            archive.addfile(info, io.BytesIO(b"abc"))
    stream = buffer.getvalue()
    headers += [stream[at : at + 512] for at in range(0, len(stream), 512)]
    assert {checksum_ok(h) for h in headers} == {True, False}
    assert not checksum_ok(bytes([255]) * 1024)  # not a header: no wrapped sum says yes
    for block in headers:
        assert checksum_ok(block) == _by_definition(block)

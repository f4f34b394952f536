"""The tree filter on real ``tar`` streams: specials left out, links into the tree relative.

Archives are made by GNU ``tar`` from real trees in both of its formats (GNU long-name
records; pax headers), fed to the filter in pieces of every awkward size, and unpacked
again by ``tar``.
"""

from __future__ import annotations

import io
import os
import random
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from streamdata.connectors._tar.filter import TreeFilter, inside_root, relative_target
from streamdata.connectors._tar.header import TarChunk

FORMATS = ("gnu", "posix")
SIZES = (1, 100, 511, 512, 513, 4096, 10_000, 1 << 20)
LONG = "d" * 60 + "/" + "e" * 60  # a path over 100 bytes: long-name records


def _archive(tree: Path, fmt: str) -> bytes:
    command = ["tar", f"--format={fmt}", "-C", str(tree), "-cf", "-", "."]
    return subprocess.run(command, check=True, capture_output=True).stdout


def _unpack(data: bytes, into: Path) -> None:
    into.mkdir()
    subprocess.run(["tar", "-C", str(into), "-xpf", "-"], input=data, check=True)


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _filtered(data: bytes, roots: list[bytes], size: int) -> bytes:
    tree_filter = TreeFilter(roots)
    out = b"".join(tree_filter.feed(piece) for piece in _pieces(data, size))
    return out + tree_filter.close()


def _tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / LONG).mkdir(parents=True)
    (tree / "sub" / "data.bin").write_bytes(os.urandom(5000))
    (tree / "sub" / "big.bin").write_bytes(os.urandom(70_000))
    (tree / LONG / "file").write_bytes(b"deep")
    os.mkfifo(tree / "fifo")
    os.mkfifo(tree / LONG / "fifo")
    if os.geteuid() == 0:  # a device only root can make
        os.mknod(tree / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.symlink(tree / "sub" / "data.bin", tree / "abs")
    os.symlink(tree / LONG / "file", tree / LONG / "abs-long")
    os.symlink(tree, tree / "sub" / "root")
    os.symlink("sub/data.bin", tree / "rel")
    os.symlink("/etc/hostname", tree / "out")
    os.link(tree / "sub" / "data.bin", tree / "hard")
    return tree


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", SIZES)
def test_specials_are_left_out_and_links_made_relative(tmp_path: Path, fmt: str, size: int) -> None:
    """Any chunking of a GNU or pax stream unpacks without fifos, with relative links."""
    tree = _tree(tmp_path)
    out = tmp_path / "out"
    _unpack(_filtered(_archive(tree, fmt), [os.fsencode(tree)], size), out)
    assert not (out / "fifo").exists()
    assert not (out / LONG / "fifo").exists()
    assert not (out / "null").exists()
    assert os.readlink(out / "abs") == "sub/data.bin"
    assert os.readlink(out / LONG / "abs-long") == "file"
    assert os.readlink(out / "sub" / "root") == ".."
    assert os.readlink(out / "rel") == "sub/data.bin"
    assert os.readlink(out / "out") == "/etc/hostname"
    assert (out / "sub" / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()
    assert (out / "hard").stat().st_ino == (out / "sub" / "data.bin").stat().st_ino


@pytest.mark.parametrize("fmt", FORMATS)
def test_long_relative_targets_and_odd_names_survive(tmp_path: Path, fmt: str) -> None:
    """A new target over 100 bytes, and non-UTF-8 names, are carried exactly."""
    tree = tmp_path / "tree"
    deep = tree / "a" / "b" / "c" / "d" / "e" / "f" / "g" / "h" / "i" / "j" / "k"
    deep.mkdir(parents=True)
    odd = os.fsdecode(b"caf\xe9 \n'$(x)'")
    target = tree / ("t" * 90) / odd
    target.parent.mkdir()
    target.write_bytes(b"t")
    os.symlink(target, deep / odd)
    out = tmp_path / "out"
    _unpack(_filtered(_archive(tree, fmt), [os.fsencode(tree)], 513), out)
    expected = "../" * 11 + "t" * 90 + "/" + odd
    assert os.readlink(out / deep.relative_to(tree) / odd) == expected
    assert (out / deep.relative_to(tree) / odd).read_bytes() == b"t"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_short_target_can_become_a_long_one(tmp_path: Path, fmt: str) -> None:
    """A link made relative deep in the tree may outgrow the header's 100 bytes."""
    tree = tmp_path / "tree"
    deep = tree.joinpath(*["a"] * 40)
    deep.mkdir(parents=True)
    (tree / "x").write_bytes(b"x")
    os.symlink(tree / "x", deep / "up")
    assert len(os.fsencode(tree / "x")) < 100
    out = tmp_path / "out"
    _unpack(_filtered(_archive(tree, fmt), [os.fsencode(tree)], 1000), out)
    assert os.readlink(out / deep.relative_to(tree) / "up") == "../" * 40 + "x"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_clean_stream_passes_unchanged(tmp_path: Path, fmt: str) -> None:
    """A stream with nothing to change comes out byte for byte; whole chunks as they are."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(os.urandom(3000))
    os.symlink("sub/f", tree / "rel")
    data = _archive(tree, fmt)
    for size in (*SIZES, random.Random(7).randrange(1, 2000)):
        assert _filtered(data, [os.fsencode(tree)], size) == data
    tree_filter = TreeFilter([os.fsencode(tree)])
    assert _same(tree_filter.feed(data), data)
    if fmt == "gnu":  # no member spans two blocks: every block-sized chunk is passed on
        tree_filter = TreeFilter([os.fsencode(tree)])
        for piece in _pieces(data, 512):
            assert _same(tree_filter.feed(piece), piece)


def _same(passed: bytes, given: bytes) -> bool:
    """``passed`` is ``given`` itself, or its bytes with the headers read in them."""
    if isinstance(passed, TarChunk):
        return passed == given and bool(passed.headers)
    return passed is given


def test_a_hard_link_to_a_left_out_fifo_is_left_out(tmp_path: Path) -> None:
    """A second name of a fifo stored as a hard link (as bsdtar may): both are left out."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as writer:
        for name, kind, target in [
            ("./fifo", tarfile.FIFOTYPE, ""),
            ("./again", tarfile.LNKTYPE, "./fifo"),
            ("./kept", tarfile.SYMTYPE, "elsewhere"),
        ]:
            member = tarfile.TarInfo(name)
            member.type, member.linkname = kind, target
            writer.addfile(member)
    out = tmp_path / "out"
    _unpack(_filtered(archive.getvalue(), [b"/tree"], 700), out)
    assert sorted(os.listdir(out)) == ["kept"]


def test_a_stream_that_is_not_tar_passes_unchanged() -> None:
    """Bytes that are not a tar archive are passed on for tar to refuse."""
    garbage = b"this is not a tar archive" * 100
    assert _filtered(garbage, [b"/x"], 100) == garbage


@pytest.mark.parametrize(
    ("member", "target", "expected"),
    [
        (b"./link", b"/src/tree/a/b", b"a/b"),
        (b"./sub/link", b"/src/tree", b".."),
        (b"./link", b"/src/tree", b"."),
        (b"./sub/link", b"/src/tree/", b"../"),
        (b"./a/b/link", b"//src/./tree/x/../y", b"../../y"),
        (b"./link", b"/real/tree/z", b"z"),
        (b"./link", b"/src/tree-other/z", None),
        (b"./link", b"/src/tree/../z", None),
        (b"./link", b"tree/z", None),
    ],
)
def test_relative_target(member: bytes, target: bytes, expected: bytes | None) -> None:
    """Targets are judged on their normalised text against every root."""
    assert relative_target([b"/src/tree", b"/real/tree"], member, target) == expected


def test_everything_is_inside_the_root_directory() -> None:
    """A tree rooted at / holds every absolute target."""
    assert inside_root([b"/"], b"/etc/hostname") == b"etc/hostname"

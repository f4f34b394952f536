"""check(repair=True): what it restores, what it never replaces, and what a dry run leaves."""

from __future__ import annotations

from pathlib import Path

from streamdata import DataManager, ExecutionLocation, LocalConnector

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


def _manager(catalog: Path | None = None) -> DataManager:
    return DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}, catalog=catalog)


async def _copied(dm: DataManager, root: Path, data: bytes = b"precious") -> tuple[Path, Path]:
    """A registered file on A and its copy on B, both below ``root``."""
    src = root / "a" / "f"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    dm.register_path(A, str(src))
    dst = root / "b" / "f"
    await dm.transfer_data(A, str(src), [B], str(dst))
    return src, dst


async def test_repair_never_replaces_an_entry_of_another_type(tmp_path: Path) -> None:
    """A directory now where a file replica was is reported as an error, and left whole."""
    async with _manager() as dm:
        _, dst = await _copied(dm, tmp_path)
        dst.unlink()
        (dst / "mine").mkdir(parents=True)
        (dst / "mine" / "notes.txt").write_text("not a replica")
        report = await dm.check(B, str(dst.parent), repair=True)
    assert report.missing == [str(dst)]
    assert report.repaired == []
    assert [path for path, _ in report.errors] == [str(dst)]
    assert (dst / "mine" / "notes.txt").read_text() == "not a replica"

"""check(repair=True): what it restores, what it never replaces, and what a dry run leaves."""

from __future__ import annotations

from pathlib import Path

from streamdata import DataManager, EventKind, ExecutionLocation, LocalConnector, TransferEvent

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


async def test_repair_reports_its_copy_as_transfer_events(tmp_path: Path) -> None:
    """The copy made by check(repair=True) emits started and finished TransferEvents."""
    seen: list[TransferEvent] = []
    async with _manager() as dm:
        src, dst = await _copied(dm, tmp_path, b"p" * 200_000)
        dst.unlink()
        dm.add_listener(lambda e: seen.append(e) if isinstance(e, TransferEvent) else None)
        report = await dm.check(B, str(dst.parent), repair=True)
    assert report.repaired == [str(dst)]
    assert [e.kind for e in seen][:1] == [EventKind.TRANSFER_STARTED]
    assert seen[-1].kind is EventKind.TRANSFER_FINISHED
    assert {(e.source, e.src_path, e.destinations, e.dst_path) for e in seen} == {
        (A, str(src), (B,), str(dst))
    }
    assert seen[-1].bytes_done == 200_000

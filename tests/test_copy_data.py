"""DataManager.copy_data: transfer_data that tells where the data is on each destination."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdata import DataManager, DataNotFoundError, DataType, ExecutionLocation, LocalConnector

A = ExecutionLocation("localhost", "a", local=True)
B = ExecutionLocation("localhost", "b", local=True)


def _manager() -> DataManager:
    return DataManager({"a": LocalConnector(), "b": LocalConnector()})


async def test_copy_data_tells_where_the_data_landed(tmp_path: Path) -> None:
    """Into an existing directory the data lands under its basename; on the source's own
    location a repeated copy reports the link made the first time."""
    source = tmp_path / "src" / "f.txt"
    source.parent.mkdir()
    source.write_text("f")
    (tmp_path / "out").mkdir()
    async with _manager() as manager:
        manager.register_path(A, str(source))
        landed = await manager.copy_data(A, str(source), [B], str(tmp_path / "out"))
        assert landed == {B: str(tmp_path / "out" / "f.txt")}
        link = str(tmp_path / "link")
        for _ in range(2):
            assert await manager.copy_data(A, str(source), [A], link) == {A: link}
        kinds = {r.path: r.data_type for r in manager.get_data_locations(str(source))}
        assert kinds[link] is DataType.SYMBOLIC_LINK


async def test_register_source_registers_only_data_the_catalog_does_not_know(
    tmp_path: Path,
) -> None:
    """An unknown source fails unless register_source; then it is registered PRIMARY; a
    file inside a registered tree is known data, copied as it is."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.txt").write_text("x")
    loose = tmp_path / "loose.txt"
    loose.write_text("l")
    async with _manager() as manager:
        with pytest.raises(DataNotFoundError):
            await manager.copy_data(A, str(loose), [B], str(tmp_path / "l1"))
        landed = await manager.copy_data(
            A, str(loose), [B], str(tmp_path / "l2"), register_source=True
        )
        assert landed == {B: str(tmp_path / "l2")}
        assert [r.data_type for r in manager.get_data_locations(str(loose), "a")] == [
            DataType.PRIMARY
        ]
        manager.register_path(A, str(tree))
        inner = str(tree / "sub" / "x.txt")
        await manager.copy_data(A, inner, [B], str(tmp_path / "x2"), register_source=True)
        assert (tmp_path / "x2").read_text() == "x"

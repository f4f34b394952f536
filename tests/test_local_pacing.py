"""The local connector's write pacing is its own setting, passed in, never process-wide."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from streamdata import ExecutionLocation, LocalConnector
from streamdata.connectors import Entry, EntryKind
from streamdata.connectors._diskio import WritePacing

LOCATION = ExecutionLocation("localhost", "local", local=True)


class _CountingPacing(WritePacing):
    """A pacing that counts the chunks it wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def write(self, fd: int, data: bytes, *, local: bool | None = None) -> None:
        self.writes += 1
        await super().write(fd, data, local=local)


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b"x" * 1000


async def test_a_connector_writes_through_the_pacing_it_is_given(tmp_path: Path) -> None:
    """Streamed file writes go through the connector's own pacing, not a module global."""
    pacing = _CountingPacing()
    given, other = LocalConnector(pacing=pacing), LocalConnector()
    for index, connector in enumerate((given, other)):
        path = str(tmp_path / f"f{index}")
        entry = Entry(path, EntryKind.FILE, 3000, 1_600_000_000.0, 0o640)
        await connector.write(LOCATION, path, entry, _chunks())
        assert Path(path).read_bytes() == b"x" * 3000
    assert pacing.writes == 3

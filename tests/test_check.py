"""The audit ignores what this manager is writing right now."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streamdata import DataManager, ExecutionLocation, LocalConnector

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


class _GatedCopy(LocalConnector):
    """Starts a copy, then waits for the test to open the gate before finishing."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        await super().copy(location, src_path, dst_path)
        self.started.set()
        await self.gate.wait()


async def test_in_flight_temporary_is_not_an_orphan(tmp_path: Path) -> None:
    """A check during a transfer does not report the transfer's temporary file."""
    src = tmp_path / "src.txt"
    src.write_text("data")
    out = tmp_path / "out"
    out.mkdir()
    gated = _GatedCopy()
    async with DataManager({"site-a": LocalConnector(), "site-b": gated}) as dm:
        dm.register_path(A, str(src))
        (out / "keep.txt").write_text("k")
        dm.register_path(B, str(out / "keep.txt"))  # out itself is only implied
        transfer = asyncio.create_task(dm.transfer_data(A, str(src), [B], str(out / "f")))
        await asyncio.wait_for(gated.started.wait(), 10)
        assert sum(p.name.startswith(".streamdata-tmp-") for p in out.iterdir()) == 1
        during = await dm.check(B, str(out))
        gated.gate.set()
        await transfer
        after = await dm.check(B, str(out))
    assert during.orphans == []
    assert during.missing == []
    assert after.orphans == []
    assert (out / "f").read_text() == "data"

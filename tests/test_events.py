"""Events: a transfer reports started, monotonic progress summing to the total, finished."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamdata import (
    DataManager,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    ReplicaEvent,
    TransferError,
    TransferEvent,
)
from streamdata.connectors import Connector

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


def _manager() -> DataManager:
    return DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()})


async def test_transfer_events_in_order_with_monotonic_progress(tmp_path: Path) -> None:
    """started, then progress events with growing bytes_done ending at the size, then finished."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"z" * 300_000)
    seen: list[TransferEvent] = []
    async with _manager() as dm:
        dm.add_listener(lambda e: seen.append(e) if isinstance(e, TransferEvent) else None)
        dm.register_path(A, str(src))
        await dm.transfer_data(A, str(src), [B], str(tmp_path / "out.bin"))
    kinds = [e.kind for e in seen]
    assert kinds[0] is EventKind.TRANSFER_STARTED
    assert kinds[-1] is EventKind.TRANSFER_FINISHED
    progress = [e.bytes_done for e in seen if e.kind is EventKind.TRANSFER_PROGRESS]
    assert progress == sorted(progress)
    assert progress[-1] == 300_000 == seen[-1].bytes_total == seen[-1].bytes_done
    assert len({e.transfer_id for e in seen}) == 1


class _BrokenConnector(LocalConnector):
    """A local connector whose copies fail, to observe the failure event."""

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        raise OSError("injected failure")


async def test_failed_transfer_event_carries_the_cause(tmp_path: Path) -> None:
    """A failing destination yields a TRANSFER_FAILED event with its cause."""
    src = tmp_path / "f"
    src.write_text("x")
    broken: Connector = _BrokenConnector()
    seen: list[TransferEvent] = []
    async with DataManager({"site-a": LocalConnector(), "site-b": broken}) as dm:
        dm.add_listener(lambda e: seen.append(e) if isinstance(e, TransferEvent) else None)
        dm.register_path(A, str(src))
        with pytest.raises(TransferError):
            await dm.transfer_data(A, str(src), [B], str(tmp_path / "g"))
    assert seen[-1].kind is EventKind.TRANSFER_FAILED
    assert "injected failure" in str(seen[-1].error)


async def test_async_subscription_sees_replica_events(tmp_path: Path) -> None:
    """An async subscriber receives registration and invalidation events."""
    src = tmp_path / "f"
    src.write_text("x")
    async with _manager() as dm:
        received: list[ReplicaEvent] = []

        async def consume() -> None:
            async for event in dm.events():
                if isinstance(event, ReplicaEvent):
                    received.append(event)
                    if event.kind is EventKind.REPLICA_INVALIDATED:
                        break

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        dm.register_path(A, str(src))
        dm.invalidate_location(A, str(src))
        await asyncio.wait_for(consumer, 5)
    assert [e.kind for e in received] == [
        EventKind.REPLICA_REGISTERED,
        EventKind.REPLICA_INVALIDATED,
    ]
    assert received[0].replica.path == str(src)


def test_callback_errors_do_not_break_the_manager(tmp_path: Path) -> None:
    """A listener that raises is logged and ignored; the call it observed still succeeds."""
    dm = _manager()

    def bad(event: object) -> None:
        raise RuntimeError("listener bug")

    remove = dm.add_listener(bad)
    replica = dm.register_path(A, str(tmp_path))
    assert replica.path == str(tmp_path)
    remove()
    asyncio.run(dm.close())

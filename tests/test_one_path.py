"""One transfer path: ``replicate`` and ``check(repair=True)`` copy as ``transfer_data`` does.

The same copy (one replica on site A to one exact path on site B) is made three ways, each
on a fresh manager, and the events a listener sees from the copy's start to its end are
compared: kinds, fields (all but the transfer id) and order, catalog events included.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from streamdata import (
    DataManager,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    ReplicaEvent,
    TransferEvent,
)

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")

Event = TransferEvent | ReplicaEvent
#: An event without what differs between runs (the transfer id, the replica object).
Seen = tuple[object, ...]


def _make_data(root: Path, kind: str) -> Path:
    """A file, or a small tree (a file, a nested file, an empty directory), under ``root``."""
    root.mkdir(parents=True)
    if kind == "file":
        data = root / "data.bin"
        data.write_bytes(b"x" * 200_000)
        return data
    data = root / "tree"
    (data / "sub").mkdir(parents=True)
    (data / "empty").mkdir()
    (data / "top.txt").write_text("top")
    (data / "sub" / "inner.bin").write_bytes(b"y" * 50_000)
    return data


def _seen(event: Event) -> Seen:
    if isinstance(event, ReplicaEvent):
        replica = event.replica
        return (event.kind, replica.location, replica.path)
    assert isinstance(event, TransferEvent)
    return (
        event.kind,
        event.source,
        event.src_path,
        event.destinations,
        event.dst_path,
        event.bytes_done,
        event.bytes_total,
        event.files_done,
        event.files_total,
        event.error,
    )


def _the_copy(events: list[Event]) -> list[Seen]:
    """The events from the (one) transfer's start to its end, catalog events between included."""
    ends = [i for i, e in enumerate(events) if isinstance(e, TransferEvent)]
    assert ends, "no transfer happened"
    transfers = {e.transfer_id for e in events if isinstance(e, TransferEvent)}
    assert len(transfers) == 1
    assert events[ends[-1]].kind is EventKind.TRANSFER_FINISHED
    return [_seen(e) for e in events[ends[0] : ends[-1] + 1]]


async def _observed(
    tmp_path: Path, kind: str, setup: bool, copy: Callable[[DataManager, str, str], Awaitable[None]]
) -> list[Seen]:
    """Events of ``copy(dm, src, dst)`` on a fresh manager; ``setup``: dst made, then lost."""
    data = _make_data(tmp_path / "src", kind)
    dst = str(tmp_path / "dst" / data.name)
    (tmp_path / "dst").mkdir()
    events: list[Event] = []
    async with DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()}) as dm:
        dm.register_path(A, str(data))
        if setup:  # a copy at dst that the repair will find missing
            await dm.transfer_data(A, str(data), [B], dst)
            shutil.rmtree(dst) if Path(dst).is_dir() else Path(dst).unlink()
        dm.add_listener(events.append)
        await copy(dm, str(data), dst)
    return _the_copy(events)


async def _by_transfer(dm: DataManager, src: str, dst: str) -> None:
    await dm.transfer_data(A, src, [B], dst)


async def _by_replicate(dm: DataManager, src: str, dst: str) -> None:
    await dm.replicate(src, [B], dst)


async def _by_repair(dm: DataManager, src: str, dst: str) -> None:
    report = await dm.check(B, dst, repair=True)
    assert report.repaired == [dst]


@pytest.mark.parametrize("kind", ["file", "tree"])
async def test_replicate_and_repair_copy_with_the_events_of_transfer_data(
    tmp_path: Path, kind: str
) -> None:
    """replicate and a repair emit the same events, fields and order as transfer_data."""
    made = await _observed(tmp_path / "t", kind, False, _by_transfer)
    assert made[0][0] is EventKind.TRANSFER_STARTED
    assert await _observed(tmp_path / "r", kind, False, _by_replicate) == _relocated(
        made, tmp_path / "t", tmp_path / "r"
    )
    assert await _observed(tmp_path / "c", kind, True, _by_repair) == _relocated(
        made, tmp_path / "t", tmp_path / "c"
    )


def _relocated(seen: list[Seen], old: Path, new: Path) -> list[Seen]:
    """``seen`` with the paths under ``old`` moved under ``new`` (each run has its own)."""

    def move(value: object) -> object:
        if isinstance(value, str) and value.startswith(str(old)):
            return str(new) + value[len(str(old)) :]
        return value

    return [tuple(move(value) for value in event) for event in seen]

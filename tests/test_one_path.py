"""One transfer path: ``replicate`` and ``check(repair=True)`` copy as ``transfer_data`` does.

The same copy (one replica on site A to one exact path on site B) is made three ways, each
on a fresh manager, and the events a listener sees from the copy's start to its end are
compared: kinds, fields (all but the transfer id) and order, catalog events included;
for a copy that succeeds and for one that fails.
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
    TransferError,
    TransferEvent,
)

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")

Event = TransferEvent | ReplicaEvent
#: An event without what differs between runs (the transfer id, the replica object).
Seen = tuple[object, ...]


class _Breakable(LocalConnector):
    """A local connector whose copies fail once ``broken`` is set (the fault to observe)."""

    broken = False

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        if self.broken:
            raise OSError("injected failure")
        await super().copy(location, src_path, dst_path)


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
        None if event.error is None else (type(event.error), str(event.error)),
    )


def _the_copy(events: list[Event], broken: bool) -> list[Seen]:
    """The events from the (one) transfer's start to its end, catalog events between included."""
    ends = [i for i, e in enumerate(events) if isinstance(e, TransferEvent)]
    assert ends, "no transfer happened"
    transfers = {e.transfer_id for e in events if isinstance(e, TransferEvent)}
    assert len(transfers) == 1
    last = EventKind.TRANSFER_FAILED if broken else EventKind.TRANSFER_FINISHED
    assert events[ends[-1]].kind is last
    return [_seen(e) for e in events[ends[0] : ends[-1] + 1]]


async def _observed(
    tmp_path: Path,
    kind: str,
    broken: bool,
    copy: Callable[[DataManager, str, str], Awaitable[None]],
    *,
    setup: bool = False,
) -> list[Seen]:
    """Events of ``copy(dm, src, dst)`` on a fresh manager; ``setup``: dst made, then lost."""
    data = _make_data(tmp_path / "src", kind)
    dst = str(tmp_path / "dst" / data.name)
    (tmp_path / "dst").mkdir()
    events: list[Event] = []
    site_b = _Breakable()
    async with DataManager({"site-a": LocalConnector(), "site-b": site_b}) as dm:
        dm.register_path(A, str(data))
        if setup:  # a copy at dst that the repair will find missing
            await dm.transfer_data(A, str(data), [B], dst)
            shutil.rmtree(dst) if Path(dst).is_dir() else Path(dst).unlink()
        site_b.broken = broken
        dm.add_listener(events.append)
        try:
            await copy(dm, str(data), dst)
        except TransferError:
            assert broken
        assert bool(dm.get_data_locations(dst, deployment="site-b")) is not broken
    return _the_copy(events, broken)


async def _by_transfer(dm: DataManager, src: str, dst: str) -> None:
    await dm.transfer_data(A, src, [B], dst)


async def _by_replicate(dm: DataManager, src: str, dst: str) -> None:
    await dm.replicate(src, [B], dst)


async def _by_repair(dm: DataManager, src: str, dst: str) -> None:
    report = await dm.check(B, dst, repair=True)
    assert report.missing == [dst]


@pytest.mark.parametrize("broken", [False, True], ids=["copied", "failed"])
@pytest.mark.parametrize("kind", ["file", "tree"])
async def test_replicate_and_repair_copy_with_the_events_of_transfer_data(
    tmp_path: Path, kind: str, broken: bool
) -> None:
    """replicate and a repair emit the same events, fields and order as transfer_data."""
    made = await _observed(tmp_path / "t", kind, broken, _by_transfer)
    assert made[0][0] is EventKind.TRANSFER_STARTED
    replicated = await _observed(tmp_path / "r", kind, broken, _by_replicate)
    assert replicated == _relocated(made, tmp_path / "t", tmp_path / "r")
    repaired = await _observed(tmp_path / "c", kind, broken, _by_repair, setup=True)
    assert repaired == _relocated(made, tmp_path / "t", tmp_path / "c")


def _relocated(seen: list[Seen], old: Path, new: Path) -> list[Seen]:
    """``seen`` with the paths under ``old`` moved under ``new`` (each run has its own)."""

    def move(value: object) -> object:
        if isinstance(value, str) and value.startswith(str(old)):
            return str(new) + value[len(str(old)) :]
        return value

    return [tuple(move(value) for value in event) for event in seen]

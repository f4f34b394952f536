"""Events: a transfer reports started, monotonic progress summing to the total, finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from pathlib import Path

import pytest

from streamdata import (
    ConnectorError,
    DataManager,
    EventKind,
    ExecutionLocation,
    LocalConnector,
    ReplicaEvent,
    SSHConnector,
    TransferError,
    TransferEvent,
)
from streamdata.connectors import Connector, Entry
from streamdata.testing import AsyncSSHTestServer

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")


def _manager() -> DataManager:
    return DataManager({"site-a": LocalConnector(), "site-b": LocalConnector()})


async def _transfer_events(
    dm: DataManager,
    source: ExecutionLocation,
    path: Path,
    targets: list[ExecutionLocation],
    dst: Path,
) -> list[TransferEvent]:
    """Register ``path`` on ``source``, transfer it to ``dst``; the transfer events seen."""
    seen: list[TransferEvent] = []
    dm.add_listener(lambda e: seen.append(e) if isinstance(e, TransferEvent) else None)
    dm.register_path(source, str(path))
    await dm.transfer_data(source, str(path), targets, str(dst))
    return seen


async def test_transfer_events_in_order_with_monotonic_progress(tmp_path: Path) -> None:
    """started, then progress events with growing bytes_done ending at the size, then finished."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"z" * 300_000)
    async with _manager() as dm:
        seen = await _transfer_events(dm, A, src, [B], tmp_path / "out.bin")
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


def _tree(root: Path, files: int) -> None:
    for index in range(files):
        folder = root / f"d{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}").write_bytes(bytes([index]) * (index * 3000))
    (root / "empty").mkdir()
    (root / "link").symlink_to("d0/f0")


@pytest.mark.parametrize("direction", ["up", "down"])
async def test_tree_progress_counts_files_through_the_stream(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, direction: str
) -> None:
    """A streamed tree reports files done as they pass, and the count when finished."""
    _tree(tmp_path / "tree", 25)
    local = ExecutionLocation("localhost", "local", local=True)
    remote = ExecutionLocation("remote", "ssh")
    connector = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    source, target = (local, remote) if direction == "up" else (remote, local)
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as dm:
        seen = await _transfer_events(dm, source, tmp_path / "tree", [target], tmp_path / "copy")
    assert (tmp_path / "copy" / "d3" / "f23").stat().st_size == 23 * 3000
    progress = [e for e in seen if e.kind is EventKind.TRANSFER_PROGRESS]
    counts = [e.files_done for e in progress]
    assert counts == sorted(counts)
    assert all(e.files_total is None for e in progress)  # unknown until the end
    assert seen[-1].kind is EventKind.TRANSFER_FINISHED
    assert seen[-1].files_done == seen[-1].files_total == 25


async def test_file_progress_has_one_file(tmp_path: Path) -> None:
    """A file transfer announces one file, done when it finishes."""
    src = tmp_path / "f.bin"
    src.write_bytes(b"q" * 1000)
    async with _manager() as dm:
        seen = await _transfer_events(dm, A, src, [B], tmp_path / "g.bin")
    assert all(e.files_total == 1 for e in seen)
    assert [e.files_done for e in seen][-1] == 1
    assert seen[0].files_done == 0


async def test_tree_copied_unseen_reports_no_file_count(tmp_path: Path) -> None:
    """A tree copied on its own filesystem is not streamed: no count is made up."""
    _tree(tmp_path / "tree", 5)
    async with _manager() as dm:
        seen = await _transfer_events(dm, A, tmp_path / "tree", [B], tmp_path / "copy")
    assert seen[-1].kind is EventKind.TRANSFER_FINISHED
    assert seen[-1].files_total is None
    assert (tmp_path / "copy" / "d0" / "f4").exists()


class _DropsOnce(SSHConnector):
    """An SSH connector whose first write loses its connection midway (transient)."""

    writes = 0

    async def write(
        self,
        location: ExecutionLocation,
        path: str,
        entry: Entry,
        chunks: AsyncIterable[bytes],
    ) -> None:
        self.writes += 1
        if self.writes == 1:
            taken = 0
            async for chunk in chunks:
                taken += len(chunk)
                if taken > 600_000:
                    break
            raise ConnectorError("connection lost (injected)", transient=True)
        await super().write(location, path, entry, chunks)


async def test_a_retried_tree_counts_its_files_once(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """After a transient failure the stream is read again; files are not counted twice."""
    _tree(tmp_path / "tree", 25)
    local = ExecutionLocation("localhost", "local", local=True)
    connector = _DropsOnce([asyncssh_server.ssh_host(name="remote")])
    remote = ExecutionLocation("remote", "ssh")
    async with DataManager({"local": LocalConnector(), "ssh": connector}) as dm:
        seen = await _transfer_events(dm, local, tmp_path / "tree", [remote], tmp_path / "c")
    assert connector.writes == 2
    assert seen[-1].files_done == seen[-1].files_total == 25


async def test_a_linked_tree_reports_no_file_count(tmp_path: Path) -> None:
    """A tree delivered as a link moves no files: its total is unknown, not zero."""
    _tree(tmp_path / "tree", 3)
    async with _manager() as dm:
        seen = await _transfer_events(dm, A, tmp_path / "tree", [A], tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert seen[-1].kind is EventKind.TRANSFER_FINISHED
    assert seen[-1].files_total is None

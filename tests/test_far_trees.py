"""Tree uploads to a far host wait for the link as little as possible.

A round trip costs tens of milliseconds there: the destination's stats travel together
(counted on the in-process asyncssh server behind a :class:`~streamdata.testing.DelayLine`),
the two prints of a local source tree (:mod:`streamdata._engine.treeprint`) are taken
while the network is busy anyway: the first while the destination is prepared, the second
as soon as the source's read ends, while the destination still writes; and each member
goes to the ``tar`` channel with the most room in its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import tarfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Hashable
from pathlib import Path

from far import far_host

from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector
from streamdata.connectors import Entry
from streamdata.connectors._tar.split import TarSplitter
from streamdata.testing import AsyncSSHTestServer

LOCAL = ExecutionLocation("localhost", "local", local=True)
REMOTE = ExecutionLocation("remote", "ssh")
OTHER = ExecutionLocation("other", "other", local=True)
#: One way: a 60 ms round trip.
DELAY = 0.03
#: How long a test waits for something that should happen at once.
PATIENCE = 3.0


class _TimedRequests(list[str]):
    """The server's record of SFTP requests, each also stamped with when it came."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, name: str) -> None:
        self.times.append(time.monotonic())
        super().append(name)


def _rounds(times: list[float], gap: float) -> int:
    """How many bursts ``times`` make, a burst ending where ``gap`` passes with none."""
    return 1 + sum(1 for before, after in itertools.pairwise(times) if after - before > gap)


def _tree(root: Path, files: int = 20) -> Path:
    for index in range(files):
        path = root / f"d{index % 4}" / f"f{index}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (index + 1))
    return root


async def test_a_tree_upload_looks_at_the_destination_in_one_round_trip(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Uploading a tree to a new path far away: every SFTP stat in one round trip."""
    source = _tree(tmp_path / "tree")
    (tmp_path / "out").mkdir()
    async with far_host(asyncssh_server, tmp_path, delay=DELAY) as (_, host):
        requests = asyncssh_server.sftp_requests = _TimedRequests()
        deployments = {"local": LocalConnector(), "ssh": SSHConnector([host])}
        async with DataManager(deployments) as manager:
            manager.register_path(LOCAL, str(source))
            target = str(tmp_path / "out" / "copy")
            await manager.transfer_data(LOCAL, str(source), [REMOTE], target, writable=True)
    assert sorted((tmp_path / "out" / "copy").rglob("*.txt")) != []
    # the destination's stat and lstat (its parent is asked by a command: a cold far host)
    assert requests.count("stat") + requests.count("lstat") >= 2
    assert _rounds(requests.times, gap=DELAY) == 1


class _CountingSource(LocalConnector):
    """A local connector that counts the listings of its trees (each print is one)."""

    def __init__(self) -> None:
        super().__init__()
        self.walks = 0
        self.reached = [asyncio.Event() for _ in range(4)]  # set once that many were started

    async def walk(self, location: ExecutionLocation, path: str) -> AsyncIterator[Entry]:
        self.walks += 1
        self.reached[min(self.walks, 3)].set()
        async for entry in super().walk(location, path):
            yield entry


class _WatchingDestination(LocalConnector):
    """A local connector on a filesystem of its own that notes how many prints the source
    had made when it prepared the destination, and when its write had taken every chunk."""

    def __init__(self, source: _CountingSource) -> None:
        super().__init__()
        self.source = source
        self.walks_while_preparing: int | None = None
        self.walks_once_read: int | None = None

    def filesystem(self, location: ExecutionLocation) -> Hashable:
        return ("other", location.name)

    async def prepare_destination(
        self, location: ExecutionLocation, dst_path: str, basename: str
    ) -> str:
        self.walks_while_preparing = await self._walks_reaching(1)
        return await super().prepare_destination(location, dst_path, basename)

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        taken = [chunk async for chunk in chunks]
        self.walks_once_read = await self._walks_reaching(2)

        async def again() -> AsyncIterator[bytes]:
            for chunk in taken:
                yield chunk

        await super().write(location, path, entry, again())

    async def _walks_reaching(self, count: int) -> int:
        """The source's listings so far, once there are ``count`` (or after a while)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PATIENCE):
                await self.source.reached[count].wait()
        return self.source.walks


async def test_a_local_tree_is_printed_while_planned_and_when_read(tmp_path: Path) -> None:
    """A local tree's first print is taken while the destination is prepared, its second
    as soon as its read ends, before the destination has finished writing."""
    source_tree = _tree(tmp_path / "tree")
    source = _CountingSource()
    destination = _WatchingDestination(source)
    async with DataManager({"local": source, "other": destination}) as manager:
        manager.register_path(LOCAL, str(source_tree))
        target = str(tmp_path / "copy")
        await manager.transfer_data(LOCAL, str(source_tree), [OTHER], target, writable=True)
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*.txt")) == sorted(
        p.name for p in source_tree.rglob("*.txt")
    )
    assert destination.walks_while_preparing == 1
    assert destination.walks_once_read == 2
    assert source.walks == 2


def _archive(names: list[str], size: int) -> bytes:
    """A tar stream of files of ``size`` bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(b"y" * size))
    return buffer.getvalue()


def _routes(splitter: TarSplitter, data: bytes) -> list[int]:
    """The worker of each member in ``data`` (its pieces go to one worker in a row)."""
    return [route for route, _ in itertools.groupby(r for r, piece in splitter.feed(data) if piece)]


def test_members_go_to_the_worker_with_the_least_left_to_send() -> None:
    """After ``rebalance``, the next members go to the workers with the fewest bytes
    waiting (a channel whose window is full gets none), not the fewest routed."""
    splitter = TarSplitter(3)
    member = 512 + 4096
    stream = _archive([f"f{index}" for index in range(4)], 4096)
    assert _routes(splitter, stream[: 2 * member]) == [0, 1]
    splitter.rebalance([0, 50_000, 90_000])  # worker 0 sent all it got: it takes more
    assert _routes(splitter, stream[2 * member : 3 * member]) == [0]

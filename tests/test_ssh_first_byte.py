"""A large file's data starts at once: no SFTP round trip and no buffering before it.

The engine hands each connector the source's :class:`Entry` (size, mode, mtime) it got
from its ``stat``, so the SSH connector knows a file is big without asking the server
again, and starts its ``cat`` with the first chunk. The in-process asyncssh server
records every SFTP operation it serves (``sftp_requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector
from streamdata.connectors import Entry
from streamdata.testing import AsyncSSHTestServer

SIZE = 8 << 20
SSH = ExecutionLocation("remote", "ssh")
LOCAL = ExecutionLocation("localhost", "local", local=True)


def _written(directory: Path) -> bool:
    """Whether a temporary file in ``directory`` already holds some bytes."""
    return any(p.stat().st_size > 0 for p in directory.glob(".streamdata-tmp-*"))


class _PausingSource(LocalConnector):
    """Hands over the first chunk, then waits until the destination has bytes on disk."""

    def __init__(self, server: AsyncSSHTestServer, destination: Path) -> None:
        super().__init__()
        self.server = server
        self.destination = destination
        self.requests_at_first_chunk: int | None = None
        self.requests_at_first_byte: int | None = None

    @contextlib.asynccontextmanager
    async def read(
        self, location: ExecutionLocation, entry: Entry
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        async with super().read(location, entry) as chunks:
            yield self._paused(chunks)

    async def _paused(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        first = True
        async for chunk in chunks:
            yield chunk
            if first:
                first = False
                self.requests_at_first_chunk = len(self.server.sftp_requests)
                await self._wait_for_data()

    async def _wait_for_data(self) -> None:
        for _ in range(600):  # three seconds at most: the file system has no event to await
            if _written(self.destination):
                self.requests_at_first_byte = len(self.server.sftp_requests)
                return
            await asyncio.sleep(0.005)


class _RecordingDestination(LocalConnector):
    """Notes how many SFTP operations the server had served when the first chunk came."""

    def __init__(self, server: AsyncSSHTestServer) -> None:
        super().__init__()
        self.server = server
        self.requests_at_start: int | None = None
        self.requests_at_first_chunk: int | None = None

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        self.requests_at_start = len(self.server.sftp_requests)
        await super().write(location, path, entry, self._noting(chunks))

    async def _noting(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            if self.requests_at_first_chunk is None:
                self.requests_at_first_chunk = len(self.server.sftp_requests)
            yield chunk


async def test_local_to_ssh_large_file_starts_without_sftp_or_buffering(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Local->ssh: the server gets the first chunk before the second is read, no SFTP between."""
    source, destination = tmp_path / "big.bin", tmp_path / "out"
    source.write_bytes(os.urandom(SIZE))
    destination.mkdir()
    local = _PausingSource(asyncssh_server, destination)
    ssh = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    async with DataManager({"local": local, "ssh": ssh}) as manager:
        manager.register_path(LOCAL, str(source))
        await manager.transfer_data(LOCAL, str(source), [SSH], str(destination / "big.bin"))
    assert (destination / "big.bin").read_bytes() == source.read_bytes()
    assert local.requests_at_first_chunk is not None
    assert local.requests_at_first_byte == local.requests_at_first_chunk


async def test_ssh_to_local_large_file_starts_without_sftp(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Ssh->local: no SFTP operation between the write's start and its first chunk."""
    source, target = tmp_path / "big.bin", tmp_path / "copy.bin"
    source.write_bytes(os.urandom(SIZE))
    local = _RecordingDestination(asyncssh_server)
    ssh = SSHConnector([asyncssh_server.ssh_host(name="remote")])
    async with DataManager({"local": local, "ssh": ssh}) as manager:
        manager.register_path(SSH, str(source))
        await manager.transfer_data(SSH, str(source), [LOCAL], str(target))
    assert target.read_bytes() == source.read_bytes()
    assert local.requests_at_start is not None
    assert local.requests_at_first_chunk == local.requests_at_start

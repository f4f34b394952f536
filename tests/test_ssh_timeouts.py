"""No hangs: a silent server or a connection that goes dead fails in bounded time.

A loopback TCP relay sits between the connector and the real in-process SSH server; the
test tells it to stop forwarding (as a dead network path or a frozen host would), or
uses a listener that accepts and never speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamdata import ConnectorError, ExecutionLocation, SSHConnector, SSHHost
from streamdata.testing import AsyncSSHTestServer
from streamdata.testing._servers import LOOPBACK

REMOTE = ExecutionLocation("remote", "ssh")


class Relay:
    """Forwards loopback TCP connections to ``port`` until :meth:`freeze` is called."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._frozen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def freeze(self) -> None:
        """Stop moving bytes in both directions; the sockets stay open (no FIN, no RST)."""
        self._frozen.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while not self._frozen.is_set():
                data = await reader.read(65536)
                if not data or self._frozen.is_set():
                    break
                writer.write(data)
                await writer.drain()
        await self._frozen.wait()  # hold the socket open, silent

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self._target)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(reader, up_writer))
                group.create_task(self._pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Relay]:
        """Listen on a free loopback port while the context is open."""
        server = await asyncio.start_server(self._track, LOOPBACK, 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.mark.timing  # a wall-clock bound of a few seconds
async def test_dead_connection_is_dropped_by_keepalive(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """Once the path goes silent, the next operation fails within ~3 keep-alive intervals."""
    async with Relay(asyncssh_server.port).running() as relay:
        known_hosts = tmp_path / "known_hosts"
        entry = asyncssh_server.known_hosts.read_text()
        known_hosts.write_text(entry.replace(f"]:{asyncssh_server.port} ", f"]:{relay.port} "))
        host = asyncssh_server.ssh_host(name="remote", port=relay.port, known_hosts=known_hosts)
        async with SSHConnector([host], keepalive_interval=0.5, connect_retries=0) as connector:
            assert await connector.stat(REMOTE, str(tmp_path)) is not None
            relay.freeze()
            started = time.monotonic()
            with pytest.raises(ConnectorError) as caught:
                await asyncio.wait_for(connector.stat(REMOTE, str(tmp_path)), 30)
            elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    assert caught.value.host == "remote"


@pytest.mark.timing  # a wall-clock bound of a few seconds
async def test_silent_server_fails_within_the_connect_timeout() -> None:
    """A port that accepts and never sends an SSH banner: ConnectorError after the timeout."""
    accepted: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep it open, say nothing

    server = await asyncio.start_server(accept, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        host = SSHHost(LOOPBACK, port=port, check_host_key=False, name="remote")
        connector = SSHConnector([host], connect_timeout=1.0, connect_retries=0)
        started = time.monotonic()
        with pytest.raises(ConnectorError) as caught:
            await asyncio.wait_for(connector.stat(REMOTE, "/"), 30)
        elapsed = time.monotonic() - started
        await connector.close()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
    assert 0.9 <= elapsed < 5, elapsed
    assert caught.value.host == "remote"
    assert accepted, "the connector never reached the listener"

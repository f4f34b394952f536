"""A loopback TCP proxy that a test can cut, to break connections the way networks do.

:func:`open_proxy` listens on ``127.0.0.1`` and a free port and forwards every connection
to a target port. It counts what it forwards; :meth:`Proxy.cut` (or a byte budget given
to :meth:`Proxy.cut_after`) resets every connection and stops listening, so the next
connection attempt is refused, as when a host goes down mid-transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ._servers import LOOPBACK

__all__ = ["Proxy", "open_proxy"]

_READ_SIZE = 1 << 16


class Proxy:
    """A running proxy (see :func:`open_proxy`).

    Attributes:
        port: The port it listens on.
        connections: Connections accepted so far.
        bytes_down: Bytes forwarded from the target to clients so far.
    """

    def __init__(self, target: int) -> None:
        self.port = 0
        self.connections = 0
        self.bytes_down = 0
        self._target = target
        self._budget: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def cut_after(self, count: int) -> None:
        """Cut (see :meth:`cut`) once ``count`` more bytes went from the target to clients."""
        self._budget = self.bytes_down + count

    def cut(self) -> None:
        """Reset every connection (RST, no FIN) and stop listening: the next one is refused."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, down: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_READ_SIZE):
                writer.write(data)
                if down:
                    self.bytes_down += len(data)
                    if self._budget is not None and self.bytes_down >= self._budget:
                        self.cut()
                        return
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.write_eof()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(reader, up_writer, down=False))
                group.create_task(self._pipe(up_reader, writer, down=True))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.close()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)


@contextlib.asynccontextmanager
async def open_proxy(target: int) -> AsyncIterator[Proxy]:
    """Forward loopback connections on a free port to ``target`` (a loopback port).

    Yields:
        The running proxy; it is cut and stopped when the context exits.
    """
    proxy = Proxy(target)
    await proxy._start()
    try:
        yield proxy
    finally:
        await proxy._stop()

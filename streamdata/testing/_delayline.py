"""A delay line: a TCP proxy on the loopback interface that makes a link far away.

This machine's kernel has no ``netem``, so a wide-area link is emulated in user space.
:class:`DelayLine` listens on a free loopback port and relays every connection it
accepts to a target address, holding each piece of data for ``delay`` seconds in each
direction (a round trip of ``2 * delay``). Pieces are stamped with their arrival time and
released by one timer per direction once due, in order, so the line carries as much as
the sockets on either side can (a bandwidth-delay product of data is in flight, not one
piece at a time). A direction holding more than ``buffer`` bytes stops reading its
sender until it drains, as a full TCP window would; the default (64 MiB) is large enough
not to limit an SSH connection at 100 ms, so the SSH channel windows, whose updates
travel back through the line, are what limits a transfer, as on a real link.

The line counts the bytes it carries in each direction and can cut every connection it
relays, at once (:meth:`DelayLine.cut`) or when a direction's count reaches a given
number (:meth:`DelayLine.cut_after`: the bytes up to that number are still passed on,
then the connections are cut). A cut resets both sockets (RST), as a broken link shows
itself; like any reset, it may drop what the receiver had not read yet. New connections
are accepted after a cut: a client that reconnects finds the line working again.

Standard library only, so that a benchmark can run it in a process of its own (a line in
the same process as the code under test would compete with it for the interpreter)::

    python streamdata/testing/_delayline.py 127.0.0.1 22 --delay 0.02

prints ``{"port": N}`` once listening, and the byte counts when stopped (SIGTERM, SIGINT
or the end of its standard input).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

__all__ = ["DelayLine", "Direction"]

_LOOPBACK = "127.0.0.1"
_DEFAULT_BUFFER = 64 << 20


class Direction(enum.Enum):
    """Which way data travels through a :class:`DelayLine`."""

    __module__ = "streamdata.testing"

    UP = "up"  #: from the client that connected to the line, to the target
    DOWN = "down"  #: from the target back to the client


class _Event(enum.Enum):
    """What a pipe may deliver besides data."""

    EOF = "eof"  #: the sender shut down its side: shut down the receiver's
    CLOSE = "close"  #: the sender closed its socket: close the receiver's
    CUT = "cut"  #: the line's byte limit was reached: cut every connection


_Item = bytes | _Event
_RESOLUTION = time.get_clock_info("monotonic").resolution


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it receives is carried to the other side."""

    def __init__(self, link: _Link, direction: Direction) -> None:
        self.link = link
        self.direction = direction  # of the data this socket receives
        self.transport: asyncio.Transport | None = None
        self.writable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20)
        if self.direction is Direction.UP:  # the client: wait for the target's socket
            transport.pause_reading()
            self.link.line.open_target(self.link)

    def data_received(self, data: bytes) -> None:
        self.link.carry(self.direction, data)

    def eof_received(self) -> bool:
        self.link.carry(self.direction, _Event.EOF)
        return True  # keep the other half open until the peer ends it too

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self.link.drained(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(self, exc)


class _Pipe:
    """One direction of a link: pieces waiting for their time, released by one timer."""

    def __init__(self, link: _Link, source: _Side, sink: _Side) -> None:
        self.link = link
        self.source = source
        self.sink = sink
        self.queue: deque[tuple[float, _Item]] = deque()
        self.held = 0
        self.timer: asyncio.TimerHandle | None = None
        self.paused = False

    def push(self, due: float, item: _Item) -> None:
        self.queue.append((due, item))
        if isinstance(item, bytes):
            self.held += len(item)
        if self.timer is None:
            self.timer = self.link.loop.call_at(due, self.release)
        self.throttle()

    def release(self) -> None:
        """Deliver every piece that is due; set the timer for the next one."""
        self.timer = None
        loop = self.link.loop
        now = loop.time() + _RESOLUTION  # what call_at itself counts as due
        ready: list[bytes] = []
        while self.queue and self.queue[0][0] <= now:
            _, item = self.queue.popleft()
            if isinstance(item, bytes):
                self.held -= len(item)
                ready.append(item)
                continue
            self.deliver(ready)
            ready = []
            if item is _Event.CUT:
                self.link.line.cut()
                return
            self.end(item)
        self.deliver(ready)
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self.release)
        self.throttle()

    def deliver(self, pieces: list[bytes]) -> None:
        transport = self.sink.transport
        if pieces and transport is not None and not transport.is_closing():
            transport.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def end(self, event: _Event) -> None:
        transport = self.sink.transport
        if transport is None or transport.is_closing():
            return
        if event is _Event.CLOSE:
            transport.close()
        elif transport.can_write_eof():
            transport.write_eof()

    def throttle(self) -> None:
        """Stop reading the sender while too much is held; read again once half drained."""
        transport = self.source.transport
        if transport is None or transport.is_closing():
            return
        full = self.held > self.link.line.buffer or not self.sink.writable
        if full and not self.paused:
            self.paused = True
            transport.pause_reading()
        elif self.paused and self.sink.writable and self.held <= self.link.line.buffer // 2:
            self.paused = False
            transport.resume_reading()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.held = 0


def _reset(transport: asyncio.Transport) -> None:
    """Close a socket with a reset (RST), as a broken link shows, not an orderly end."""
    sock = transport.get_extra_info("socket")
    if sock is not None and not transport.is_closing():
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Link:
    """A connection relayed by the line: the client's socket, the target's, two pipes."""

    def __init__(self, line: DelayLine) -> None:
        self.line = line
        self.loop = asyncio.get_running_loop()
        self.client = _Side(self, Direction.UP)
        self.server = _Side(self, Direction.DOWN)
        self.pipes = {
            Direction.UP: _Pipe(self, self.client, self.server),
            Direction.DOWN: _Pipe(self, self.server, self.client),
        }
        self.closed = False

    def carry(self, direction: Direction, data: _Item) -> None:
        """Queue what one side received for the other, ``delay`` seconds from now."""
        if self.closed:
            return
        pipe = self.pipes[direction]
        due = self.loop.time() + self.line.delay
        if isinstance(data, _Event):
            pipe.push(due, data)
            return
        allowed, cut = self.line.count(direction, len(data))
        if allowed:
            pipe.push(due, data if allowed == len(data) else data[:allowed])
        if cut:
            pipe.push(due, _Event.CUT)

    def drained(self, side: _Side) -> None:
        """The socket ``side`` takes writes again: let its sender send."""
        for pipe in self.pipes.values():
            if pipe.sink is side:
                pipe.throttle()

    def abort(self) -> None:
        """Reset both sockets; nothing still queued is delivered."""
        self.closed = True
        for pipe in self.pipes.values():
            pipe.stop()
        for side in (self.client, self.server):
            if side.transport is not None:
                _reset(side.transport)

    def lost(self, side: _Side, exc: Exception | None) -> None:
        """A socket closed: a reset resets the other at once, a close follows the data."""
        if exc is not None:
            self.abort()
        elif not self.closed:
            self.carry(side.direction, _Event.CLOSE)
        sides = (self.client.transport, self.server.transport)
        if all(t is None or t.is_closing() for t in sides):
            self.closed = True
            for pipe in self.pipes.values():
                pipe.stop()
            self.line.forget(self)


class DelayLine:
    """A TCP proxy on the loopback interface adding a delay in each direction.

    Use it as an async context manager (or :meth:`start` and :meth:`close`); connect to
    :attr:`port` on :attr:`host` instead of the target. See the module docstring.

    Args:
        target_host: Where connections are relayed to.
        target_port: The target's port.
        delay: Seconds each piece of data is held, in each direction (one-way delay;
            the round-trip time is twice that).
        host: The loopback address to listen on.
        port: The port to listen on (0: a free one).
        buffer: Bytes a direction may hold before it stops reading its sender.

    Raises:
        ValueError: If ``delay`` is negative or ``buffer`` not positive.
    """

    __module__ = "streamdata.testing"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay: float = 0.0,
        host: str = _LOOPBACK,
        port: int = 0,
        buffer: int = _DEFAULT_BUFFER,
    ) -> None:
        if delay < 0 or buffer <= 0:
            raise ValueError("delay must not be negative and buffer must be positive")
        self.target = (target_host, target_port)
        self.delay = delay
        self.host = host
        self.buffer = buffer
        self._port = port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._counts = dict.fromkeys(Direction, 0)
        self._limit: tuple[int, Direction | None] | None = None
        self._cutting = False  # a limit was reached; the cut follows the last bytes
        #: Connections accepted so far.
        self.accepted = 0
        #: Times the connections were cut (by :meth:`cut` or :meth:`cut_after`).
        self.cuts = 0

    @property
    def port(self) -> int:
        """The port the line listens on (known once started).

        Raises:
            RuntimeError: If the line is not started.
        """
        if self._server is None:
            raise RuntimeError("the delay line is not started")
        return self._port

    @property
    def rtt(self) -> float:
        """The round-trip time the line adds, in seconds."""
        return 2 * self.delay

    @property
    def connections(self) -> int:
        """Connections open through the line now."""
        return len(self._links)

    def carried(self, direction: Direction | None = None) -> int:
        """Bytes carried so far in ``direction`` (both directions if None)."""
        if direction is None:
            return sum(self._counts.values())
        return self._counts[direction]

    def cut(self) -> int:
        """Reset every connection open through the line now.

        Returns:
            How many connections were cut.
        """
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.difference_update(links)
        self.cuts += 1
        self._limit, self._cutting = None, False
        return len(links)

    def cut_after(self, count: int, direction: Direction | None = None) -> None:
        """Cut every connection once ``count`` bytes were carried in ``direction``.

        The count is the line's total since it started (:meth:`carried`), both directions
        together if ``direction`` is None. The bytes up to ``count`` are delivered (after
        the delay), then every connection is reset; the limit applies once.

        Raises:
            ValueError: If ``count`` is already reached.
        """
        if count <= self.carried(direction):
            raise ValueError(f"{count} bytes were already carried")
        self._limit = (count, direction)

    def count(self, direction: Direction, size: int) -> tuple[int, bool]:
        """Count ``size`` bytes arriving in ``direction``.

        Returns:
            How many of them pass, and whether the connections are to be cut after them.
        """
        if self._cutting:
            return 0, False  # the connections are about to be cut: nothing more passes
        allowed, cut = size, False
        if self._limit is not None:
            limit, which = self._limit
            left = limit - self.carried(which)
            if left <= size and which in (None, direction):
                allowed, cut = max(0, left), True
                self._limit, self._cutting = None, True
        self._counts[direction] += allowed
        return allowed, cut

    def forget(self, link: _Link) -> None:
        """A link closed by its ends."""
        self._links.discard(link)

    async def start(self) -> Self:
        """Listen on :attr:`host` (a free port unless one was given).

        Raises:
            OSError: If the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self) -> _Side:
        link = _Link(self)
        self._links.add(link)
        self.accepted += 1
        return link.client

    def open_target(self, link: _Link) -> None:
        """Connect a new link to the target (in a task the line owns)."""
        task = asyncio.ensure_future(self._connect(link))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, link: _Link) -> None:
        """Open the target's side of a new link; the client waits, paused, meanwhile."""
        client = link.client.transport
        assert client is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: link.server, *self.target)
        except OSError:
            link.abort()
            self._links.discard(link)
            return
        if link.closed or client.is_closing():  # the client left (or was cut) meanwhile
            link.abort()
            self._links.discard(link)
            return
        client.resume_reading()

    async def close(self) -> None:
        """Stop listening and reset every connection; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connecting):
            task.cancel()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _serve(args: argparse.Namespace, announce: Callable[[str], None]) -> dict[str, int]:
    line = DelayLine(args.target_host, args.target_port, delay=args.delay, buffer=args.buffer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with line:
        announce(json.dumps({"port": line.port}))
        watch: asyncio.BaseTransport | None = None
        with contextlib.suppress(OSError, ValueError):  # stdin not a pipe: signals only
            watch, _ = await loop.connect_read_pipe(lambda: _StopAtEnd(stop), sys.stdin)
        await stop.wait()
        if watch is not None:
            watch.close()
        return {direction.value: line.carried(direction) for direction in Direction}


class _StopAtEnd(asyncio.Protocol):
    """Sets an event when the standard input ends (the parent process closed it or died)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


def main(argv: list[str] | None = None) -> None:
    """Run a delay line until stopped; print its port, then its byte counts (JSON)."""
    parser = argparse.ArgumentParser(description="A TCP proxy adding a delay each way.")
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay, seconds")
    parser.add_argument("--buffer", type=int, default=_DEFAULT_BUFFER, help="bytes held per way")
    args = parser.parse_args(argv)

    def announce(text: str) -> None:
        print(text, flush=True)

    print(json.dumps(asyncio.run(_serve(args, announce))), flush=True)


if __name__ == "__main__":
    main()

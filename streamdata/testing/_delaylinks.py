"""The moving parts of :class:`~._delayline.DelayLine`: one relayed connection.

A :class:`Link` is one connection through the line: the client's socket and the
target's (each a :class:`Side`), and a :class:`Pipe` per direction, which holds every
piece of data for the line's delay and releases the pieces in order from one timer. The
line itself (counting, cutting, listening) is :class:`Line` to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections import deque
from typing import Protocol

__all__ = ["Direction", "Line", "Link"]


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
#: Pieces due within this much (seconds) are released together: one wake-up, one write.
_EARLY = 0.0005


class Line(Protocol):
    """What a link needs of its delay line."""

    delay: float
    buffer: int

    def count(self, direction: Direction, size: int) -> tuple[int, bool]:
        """Count bytes arriving; say how many pass and whether to cut after them."""

    def cut(self) -> int:
        """Reset every connection."""

    def forget(self, link: Link) -> None:
        """A link closed by its ends."""

    def open_target(self, link: Link) -> None:
        """Connect a new link to the target."""


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it receives is carried to the other side."""

    def __init__(self, link: Link, direction: Direction) -> None:
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

    def __init__(self, link: Link, source: _Side, sink: _Side) -> None:
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
        now = loop.time() + _EARLY
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
            with contextlib.suppress(OSError):  # the receiver is gone already
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


class Link:
    """A connection relayed by the line: the client's socket, the target's, two pipes."""

    def __init__(self, line: Line) -> None:
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

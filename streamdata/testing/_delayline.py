"""A delay line: a TCP proxy on the loopback interface that makes a link far away.

This machine's kernel has no ``netem``, so a wide-area link is emulated in user space.
:class:`DelayLine` listens on a free loopback port and relays every connection it
accepts to a target address, holding each piece of data for ``delay`` seconds in each
direction (a round trip of ``2 * delay``). Pieces are stamped with their arrival time and
released by one timer per direction once due (to half a millisecond: pieces due that
close together go in one write), in order, so the line carries as much as the sockets on
either side can (a bandwidth-delay product of data is in flight, not one piece at a
time). A direction holding more than ``buffer`` bytes stops reading its
sender until it drains, as a full TCP window would; the default (64 MiB) is large enough
not to limit an SSH connection at 100 ms, so the SSH channel windows, whose updates
travel back through the line, are what limits a transfer, as on a real link.

The line counts the bytes it carries in each direction and can cut every connection it
relays, at once (:meth:`DelayLine.cut`) or when a direction's count reaches a given
number (:meth:`DelayLine.cut_after`: the bytes up to that number are still passed on,
then the connections are cut). A cut resets both sockets (RST), as a broken link shows
itself; like any reset, it may drop what the receiver had not read yet. New connections
are accepted after a cut: a client that reconnects finds the line working again, unless
:attr:`DelayLine.refusing` is set, which resets every new connection (a host gone down).

A benchmark runs it in a process of its own (a line in the same process as the code
under test would compete with it for the interpreter); it needs the standard library
only, and importing ``streamdata.testing`` imports nothing heavy::

    python -m streamdata.testing._delayline 127.0.0.1 22 --delay 0.02

prints ``{"port": N}`` once listening, and the byte counts (and cuts) when stopped
(SIGTERM, SIGINT or the end of its standard input); ``--cut-after N --cut-direction up``
cuts every connection once N bytes went that way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Self

from ._delaylinks import Direction, Link

__all__ = ["DelayLine", "Direction", "main"]

_LOOPBACK = "127.0.0.1"
_DEFAULT_BUFFER = 64 << 20


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
        self._links: set[Link] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._counts = dict.fromkeys(Direction, 0)
        self._limit: tuple[int, Direction | None] | None = None
        self._cutting = False  # a limit was reached; the cut follows the last bytes
        self._refuse_after_cut = False
        #: Connections accepted so far.
        self.accepted = 0
        #: Times the connections were cut (by :meth:`cut` or :meth:`cut_after`).
        self.cuts = 0
        #: When True, each new connection is reset as soon as it is accepted (a host
        #: that went down); the connections already open are left alone.
        self.refusing = False

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
        if self._refuse_after_cut:
            self.refusing, self._refuse_after_cut = True, False
        return len(links)

    def cut_after(
        self, count: int, direction: Direction | None = None, *, then_refuse: bool = False
    ) -> None:
        """Cut every connection once ``count`` bytes were carried in ``direction``.

        The count is the line's total since it started (:meth:`carried`), both directions
        together if ``direction`` is None. The bytes up to ``count`` are delivered (after
        the delay), then every connection is reset; the limit applies once. With
        ``then_refuse``, :attr:`refusing` is set at that cut: the host went down.

        Raises:
            ValueError: If ``count`` is already reached.
        """
        if count <= self.carried(direction):
            raise ValueError(f"{count} bytes were already carried")
        self._limit = (count, direction)
        self._refuse_after_cut = then_refuse

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

    def forget(self, link: Link) -> None:
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

    def _accept(self) -> asyncio.Protocol:
        link = Link(self)
        self._links.add(link)
        self.accepted += 1
        return link.client

    def open_target(self, link: Link) -> None:
        """Connect a new link to the target (in a task the line owns), unless refusing."""
        if self.refusing:
            link.abort()
            self._links.discard(link)
            return
        task = asyncio.ensure_future(self._connect(link))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, link: Link) -> None:
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
        if args.cut_after is not None:
            line.cut_after(args.cut_after, Direction(args.cut_direction))
        announce(json.dumps({"port": line.port}))
        watch: asyncio.BaseTransport | None = None
        with contextlib.suppress(OSError, ValueError):  # stdin not a pipe: signals only
            watch, _ = await loop.connect_read_pipe(lambda: _StopAtEnd(stop), sys.stdin)
        await stop.wait()
        if watch is not None:
            watch.close()
        counts = {direction.value: line.carried(direction) for direction in Direction}
        return counts | {"cuts": line.cuts}


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
    parser.add_argument("--cut-after", type=int, help="cut every connection after N bytes")
    parser.add_argument("--cut-direction", choices=["up", "down"], default="up")
    args = parser.parse_args(argv)

    def announce(text: str) -> None:
        print(text, flush=True)

    print(json.dumps(asyncio.run(_serve(args, announce))), flush=True)


if __name__ == "__main__":
    main()

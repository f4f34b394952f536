"""Direct host-to-host copies: the source host pipes the data to the destination itself.

An :class:`~streamdata.SSHHost` may name, in ``routes``, the command that opens a shell
on another host of the same connector *from that host* (typically ``ssh`` with options,
e.g. two login nodes of one site that trust each other). A transfer between them then
runs one command on the source host, and the bytes never pass through this process::

    s=$( { { READ 3>&-; echo $? >&3; } | ROUTE... 'WRITE' >&2 3>&-; } 3>&1 ); d=$?; ...

``READ`` and ``WRITE`` are the command lines a relayed transfer uses (``cat`` or ``tar``
out, ``cat`` or ``tar`` in). A POSIX shell has no ``pipefail``, so the reading side
reports its exit status through file descriptor 3 into ``s``, the route's status is
``d``, and the command fails unless both are 0, with a line on standard error naming
the side (the route first: its failure makes the reader die of SIGPIPE too). File
descriptor 3 is closed for the commands themselves, so a lingering process (an ``ssh``
control master) cannot hold the capture open. ``WRITE`` is one quoted argument of the
route (the destination's shell parses it), and the route's arguments are quoted for the
source's shell.

Whether a copy takes the route or is relayed through this process is the engine's
choice, by measured cost (:mod:`streamdata._engine.routes`); :func:`measure_link` measures
one link: moving zeros (``dd`` of ``/dev/zero``) from the source host, over the route,
or from here, into ``cat >/dev/null`` on the destination or here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from shlex import quote
from typing import TYPE_CHECKING

from ._parallel import SERVER_WINDOW, stream_count
from ._ranges import READ_WINDOW
from ._sftp import stat_or_none

if TYPE_CHECKING:
    from ._pool import HostPool

__all__ = ["measure_link", "relay"]

#: Bytes per ``dd`` block of a measurement (its sizes are multiples of this).
_PROBE_BLOCK = 64 << 10
#: What receives a measurement's data: a line when it starts, another at the end.
_RECEIVE = "echo; cat >/dev/null; echo"


def relay(read: str, route: Sequence[str], write: str) -> str:
    """The source-host command line that pipes ``read`` into ``write`` run through ``route``.

    Args:
        read: Command writing the data to its standard output (run on the source host).
        route: The argument vector that runs a command on the destination host.
        write: Command reading the data from its standard input (run on the destination).

    Returns:
        One shell command line, exiting with status 0 only if both sides succeeded.
    """
    hop = " ".join(quote(argument) for argument in (*route, write))
    return (
        f"s=$( {{ {{ {read} 3>&-; echo $? >&3; }} | {hop} >&2 3>&-; }} 3>&1 ); d=$?; "
        'if [ "$d" != 0 ]; then echo "streamdata: the route to the destination failed'
        ' (exit status $d)" >&2; exit 1; fi; '
        'if [ "$s" != 0 ]; then echo "streamdata: reading the source failed'
        ' (exit status $s)" >&2; exit 1; fi'
    )


def zeros(size: int) -> str:
    """A command writing ``size`` zero bytes (rounded down to 64 KiB blocks) to its output."""
    return f"dd if=/dev/zero bs={_PROBE_BLOCK} count={size // _PROBE_BLOCK} 2>/dev/null"


async def measure_link(
    source: HostPool | None, target: HostPool | None, route: Sequence[str] | None, size: int
) -> tuple[float, float, int]:
    """Measure one link by moving ``size`` zero bytes over it (None: this process's end).

    One command: the receiving end prints a line when it starts, then takes the data and
    prints another line. Its latency is the time to the first line (a command start;
    over a route, also the route's own login, made for every copy); its rate is ``size``
    over the time between the lines. The hosts are connected (and their round trip
    sampled) first: a pooled connection is not part of a transfer's cost.

    Args:
        source: The pool of the host the data leaves, or None for this process.
        target: The pool of the host it reaches, or None for this process.
        route: The route from ``source`` to ``target`` when both are hosts.
        size: Bytes to move.

    Returns:
        The latency in seconds, the rate in bytes per second of one channel, and the
        channels a big transfer over the link uses (:func:`._parallel.stream_count`,
        when the window caps one channel; one for a route).

    Raises:
        ConnectorError: If a host cannot be reached or the move fails.
    """
    what = f"measure a link ({size} bytes)"
    for pool in (source, target):
        if pool is not None:
            await stat_or_none(pool, "/", follow=True, what=what)
    if source is not None and target is not None:
        hop = " ".join(quote(argument) for argument in (*(route or ()), _RECEIVE))
        latency, seconds = await _timed(source, f"{zeros(size)} | {hop}", 0, what)
        return latency, size / max(seconds, 1e-4), 1
    if source is not None:
        latency, seconds = await _timed(source, f"echo; {zeros(size)}", 0, what)
        rate = size / max(seconds, 1e-4)
        return latency, rate, _streams(source, READ_WINDOW, rate)
    if target is not None:
        latency, seconds = await _timed(target, _RECEIVE, size, what)
        rate = size / max(seconds, 1e-4)
        return latency, rate, _streams(target, SERVER_WINDOW, rate)
    raise ValueError("a link joins at least one host")


def _streams(pool: HostPool, window: int, rate: float) -> int:
    """The channels a big transfer uses, if more would help: one channel carried at least
    half of what its window allows per round trip (else the link, not the window, caps it).
    """
    rtt = pool.round_trips.best
    if rtt is None or rate * rtt * 2 < window:
        return 1
    return stream_count(1 << 40, 1, window, rtt)


async def _timed(pool: HostPool, command: str, send: int, what: str) -> tuple[float, float]:
    """Run ``command``, sending it ``send`` bytes once its first output came.

    Returns:
        The seconds to its first output, and from then to the end of its output.
    """
    started = time.monotonic()
    async with pool.command(command, what=what, bulk=True) as remote:
        if not send:
            remote.write_eof()
        first = await remote.read()
        ready = time.monotonic()
        if send:
            await remote.write(bytes(send))
            remote.write_eof()
        while first:
            first = await remote.read()
        await remote.finish()
    return ready - started, time.monotonic() - ready

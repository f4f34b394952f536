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
"""

from __future__ import annotations

from collections.abc import Sequence
from shlex import quote

__all__ = ["relay"]


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

"""Where a copy lands on an SSH host (``cp`` rules), its parent directory made.

Is ``dst_path`` a directory (the data then lands inside it, under its basename), and
does its parent exist? On a host whose SFTP session is up, that is two stats in one
round trip (and a ``mkdir`` per missing parent). On a *cold* host, whose SFTP session
is not up yet (a transfer's first step there), the session alone takes four round trips
to start (the channel, the subsystem, its version, its limits) before the stats' one.
So on a cold host found far away (:meth:`HostPool.is_far`: the first channel, opened
with the session by :meth:`HostPool.warm_up`, measured the round trip), the same
question goes to a command instead, whose answer comes a round trip after its channel's
confirmation: three round trips in all instead of five, while the SFTP session and the
standby channel the data will take go on starting. At 40 ms, an upload's first byte
comes 80 ms earlier. A near host is asked over SFTP, as the round trips cost little
there and the command would cost a shell.
"""

from __future__ import annotations

import asyncio
import posixpath

from . import _commands as commands
from ._pool import HostPool
from ._sftp import is_directory, make_directories, stat_or_none

__all__ = ["prepare_destination"]

#: What the command prints (:func:`._commands.prepare_destination`): a directory?
_ANSWERS = {b"directory\n": True, b"file\n": False}


async def prepare_destination(pool: HostPool, dst_path: str, basename: str) -> str:
    """The path the data lands at: ``dst_path``, or ``dst_path/basename`` if a directory.

    Raises:
        ConnectorError: If the host cannot be reached or the parent cannot be made.
    """
    what = f"create the parents of {dst_path!r}"
    if not pool.sftp_ready:
        pool.warm_up()
        if await pool.is_far():
            answer = await pool.run(commands.prepare_destination(dst_path), what=what, fresh=True)
            if answer not in _ANSWERS:
                raise pool.error(f"cannot {what}: unexpected answer {answer[:80]!r}")
            return posixpath.join(dst_path, basename) if _ANSWERS[answer] else dst_path
    parent = posixpath.dirname(dst_path) or "."
    target, folder = await asyncio.gather(
        stat_or_none(pool, dst_path, follow=True, what=what),
        stat_or_none(pool, parent, follow=True, what=what),
    )
    if is_directory(target):
        return posixpath.join(dst_path, basename)
    if not is_directory(folder):
        await make_directories(pool, parent)
    return dst_path

"""What a failed helper command (``cp``, ``tar``, a remote shell) said on standard error.

A tool that fails on every file of a tree says so once per file: kilobytes that would
drown the one line an operator reads. So an error keeps two forms of it. The *summary*
is the verdict of streamdata's own command line if it gave one (``streamdata: the route
to the destination failed``), then the line of the tool that best says what went wrong:
the first one naming an operating-system error (``No space left on device``), else the
first that is not a closing remark (``tar: Exiting with failure status``), cut to
:data:`SUMMARY_CHARS` characters, and the number of lines left out. The *details* are
the whole text as far as it was kept (its first and last :data:`KEEP_BYTES` bytes), in
:attr:`~streamdata.ConnectorError.details`.
"""

from __future__ import annotations

import errno
import os

__all__ = ["KEEP_BYTES", "SUMMARY_CHARS", "StderrBuffer", "summarize"]

#: Bytes kept from the start, and from the end, of what a command writes on standard error.
KEEP_BYTES = 4096
#: The longest line a summary quotes.
SUMMARY_CHARS = 200
#: Lines that close a tool's complaints without saying what went wrong.
_CLOSING = (
    "tar: Exiting with failure status",
    "tar: Error is not recoverable",
    "tar: Child returned status",
)
#: How the connectors' own command lines start a line that says which step failed
#: (e.g. :mod:`.ssh._direct`): quoted first, before the tool's own complaint.
_OWN = "streamdata: "
#: How the C library describes each error number, e.g. "No space left on device".
_OS_ERRORS = tuple(sorted({os.strerror(code) for code in errno.errorcode}, key=len, reverse=True))


class StderrBuffer:
    """The start and the end of a stream, at most :data:`KEEP_BYTES` bytes of each."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = bytearray()
        self._skipped = 0

    def feed(self, data: bytes) -> None:
        """Add the next part of the stream."""
        room = KEEP_BYTES - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        excess = len(self._tail) - KEEP_BYTES
        if excess > 0:
            del self._tail[:excess]
            self._skipped += excess

    def text(self) -> str:
        """What was kept, decoded (undecodable bytes replaced), a gap marked as such."""
        gap = f"\n[... {self._skipped} bytes left out ...]\n" if self._skipped else ""
        head = self._head.decode(errors="replace")
        return (head + gap + self._tail.decode(errors="replace")).strip()


def summarize(text: str) -> str:
    """The lines of ``text`` that best say what went wrong, short, with a count of the rest.

    Returns:
        ``""`` for a blank text; else e.g. ``cp: cannot create 'x': No space left on device
        (+12 more lines)``.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    quoted = [line.removeprefix(_OWN) for line in lines if line.startswith(_OWN)][:1]
    complaint = _most_telling([line for line in lines if not line.startswith(_OWN)])
    if complaint is not None:
        cut = (
            complaint[: SUMMARY_CHARS - 3] + "..." if len(complaint) > SUMMARY_CHARS else complaint
        )
        quoted.append(cut)
    others = len(lines) - len(quoted)
    more = f" (+{others} more line{'s' if others > 1 else ''})" if others else ""
    return ": ".join(quoted) + more


def _most_telling(lines: list[str]) -> str | None:
    """The first line naming an OS error, else the first that is not a closing remark."""
    telling = [line for line in lines if not line.startswith(_CLOSING)] or lines
    named = (line for line in telling if any(error in line for error in _OS_ERRORS))
    return next(named, telling[0] if telling else None)

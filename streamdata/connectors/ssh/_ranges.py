"""A large file over several SSH channels at once, as ranges of one remote file.

Used when one channel's window caps the transfer (a far host, :mod:`._parallel`); the
first channel opens like any command, the others in the background on free slots
(:mod:`._spares`), so data flows from the first round trip. Writing is
:mod:`._rangewrite`, reading :mod:`._rangeread`; this module holds what they share.

**Writing** keeps the source a sequential stream: it is cut into blocks of about
:data:`WRITE_BLOCK` bytes, queued in file order, and each channel takes the next block
once SSH has sent nearly all of its last one (its send buffer's low-water mark): it
never runs dry, holds one block at most, and the channels finish together. Each channel
runs one remote loop (:func:`._commands.write_blocks`) that writes each block it
receives into the file at its offset with ``dd`` and acknowledges it. The first
channel's command (:func:`._commands.write_ranges`) also finishes the file: its input is
closed last, once every other channel has exited (all blocks are written), and it then
sets the mode and mtime. The engine checks and renames the file as after any write.

**Reading** requests blocks of :data:`READ_BLOCK` bytes in file order, each from the
channel with the fewest requests outstanding (at most :data:`READ_DEPTH` each, which
bounds the memory held whatever the consumer's pace), and yields each block's bytes in
order from its channel, one SSH packet at a time. The entry's size says how much to
read; a block the file no longer holds (it shrank) fails the read
(:func:`._commands.read_ranges`).

**Resuming.** A lost connection (:func:`resumable`) does not fail a split transfer: the
channels are opened again (on a new connection) and the transfer goes on from what is
known to have arrived, up to :data:`RESUMES` times. A write keeps every block until the
host acknowledges it, and sends the unacknowledged ones again (the :class:`Ledger`'s
:attr:`~Ledger.high_water` is the end of the longest prefix known to be written); a read
asks again from the first byte it has not delivered. What travels twice is at most what
was in flight. Any other failure fails the transfer, its channels are cancelled, and the
engine removes the temporary file, unless it can resume the copy itself.

**Spans.** The engine's resume (:mod:`streamdata._engine.resume`, through
:mod:`._resume`) is the fallback once these resumes are spent, and the only one after
the process itself died (from the temporary a durable catalog remembers). It does not
trust a prefix (a channel that starts late, a slow login shell, leaves gaps far behind
the others' blocks): it compares every block of the temporary with the source's by their
digests and moves only the *spans* that differ, and the rest. Both functions take
``spans``, the (offset, length) pieces of the file to move, in order (:func:`blocks_of`):
a write into an existing file, then cut to the entry's size; a read resumed within the
call asks again from the first byte not delivered, counted across the spans
(:func:`after`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from ..._errors import ConnectorError
from .._base import Span
from ._errors import SSH_ERRORS

__all__ = [
    "READ_BLOCK",
    "READ_DEPTH",
    "READ_WINDOW",
    "RESUMES",
    "WRITE_BLOCK",
    "Ledger",
    "after",
    "blocks_of",
    "resumable",
]

LOG = logging.getLogger("streamdata.ssh")
#: Bytes per block written (a ``dd`` on the host each; about one server window).
WRITE_BLOCK = 2 << 20
#: Bytes per block read.
READ_BLOCK = 4 << 20
#: Read requests outstanding per channel at most: with :data:`READ_BLOCK`, what one
#: channel may have in flight (:data:`READ_WINDOW`), below the client's SSH window.
READ_DEPTH = 3
#: The most one read channel has in flight: its cap is this much per round trip.
READ_WINDOW = READ_BLOCK * READ_DEPTH
#: Times a split transfer is resumed after a lost connection, within one call.
RESUMES = 3
#: Seconds to wait before resuming.
RESUME_DELAY = 0.2


def resumable(error: BaseException) -> bool:
    """True for a lost or refused connection (or a timeout): worth opening channels again."""
    if not isinstance(error, ConnectorError):
        return False
    return error.transient or SSH_ERRORS.is_transient(error.__cause__)


def blocks_of(spans: Sequence[Span], block: int) -> Iterator[Span]:
    """The spans cut into blocks of at most ``block`` bytes, in order."""
    for offset, length in spans:
        for start in range(offset, offset + length, block):
            yield start, min(block, offset + length - start)


def after(spans: Sequence[Span], count: int) -> list[Span]:
    """The spans without their first ``count`` bytes (those already moved)."""
    left: list[Span] = []
    for offset, length in spans:
        skipped = min(count, length)
        count -= skipped
        if skipped < length:
            left.append((offset + skipped, length - skipped))
    return left


class Ledger:
    """What a split write is known to have written: the blocks its channels acknowledged."""

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}  # offset -> end, sent but not acknowledged
        self._done: dict[int, int] = {}  # offset -> end, acknowledged past the high water
        #: The end of the longest prefix of the file known to be written.
        self.high_water = 0

    def sent(self, offset: int, length: int) -> None:
        """A block was handed to a channel."""
        self._sent[offset] = offset + length

    def acknowledge(self, offset: int) -> None:
        """The host wrote the block at ``offset``.

        Raises:
            KeyError: If no block at ``offset`` is waiting for its acknowledgement.
        """
        self._done[offset] = self._sent.pop(offset)
        while self.high_water in self._done:
            self.high_water = self._done.pop(self.high_water)

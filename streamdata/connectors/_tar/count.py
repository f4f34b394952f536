"""Counting the files of a tar stream as it passes, for progress reports.

Trees travel as tar streams; a :class:`TarFileCounter` fed the same chunks reads only the
512-byte member headers (skipping member data by arithmetic) and reports each file once
all of its data has passed. It understands what GNU ``tar`` writes: ustar headers, sizes
in octal or base-256, GNU long-name records (``L``/``K``) and pax headers (``x``/``g``),
whose ``size`` record overrides the header's. A header with a wrong checksum means the
stream is not what it expected: the counter then stops counting rather than guess.
Headers the tree filter already read come with the chunk (:mod:`.header`).
"""

from __future__ import annotations

from .header import BLOCK, Header, known_or_parsed, padded, pax_size

__all__ = ["TarFileCounter"]

#: Type flags of members that are files in the tree (regular, hard link, contiguous, sparse).
_FILE_TYPES = frozenset(b"0\x0017S")
#: Pax extended headers (data parsed for a ``size`` record); kept small.
_PAX_TYPES = frozenset(b"xg")
_PAX_LIMIT = 1 << 20


class TarFileCounter:
    """Counts the files of a tar stream fed in arbitrary pieces."""

    __slots__ = ("_broken", "_data_left", "_file_pending", "_header", "_pax", "_pax_size", "files")

    def __init__(self) -> None:
        self._header = bytearray()
        self._data_left = 0  # data (with padding) of the current member still to pass
        self._file_pending = False  # the current member is a file, counted once it passes
        self._pax: bytearray | None = None  # the data of a pax header being collected
        self._pax_size: int | None = None  # a size the next header must take from pax
        self._broken = False
        #: Files completed so far.
        self.files = 0

    @property
    def broken(self) -> bool:
        """True once the stream stopped looking like a tar archive (counting stopped)."""
        return self._broken

    def feed(self, chunk: bytes) -> int:
        """Take the next piece of the stream; return the files completed by it."""
        if self._broken:
            return 0
        files = taken = 0
        view = memoryview(chunk)
        position, end = 0, len(chunk)
        while position < end:
            if self._data_left:
                step = min(self._data_left, end - position)
                if self._pax is not None and len(self._pax) < _PAX_LIMIT:
                    self._pax += view[position : position + step]
                self._data_left -= step
                position += step
                if not self._data_left:
                    files += self._member_done()
                continue
            step = min(BLOCK - len(self._header), end - position)
            self._header += view[position : position + step]
            position += step
            if len(self._header) == BLOCK:
                block = bytes(self._header)
                self._header.clear()
                if not any(block):
                    continue  # the end-of-archive blocks
                files += self._start(known_or_parsed(chunk, taken, block))
                taken += 1
                if self._broken:
                    break
        self.files += files
        return files

    def _member_done(self) -> int:
        """The current member's data has passed: count a file, or read a pax record."""
        if self._pax is not None:
            self._pax_size = pax_size(bytes(self._pax))
            self._pax = None
        done, self._file_pending = self._file_pending, False
        return int(done)

    def _start(self, header: Header | None) -> int:
        if header is None:
            self._broken = True
            return 0
        size, kind = header.size, header.kind
        if kind in _FILE_TYPES and self._pax_size is not None:
            size = self._pax_size
        if kind not in _PAX_TYPES:
            self._pax_size = None
        if kind in _PAX_TYPES:
            self._pax = bytearray()
        self._file_pending = kind in _FILE_TYPES
        self._data_left = padded(size)
        if kind == ord("1"):  # a hard link carries no data, whatever its size field says
            self._data_left = 0
        return self._member_done() if not self._data_left else 0

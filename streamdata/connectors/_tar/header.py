"""The one reader of tar member headers, and the chunks that carry what it read.

Three things read the headers of a tree's tar stream as it passes: the tree filter at
the source (:mod:`.filter`), the file counter for progress (:mod:`.count`) and the
splitter that feeds several ``tar -x`` (:mod:`.split`). They all read headers with
:func:`parse` (one checksum, :func:`checksum_ok`), and the first one reads them for all:

* :func:`parse` turns a 512-byte block into a :class:`Header` (type flag, size, mode),
  or None when the block is not a valid header;
* the filter passes its output on as :class:`TarChunk` objects (``bytes`` that also hold
  the :class:`Header` of every header block in them, in order) whenever a chunk holds
  headers. A later reader, finishing a header block while it reads such a chunk, takes
  the next header of the chunk (:func:`known_or_parsed`) after checking that it is the
  same block (a byte comparison), instead of parsing the block again.

A chunk cut up or joined on the way (e.g. a bandwidth limit) is plain ``bytes`` again:
its readers then parse its headers themselves. The filter never cuts a header block
between two chunks, so every header block of its output lies in one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from zlib import adler32

__all__ = [
    "BLOCK",
    "Header",
    "TarChunk",
    "checksum_ok",
    "header_number",
    "known_or_parsed",
    "padded",
    "parse",
    "pax_records",
    "pax_size",
    "with_checksum",
]

BLOCK = 512


@dataclass(frozen=True, slots=True)
class Header:
    """One member header block, as read.

    Attributes:
        block: The 512 bytes.
        kind: The type flag (a byte value, e.g. ``ord("0")`` for a regular file).
        size: The size field (a pax ``size`` record may override it).
        mode: The mode field.
    """

    block: bytes
    kind: int
    size: int
    mode: int


class TarChunk(bytes):
    """A piece of a tar stream with the :class:`Header` of each header block in it."""

    headers: tuple[Header, ...]

    def __new__(cls, data: bytes, headers: tuple[Header, ...]) -> TarChunk:
        """Wrap ``data`` (which holds exactly these header blocks, in this order)."""
        chunk = super().__new__(cls, data)
        chunk.headers = headers
        return chunk


def parse(block: bytes) -> Header | None:
    """Read the header block ``block``; None if its checksum or size field is wrong."""
    size = header_number(block[124:136])
    if size is None or not checksum_ok(block):
        return None
    mode = header_number(block[100:108]) or 0
    return Header(bytes(block), block[156], size, mode)


def known_or_parsed(chunk: bytes, taken: int, block: bytes) -> Header | None:
    """The header of ``block``, the ``taken``-th header block (from 0) ended in ``chunk``.

    From the chunk's own headers if it is a :class:`TarChunk` that holds this block in
    that place; otherwise parsed (:func:`parse`).
    """
    if type(chunk) is TarChunk and taken < len(chunk.headers):
        known = chunk.headers[taken]
        if known.block == block:
            return known
    return parse(block)


def header_number(field: bytes) -> int | None:
    """A numeric header field: octal text, or GNU base-256 (first byte's top bit set)."""
    if field and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def _byte_sum(block: bytes | bytearray) -> int:
    """The sum of the 512 bytes, from zlib's Adler-32 in C (a tenth of ``sum()``'s cost).

    The low 16 bits of Adler-32 are 1 + the byte sum modulo 65,521, and 256 bytes never
    sum past 65,280: so each half's sum is exact.
    """
    return (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2


def checksum_ok(header: bytes) -> bool:
    """Whether the 512-byte ``header`` carries its own checksum (its checksum field as spaces).

    Any other length than 512 is not a header (False).
    """
    if len(header) != BLOCK:
        return False
    stored = header_number(header[148:156])
    return stored == _byte_sum(header) - sum(header[148:156]) + 8 * 32


def with_checksum(block: bytearray) -> bytes:
    """``block`` with its checksum field computed (as :func:`checksum_ok` checks it)."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % _byte_sum(block)
    return bytes(block)


def padded(size: int) -> int:
    """``size`` rounded up to whole blocks."""
    return -(-size // BLOCK) * BLOCK


def pax_records(data: bytes) -> list[tuple[bytes, bytes]]:
    """The ``key=value`` records of pax extended-header data (``"LEN key=value\\n"``)."""
    records: list[tuple[bytes, bytes]] = []
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            break
        if length <= 0:
            break
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        records.append((key, value))
        position += length
    return records


def pax_size(data: bytes) -> int | None:
    """The ``size`` record of pax extended-header data, if any."""
    size: int | None = None
    for key, value in pax_records(data):
        if key == b"size":
            try:
                size = int(value)
            except ValueError:
                size = None
    return size

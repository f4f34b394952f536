"""Cleaning the tar stream of a tree as it is read: no special files, no links back.

Every connector reads a tree as a tar stream of its contents and passes it through a
:class:`TreeFilter` before anyone sees it, so the same two rules hold for every copy:

* **special files are skipped**: character and block devices and fifos are left out of
  the stream, with any hard link to one of them (``tar`` itself leaves sockets out). A
  device or a fifo is not data: copying one would need privileges on the destination
  (devices) or make a reader of the copy block for ever (fifos);
* **an absolute symbolic link into the tree becomes relative**: a link whose target,
  normalised like :func:`os.path.normpath` (links in it are not resolved), is the tree's
  root or lies below it, is rewritten to the equivalent relative link, so the copy's link
  points at the same entry of the copy wherever the copy lands (its temporary name, its
  final path, another host). The root is the path the tree was read by and its real
  path (links resolved), so a tree read through an alias is recognised both ways.
  Relative links, and absolute links out of the tree, are kept verbatim, as ``cp -a``
  and ``rsync -a`` keep them.

The filter reads only member headers (and their GNU long-name and pax records) and lets
file data through by arithmetic. A chunk in which nothing changes is passed on as the
same object, or, when it holds headers, as a :class:`~.header.TarChunk` carrying what
was read of them, so that the readers further down the stream (the file counter, the
splitter) need not read them again; only the bytes of a member being decided are held
back between chunks, so a header block is never cut between two chunks. A stream that
is not a tar archive is passed on untouched (the unpacking ``tar`` fails).
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from .header import BLOCK, Header, TarChunk, known_or_parsed, padded, pax_records, pax_size
from .header import with_checksum as _with_checksum

__all__ = ["TreeFilter", "filter_tree", "inside_root", "relative_target"]

logger = logging.getLogger("streamdata")

_EXTENSIONS = frozenset(b"LKx")
_SPECIAL = frozenset(b"346")  # character device, block device, fifo
_LOOKED_AT = frozenset(b"12346")  # hard and symbolic links, special files
_SYMLINK, _HARDLINK, _PAX = ord("2"), ord("1"), ord("x")
_LONG_LINK, _LONG_NAME = ord("K"), ord("L")
_NAME_FIELD, _LINK_FIELD, _PREFIX_FIELD = slice(0, 100), slice(157, 257), slice(345, 500)
_USTAR = b"ustar\x00"
#: One record of a member: its header and its data (unpadded; empty for the last).
_Record = tuple[Header, bytes]
#: What replaces a member: its bytes and the headers in them.
_Replacement = tuple[bytes, tuple[Header, ...]]
#: The replacement of a member left out.
_LEFT_OUT: _Replacement = (b"", ())


def inside_root(roots: Iterable[bytes], target: bytes) -> bytes | None:
    """Where the absolute ``target`` lies below one of ``roots``, judged on its text.

    Args:
        roots: The tree's root paths, normalised.
        target: A link's target.

    Returns:
        The normalised path below the root (``b""`` for the root itself), or None if
        ``target`` is relative or outside every root.
    """
    if not target.startswith(b"/"):
        return None
    path = posixpath.normpath(b"/" + target.lstrip(b"/"))
    for root in roots:
        if path == root:
            return b""
        prefix = root if root.endswith(b"/") else root + b"/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return None


def relative_target(roots: Iterable[bytes], member: bytes, target: bytes) -> bytes | None:
    """The relative target replacing ``target`` for the link ``member`` of the tree.

    Args:
        roots: The tree's root paths, normalised.
        member: The link's path relative to the root (``./sub/link`` as ``tar`` names it).
        target: The link's target.

    Returns:
        The relative target, or None when ``target`` is to be kept as it is.
    """
    inner = inside_root(roots, target)
    if inner is None:
        return None
    directory = posixpath.dirname(posixpath.normpath(b"/" + member))
    relative = posixpath.relpath(b"/" + inner, directory)
    return relative + b"/" if target.endswith(b"/") and relative != b"." else relative


class TreeFilter:
    """Applies the rules of the module docstring to a tar stream fed in pieces.

    Args:
        roots: The paths the tree is known by (absolute; normalised here).
    """

    def __init__(self, roots: Iterable[bytes]) -> None:
        self._roots = tuple(dict.fromkeys(posixpath.normpath(root) for root in roots))
        self._held = bytearray()  # the start of the member being decided, from earlier chunks
        self._in_member = False  # from the first byte of a member's records to its decision
        self._header_seen = 0  # bytes of the current header block seen so far
        self._has_pax = False  # the member has a pax record (its size may be there)
        self._data_left = 0  # data (with padding) still to skip: extension or member data
        self._dropping = False  # the member data being skipped is left out
        self._done = False  # past the end of the archive, or not an archive at all
        self._dropped: set[bytes] = set()
        self._member: list[Header] = []  # the headers of the member being decided
        # Per chunk: where its bytes passed on unchanged (not emitted yet) begin, where
        # the current member began in it, the header blocks ended in it so far, and the
        # headers of what is passed on for it.
        self._run = 0
        self._member_at = 0
        self._taken = 0
        self._out: list[Header] = []
        #: Special files left out so far.
        self.skipped = 0

    def feed(self, chunk: bytes) -> bytes:
        """Take the next piece of the stream; return what to pass on for it."""
        if self._done and not self._held:
            return chunk
        pieces: list[bytes] = []
        self._run = self._member_at = self._taken = 0
        self._out = []
        view = memoryview(chunk)
        self._scan(view, pieces, chunk)
        end = len(chunk)
        if self._in_member and not self._done:  # hold the member's bytes for the next chunk
            self._emit(pieces, view, self._member_at)
            self._held += view[self._member_at :]
            return self._annotated(b"".join(pieces))
        if not pieces and self._run == 0:
            return self._annotated(chunk)  # nothing changed: the same bytes
        self._emit(pieces, view, end)
        return self._annotated(b"".join(pieces))

    def _annotated(self, data: bytes) -> bytes:
        """``data``, with the headers read in it if there are any (:class:`TarChunk`)."""
        headers, self._out = self._out, []
        return TarChunk(data, tuple(headers)) if headers else data

    def close(self) -> bytes:
        """The bytes still held at the end of the stream (a truncated member, if any)."""
        held, self._held = bytes(self._held), bytearray()
        return held

    def _scan(self, view: memoryview, pieces: list[bytes], chunk: bytes) -> None:
        position, end = 0, len(view)
        while position < end and not self._done:
            if self._data_left:
                step = min(self._data_left, end - position)
                if self._dropping:
                    self._emit(pieces, view, position)
                    self._run = position + step
                position += step
                self._data_left -= step
                continue
            if not self._in_member:
                self._in_member, self._member_at = True, position
            step = min(BLOCK - self._header_seen, end - position)
            position += step
            self._header_seen += step
            if self._header_seen == BLOCK:
                self._header_seen = 0
                self._header_done(view, position, pieces, chunk)

    def _emit(self, pieces: list[bytes], view: memoryview, upto: int) -> None:
        """Pass on the unchanged bytes of this chunk up to ``upto``."""
        if upto > self._run:
            pieces.append(bytes(view[self._run : upto]))
            self._run = upto

    def _header_done(
        self, view: memoryview, position: int, pieces: list[bytes], chunk: bytes
    ) -> None:
        """A header block ended at ``position``: an extension record, a member or the end."""
        block = self._last_block(view, position)
        header = known_or_parsed(chunk, self._taken, block) if any(block) else None
        self._taken += 1
        if header is None:
            # The end-of-archive blocks, or not a tar stream (tar will refuse it): the
            # rest passes on as it is.
            self._decided(view, position, pieces, None)
            self._done = True
            return
        self._member.append(header)
        size, kind = header.size, header.kind
        if kind in _EXTENSIONS:
            self._has_pax |= kind == _PAX
            self._data_left, self._dropping = padded(size), False
            return
        replacement = None
        if self._has_pax or kind in _LOOKED_AT:
            member = bytes(self._held) + bytes(view[self._member_at : position])
            records = list(_records(member, self._member))
            replacement = self._replacement(records, kind)
            size = _member_size(records, size) if self._has_pax else size
        self._decided(view, position, pieces, replacement)
        self._data_left, self._dropping = padded(size), replacement is _LEFT_OUT

    def _decided(
        self,
        view: memoryview,
        position: int,
        pieces: list[bytes],
        replacement: _Replacement | None,
    ) -> None:
        """The member ending at ``position`` is kept (None), replaced or left out (b"")."""
        held = bytes(self._held)
        self._held.clear()
        self._in_member = self._has_pax = False
        headers, self._member = self._member, []
        if replacement is None:
            self._out += headers
            if held:  # begun in an earlier chunk: nothing of this one was passed on yet
                pieces.append(held)
            return
        self._emit(pieces, view, self._member_at)
        data, new_headers = replacement
        pieces.append(data)
        self._out += new_headers
        self._run = position

    def _last_block(self, view: memoryview, position: int) -> bytes:
        if position >= BLOCK:
            return bytes(view[position - BLOCK : position])
        missing = BLOCK - position
        return bytes(self._held[len(self._held) - missing :]) + bytes(view[:position])

    def _replacement(self, records: list[_Record], kind: int) -> _Replacement | None:
        """Nothing (``b""``) to leave the member out, what replaces it, or None to keep it."""
        if kind in _SPECIAL:
            self._dropped.add(_name(records))
            self.skipped += 1
            return _LEFT_OUT
        if kind == _HARDLINK:
            return _LEFT_OUT if self._dropped and _link_name(records) in self._dropped else None
        if kind != _SYMLINK:
            return None
        target = relative_target(self._roots, _name(records), _link_name(records))
        if target is None:
            return None
        return _relinked(records, target)


async def filter_tree(chunks: AsyncIterable[bytes], roots: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Pass the tar stream ``chunks`` of the tree ``roots`` through a :class:`TreeFilter`.

    How many special files were left out is logged (``streamdata`` logger, INFO).
    """
    roots = tuple(roots)
    tree_filter = TreeFilter(roots)
    async for chunk in chunks:
        cleaned = tree_filter.feed(chunk)
        if cleaned:
            yield cleaned
    rest = tree_filter.close()
    if rest:
        yield rest
    if tree_filter.skipped:
        tree = os.fsdecode(roots[0]) if roots else "a tree"
        logger.info("left %d special file(s) of %r out of its copy", tree_filter.skipped, tree)


# -- members --------------------------------------------------------------------------------


def _records(member: bytes, headers: list[Header]) -> Iterator[_Record]:
    """The extension records of a member, then its own header (with empty data)."""
    offset = 0
    for header in headers:
        offset += BLOCK
        if header.kind not in _EXTENSIONS:
            yield header, b""
            return
        yield header, member[offset : offset + header.size]
        offset += padded(header.size)


def _field(header: Header, where: slice) -> bytes:
    return header.block[where].split(b"\0", 1)[0]


def _from_extensions(records: list[_Record], long_kind: int, pax_key: bytes) -> bytes | None:
    found = None
    for header, data in records[:-1]:
        if header.kind == long_kind:
            found = data.split(b"\0", 1)[0]
        elif header.kind == _PAX:
            for key, value in pax_records(data):
                if key == pax_key:
                    found = value
    return found


def _name(records: list[_Record]) -> bytes:
    found = _from_extensions(records, _LONG_NAME, b"path")
    if found is not None:
        return found
    header = records[-1][0]
    name = _field(header, _NAME_FIELD)
    prefix = _field(header, _PREFIX_FIELD) if header.block[257:263] == _USTAR else b""
    return prefix + b"/" + name if prefix else name


def _link_name(records: list[_Record]) -> bytes:
    found = _from_extensions(records, _LONG_LINK, b"linkpath")
    return found if found is not None else _field(records[-1][0], _LINK_FIELD)


def _member_size(records: list[_Record], size: int) -> int:
    """The member's data size: a pax ``size`` record overrides its header's."""
    for header, data in records[:-1]:
        if header.kind == _PAX:
            override = pax_size(data)
            if override is not None:
                size = override
    return size


def _relinked(records: list[_Record], target: bytes) -> _Replacement:
    """The member with its link target replaced by ``target``, and its new headers."""
    out = bytearray()
    headers: list[Header] = []
    in_pax = False
    for header, data in records[:-1]:
        if header.kind == _LONG_LINK:
            continue
        if header.kind == _PAX and any(key == b"linkpath" for key, _ in pax_records(data)):
            in_pax = True
            data = _pax_data([(k, target if k == b"linkpath" else v) for k, v in pax_records(data)])
            header = _with_field(header, slice(124, 136), b"%011o\0" % len(data), len(data))
        headers.append(header)
        out += header.block + _padded(data)
    if not in_pax and len(target) > 100:
        long_link, data = _long_link(target)
        headers.append(long_link)
        out += long_link.block + _padded(data)
    last = records[-1][0]
    final = _with_field(last, _LINK_FIELD, target[:100].ljust(100, b"\0"), last.size)
    headers.append(final)
    out += final.block
    return bytes(out), tuple(headers)


def _pax_data(records: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        length = len(body) + 1
        while len(b"%d" % length) + len(body) != length:
            length = len(b"%d" % length) + len(body)
        out += b"%d" % length + body
    return bytes(out)


def _long_link(target: bytes) -> tuple[Header, bytes]:
    """A GNU ``K`` record carrying ``target`` (a link target over 100 bytes), and its data."""
    block = bytearray(BLOCK)
    block[0:13] = b"././@LongLink"
    block[100:108] = b"0000000\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[136:148] = b"00000000000\0"
    block[156] = _LONG_LINK
    block[257:265] = b"ustar  \0"
    data = target + b"\0"
    empty = Header(bytes(block), _LONG_LINK, 0, 0)
    return _with_field(empty, slice(124, 136), b"%011o\0" % len(data), len(data)), data


def _with_field(header: Header, where: slice, value: bytes, size: int) -> Header:
    """``header`` with ``value`` in the field ``where`` (its size now ``size``), checksum redone."""
    fixed = bytearray(header.block)
    fixed[where] = value
    return Header(_with_checksum(fixed), header.kind, size, header.mode)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)

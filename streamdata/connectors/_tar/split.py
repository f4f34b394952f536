"""Cutting one tar stream into several, so that several ``tar -x`` unpack a tree at once.

Where creating files is slow (a busy or remote disk), several processes creating files
at once get through more of them than one. A :class:`TarSplitter` reads the member
headers of a tar stream (the data it passes through by arithmetic) and routes each
member, whole and with the extension records before it (GNU long names, pax headers), to
one of its active worker streams, the least loaded:

* files, symbolic links and other non-directories go to the workers;
* directories go to every active worker, made writable by their owner, so that each
  worker has made a directory before it creates anything inside it (a ``tar`` that finds
  a parent missing and then sees another ``tar`` make it gives up: a race of GNU tar's);
* directories, as they are, and hard links are held back (:attr:`TarSplitter.deferred`:
  headers only, small) for a last pass run after every worker has finished. Then each
  hard link's target exists, and each directory gets its mode and mtime after the last
  entry was created in it, as one ``tar -x`` would leave it;
* a global pax header goes to every stream.

A splitter can start with one active worker and :meth:`TarSplitter.grow` later, once it
is clear that one ``tar`` is slow: a new worker first receives :meth:`~TarSplitter.grow`'s
replay (the directories and global headers routed so far). While only one worker has
ever been active, hard links go to it (it holds every earlier member), and the last pass
is needed only for a directory its owner could not write (:attr:`~TarSplitter.
needs_last_pass`).

Each output stream is a complete archive once :data:`END` is appended.
"""

from __future__ import annotations

from collections.abc import Sequence

from .header import BLOCK, Header, known_or_parsed, padded, pax_size, with_checksum

__all__ = ["END", "EVERY", "TarSplitter"]

#: The end-of-archive marker to append to each stream.
END = bytes(2 * BLOCK)
#: The route of data every stream must receive (global pax headers).
EVERY = -1
_HELD = -2  # extension records waiting for their member
_DEFERRED = -3
_EXTENSIONS = frozenset(b"LKx")
_HELD_LIMIT = 1 << 20
#: Directories and global headers kept for workers added later; past it, no more growth.
_REPLAY_LIMIT = 1 << 20


class TarSplitter:
    """Routes the members of a tar stream, fed in arbitrary pieces, to worker streams.

    Args:
        workers: How many worker streams at most.
        active: How many of them take members from the start (all if None); see
            :meth:`grow`.
    """

    def __init__(self, workers: int, *, active: int | None = None) -> None:
        self._load = [0] * workers
        self._active = workers if active is None else max(1, min(active, workers))
        self._grown = self._active > 1
        self._changed_directory = False
        self._header = bytearray()
        self._held = bytearray()
        self._pax_from: int | None = None  # where the data of a pax header starts in _held
        self._next_size: int | None = None
        self._route = 0
        self._data_left = 0
        self._ended = False
        self._replay: bytearray | None = bytearray() if self._active < workers else None
        #: Directories and hard links (with their extension records), in stream order.
        self.deferred = bytearray()
        #: Members routed to a worker so far (directories excepted).
        self.members = 0

    @property
    def active(self) -> int:
        """How many workers take members now (the first ones)."""
        return self._active

    @property
    def can_grow(self) -> bool:
        """True while :meth:`grow` may add workers (some left, replay still held)."""
        return self._replay is not None and self._active < len(self._load)

    @property
    def needs_last_pass(self) -> bool:
        """True if :attr:`deferred` must be unpacked after the workers finished.

        Always once several workers were active; with one, only if a directory's mode
        was changed to let its owner write in it.
        """
        return self._grown or self._changed_directory

    def grow(self, count: int) -> bytes:
        """Make ``count`` more workers active; return what each new one must get first.

        Raises:
            ValueError: If :attr:`can_grow` is false.
        """
        if self._replay is None or not 0 < count <= len(self._load) - self._active:
            raise ValueError("this splitter cannot grow by that many workers")
        replay = bytes(self._replay)
        self._active += count
        self._grown = True
        if self._active == len(self._load):
            self._replay = None
        self._load = [0] * len(self._load)  # the old ones are ahead: share from now on
        return replay

    def rebalance(self, loads: Sequence[int]) -> None:
        """Route the next members to the workers with the least of ``loads`` (one per
        active worker, e.g. the bytes each still has to send), instead of the bytes
        routed so far.
        """
        self._load[: len(loads)] = loads

    def freeze(self) -> None:
        """Give up growing: the replay kept for new workers is dropped.

        From then on a directory is held back for the last pass only if it was changed
        (or the splitter had grown).
        """
        self._replay = None

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """Take the next piece of the stream; return ``(worker or EVERY, bytes)`` to send.

        :data:`EVERY` means every active worker.

        Raises:
            ValueError: If the stream is not a tar archive.
        """
        out: list[tuple[int, bytes]] = []
        view = memoryview(chunk)
        position, end = 0, len(chunk)
        taken = 0  # header blocks ended in this chunk
        while position < end and not self._ended:
            if self._data_left:
                step = min(self._data_left, end - position)
                self._emit(out, self._route, view[position : position + step])
                position += step
                self._data_left -= step
                if not self._data_left and self._pax_from is not None:
                    self._next_size = pax_size(bytes(self._held[self._pax_from :]))
                    self._pax_from = None
                continue
            step = min(BLOCK - len(self._header), end - position)
            self._header += view[position : position + step]
            position += step
            if len(self._header) == BLOCK:
                block = bytes(self._header)
                self._header.clear()
                if not any(block):
                    self._ended = True  # the end-of-archive blocks (and padding) follow
                    continue
                header = known_or_parsed(chunk, taken, block)
                taken += 1
                if header is None:
                    raise ValueError("the stream is not a tar archive (bad member header)")
                self._start(header, out)
        return out

    def close(self) -> None:
        """Check that the stream ended between members.

        Raises:
            ValueError: If it ended in the middle of a member.
        """
        if self._data_left or self._header or self._held:
            raise ValueError("the tar stream ended in the middle of a member")

    def _start(self, header: Header, out: list[tuple[int, bytes]]) -> None:
        size, kind, block = header.size, header.kind, header.block
        if kind in _EXTENSIONS:
            self._held += block
            if kind == ord("x"):
                self._pax_from = len(self._held)
            self._begin(_HELD, size)
            return
        if kind == ord("g"):
            self._emit(out, EVERY, block)
            self._begin(EVERY, size)
            return
        if self._next_size is not None:
            size, self._next_size = self._next_size, None
        held = bytes(self._held)
        self._held.clear()
        if kind == ord("5"):
            self._directory(held, header, out)
            self._begin(_DEFERRED, size)
            return
        if kind == ord("1") and self._grown:
            self.deferred += held + block
            self._begin(_DEFERRED, 0)
            return
        load = self._load
        worker = min(range(self._active), key=load.__getitem__) if self._active > 1 else 0
        load[worker] += BLOCK + size
        self.members += 1
        out.append((worker, held + block))
        self._begin(worker, size)

    def _directory(self, held: bytes, header: Header, out: list[tuple[int, bytes]]) -> None:
        """Send a directory, made writable by its owner, to every worker; defer it as is."""
        locked = header.mode & 0o700 != 0o700
        self._changed_directory |= locked
        if locked or self._grown or self._replay is not None:  # else: one tar sets it
            self.deferred += held + header.block
        made = held + _owner_writable(header.block, header.mode)
        for worker in range(self._active):
            out.append((worker, made))
        self._keep(made)

    def _keep(self, data: bytes | memoryview) -> None:
        """Add to the replay for workers not active yet (given up past its limit)."""
        if self._replay is not None:
            self._replay += data
            if len(self._replay) > _REPLAY_LIMIT:
                self._replay = None

    def _begin(self, route: int, size: int) -> None:
        self._route = route
        self._data_left = padded(size)

    def _emit(self, out: list[tuple[int, bytes]], route: int, data: bytes | memoryview) -> None:
        if route == _HELD:
            if len(self._held) + len(data) > _HELD_LIMIT:
                raise ValueError("an extension record of the tar stream is too large")
            self._held += data
        elif route == _DEFERRED:
            self.deferred += data
        else:
            if route == EVERY:
                self.deferred += data
                self._keep(data)
            out.append((route, bytes(data)))


def _owner_writable(header: bytes, mode: int) -> bytes:
    """The header with ``u+rwx`` added to its ``mode``, and its checksum redone."""
    fixed = bytearray(header)
    fixed[100:108] = b"%07o\0" % ((mode | 0o700) & 0o7777777)
    return with_checksum(fixed)

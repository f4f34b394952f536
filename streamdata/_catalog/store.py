"""The interface between the catalog and its storage, and batches of changes.

The catalog reports every change to a :class:`CatalogStore` and calls
:meth:`CatalogStore.commit` at the end of each operation. A :class:`CatalogBatch` marks
the running context (the task that opened it, and the tasks it starts) as inside a batch
of that store; the store defers the commits made in such a context (:func:`in_batch`)
until the context's outermost batch ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from .._models import DataLocation, ExecutionLocation

if TYPE_CHECKING:
    from .mapper import RemotePathMapper

__all__ = ["CatalogBatch", "CatalogStore", "in_batch"]


class _Frame:
    """One open batch of one store, as seen by the contexts that entered or inherited it.

    A frame is never taken out of a context by ``ContextVar.reset`` (a batch may end in
    another context than its own, e.g. an async generator's finaliser): ending the batch
    marks its frame closed, which makes it inert in every context that holds it.
    """

    __slots__ = ("open", "store")

    def __init__(self, store: object) -> None:
        self.store = store
        self.open = True


_IN_BATCH: ContextVar[tuple[_Frame, ...]] = ContextVar("streamdata_in_batch", default=())


class CatalogStore(Protocol):
    """Where the catalog records its changes (see the module docstring)."""

    def load(self, catalog: RemotePathMapper) -> None:
        """Fill an empty catalog with what was stored."""

    def refresh(self, catalog: RemotePathMapper) -> bool:
        """Apply other processes' changes to ``catalog``; True if there were any."""

    def reap(self, catalog: RemotePathMapper) -> None:
        """Invalidate replicas that other processes were writing when they died."""

    def claim(self, location: ExecutionLocation, path: str) -> bool:
        """Take the destination ``path`` for a copy; False if another live process has it."""

    def put_replica(self, replica: DataLocation) -> None:
        """Record a new or changed replica (type, implied, pending)."""

    def add_relation(self, first: DataLocation, second: DataLocation) -> None:
        """Record a "same data" edge."""

    def set_link_target(self, link: DataLocation, target: DataLocation) -> None:
        """Record what a SYMBOLIC_LINK replica points at."""

    def invalidate(self, replicas: Sequence[DataLocation]) -> None:
        """Record replicas turned INVALID, taken out of their sets (the rest stay related)."""

    def record_entry(
        self, replica: DataLocation, entry: tuple[str, int, float], digest: str | None
    ) -> None:
        """Record (kind, size, mtime) and the content digest seen for a replica."""

    def set_anchor(
        self,
        lost: DataLocation,
        anchor: DataLocation | None,
        seen: tuple[str, int, float] | None,
    ) -> None:
        """Record what an INVALID replica was a copy of (None: forget it; see ``_lineage``)."""

    def note_temporary(self, replica: DataLocation, tmp_path: str | None) -> None:
        """Journal the temporary path a pending replica is being written to."""

    def leave_temporary(self, replica: DataLocation) -> None:
        """Journal a temporary this process could not remove as nobody's (stale)."""

    def stale_temporaries(self) -> list[tuple[ExecutionLocation, str]]:
        """Temporary paths of transfers that were interrupted before this store was opened."""

    def forget_temporary(self, location: ExecutionLocation, tmp_path: str) -> None:
        """Drop a stale temporary path from the journal once it is removed."""

    def commit(self) -> None:
        """Make everything recorded so far durable (deferred inside this context's batch)."""

    def begin_batch(self) -> None:
        """Defer commits until the matching :meth:`end_batch` (batches nest)."""

    def end_batch(self) -> None:
        """Close a batch; the outermost one commits everything recorded."""

    def close(self) -> None:
        """Commit and release the storage."""


class CatalogBatch:
    """What :meth:`DataManager.batch` returns: a context manager, ``with`` or ``async with``.

    Entering opens a batch on the store (nothing happens without one) for the running
    context; leaving closes it, and the outermost batch commits, also when the block raised.
    """

    __slots__ = ("_frames", "_store")

    def __init__(self, store: CatalogStore | None) -> None:
        self._store = store
        self._frames: list[_Frame] = []

    def __enter__(self) -> None:
        if self._store is not None:
            frame = _Frame(self._store)
            self._frames.append(frame)
            _IN_BATCH.set((*_IN_BATCH.get(), frame))
            self._store.begin_batch()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            frame = self._frames.pop()
            frame.open = False  # inert wherever it was inherited or whatever context exits
            try:
                current = _IN_BATCH.get()
                if frame in current:
                    _IN_BATCH.set(tuple(f for f in current if f is not frame))
            finally:
                self._store.end_batch()

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def in_batch(store: object) -> bool:
    """True when the running context is inside a batch of ``store`` still open."""
    return any(frame.open and frame.store is store for frame in _IN_BATCH.get())

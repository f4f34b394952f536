"""Batches of catalog changes: commits deferred until the outermost batch ends.

The catalog calls :meth:`~.store.CatalogStore.commit` at the end of each operation. A
:class:`CatalogBatch` marks
the running context (the task that opened it, and the tasks it starts) as inside a batch
of that store; the store defers the commits made in such a context (:func:`in_batch`)
until the context's outermost batch ends.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import TracebackType

from .store import CatalogStore

__all__ = ["CatalogBatch", "in_batch"]


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

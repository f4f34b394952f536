"""The changes a store has been told about and not written yet, and its batches.

Both stores (:mod:`.sqlite`, :mod:`.postgres`) queue each change as a row of one of their
statements and write the queue in one transaction when the catalog commits: at once, or,
inside a batch of the running context (:mod:`.batch`), when its outermost batch ends. A
commit from any other context takes the queued rows along (earlier durability is
harmless, later is not). Replica rows are written first, since the other rows name
replicas; the others keep the order in which their statements were first queued.
"""

from __future__ import annotations

from collections.abc import Callable

from .batch import in_batch

__all__ = ["FLUSH_ROWS", "Rows", "WriteQueue"]

#: Queued rows written at once, also inside a batch: bounds the memory of a long batch.
FLUSH_ROWS = 10_000
#: The queued rows of each statement, in the order to write them.
Rows = dict[str, list[tuple[object, ...]]]


class WriteQueue:
    """Rows waiting for the next commit of one store (see the module docstring).

    Args:
        owner: The store, whose batches (:func:`~.batch.in_batch`) defer the commits.
        replicas: The statement of replica rows, always written first.
        write: Writes the rows in one transaction (a store method).
    """

    __slots__ = ("_batches", "_count", "_owner", "_replicas", "_rows", "_write", "closed")

    def __init__(self, owner: object, replicas: str, write: Callable[[Rows], None]) -> None:
        self._owner = owner
        self._replicas = replicas
        self._write = write
        self._rows: Rows = {replicas: []}
        self._count = 0
        self._batches = 0
        #: Set by :meth:`close`: nothing is committed by a batch ending afterwards.
        self.closed = False

    def add(self, statement: str, row: tuple[object, ...]) -> None:
        """Queue one row of ``statement``; a full queue is written at once.

        Raises:
            ConfigurationError: If a full queue cannot be written.
        """
        rows = self._rows.get(statement)
        if rows is None:
            rows = self._rows[statement] = []
        rows.append(row)
        self._count += 1
        if self._count >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write every queued row now (nothing when the queue is empty).

        Raises:
            ConfigurationError: If the rows cannot be written (they are dropped).
        """
        if self._count:
            rows, self._rows, self._count = self._rows, {self._replicas: []}, 0
            self._write({statement: found for statement, found in rows.items() if found})

    def commit(self) -> None:
        """Write the queued rows, unless the running context is in a batch of the store.

        Raises:
            ConfigurationError: If the rows cannot be written.
        """
        if self._batches == 0 or not in_batch(self._owner):
            self.flush()

    def begin_batch(self) -> None:
        """Defer commits until the outermost :meth:`end_batch`."""
        self._batches += 1

    def end_batch(self) -> None:
        """Leave a batch; the context's outermost commits (nothing once closed).

        Raises:
            ConfigurationError: If the rows cannot be written.
        """
        self._batches -= 1
        if not self.closed:
            self.commit()  # deferred again if this context is still inside an outer batch

    def close(self) -> None:
        """Write what is queued; batches ending later commit nothing.

        Raises:
            ConfigurationError: If the rows cannot be written.
        """
        self.closed = True
        self._batches = 0
        self.flush()

"""Progress of one transfer (``transfer_data``, ``replicate``, a repair), as events and logs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import replace

from ._events import EventBus, EventKind, TransferEvent
from ._models import ExecutionLocation
from .connectors._base import Entry, EntryKind

__all__ = ["Progress"]

logger = logging.getLogger("streamdata")

Failures = dict[ExecutionLocation, BaseException]


class Progress:
    """Publishes the events of one transfer (builds nothing when nobody listens).

    ``bytes_total`` is the file's size (None for a tree until it is finished); when one
    file is copied to several destinations on the source's filesystem, each copy counts,
    and the total grows to match. Files are counted the same way: a file transfer has
    one, done when it finishes; a tree's are counted in its stream.
    """

    def __init__(
        self,
        bus: EventBus,
        source: ExecutionLocation,
        src_path: str,
        destinations: Sequence[ExecutionLocation],
        dst_path: str,
        entry: Entry,
    ) -> None:
        self._bus = bus
        self._base = TransferEvent(
            EventKind.TRANSFER_STARTED,
            bus.new_transfer_id(),
            source,
            src_path,
            tuple(destinations),
            dst_path,
            bytes_total=entry.size if entry.kind is EntryKind.FILE else None,
            files_total=1 if entry.kind is EntryKind.FILE else None,
        )
        self._tree = entry.kind is EntryKind.DIRECTORY
        self._done = 0
        self._total = self._base.bytes_total
        self._files = 0
        self._counted = False  # a stream of the tree was counted
        self._uncounted = False  # part of the tree was copied where files are not seen

    def _publish(self, kind: EventKind, error: BaseException | None = None) -> None:
        if self._bus.active:
            event = replace(
                self._base,
                kind=kind,
                bytes_done=self._done,
                bytes_total=self._total,
                files_done=self._files,
                files_total=self._files_total(kind),
                error=error,
            )
            self._bus.publish(event)

    def _files_total(self, kind: EventKind) -> int | None:
        if not self._tree:
            return 1
        finished = kind is EventKind.TRANSFER_FINISHED
        return self._files if finished and self._counted and not self._uncounted else None

    def advance(self, count: int, files: int | None = 0) -> None:
        """Count ``count`` more bytes; in a tree, ``files`` done so far in this stream.

        ``files`` is the count of the stream now moving (a retry starts again from 0), so
        the files done are the most any stream reached; None means files went unseen.
        """
        if files is None:
            self._uncounted = True
        elif self._tree:
            self._counted = True
        if count or (files and files > self._files):
            self._done += count
            if self._tree and files is not None:
                self._files = max(self._files, files)
            if self._total is not None and self._done > self._total:
                self._total = self._done
            self._publish(EventKind.TRANSFER_PROGRESS)

    async def around(self, work: Awaitable[Failures]) -> Failures:
        """Run ``work`` between a started and a finished or failed event."""
        self._publish(EventKind.TRANSFER_STARTED)
        try:
            failures = await work
        except BaseException as exc:
            self._publish(EventKind.TRANSFER_FAILED, exc)
            raise
        where = (self._base.src_path, str(self._base.source))
        if failures:
            cause = next(iter(failures.values()))
            self._publish(EventKind.TRANSFER_FAILED, cause)
            logger.warning("transfer of %r from %s failed: %s", *where, cause)
        else:
            self._total = self._done  # links and waits move nothing
            if not self._tree:
                self._files = 1
            self._publish(EventKind.TRANSFER_FINISHED)
            logger.info("transferred %r from %s (%d bytes)", *where, self._done)
        return failures

"""Settling the destinations of one transfer: into place and available, or gone and INVALID.

The one place where a transfer's outcome reaches the catalog and its journal. A
destination whose data arrived is renamed into place and marked available, with its
entry (and digest) recorded; one that failed is removed and marked INVALID with its
cause. Its in-flight claim is released and its temporary file unjournalled last, so the
outcome is durable before any waiting task goes on. A cancelled transfer leaves no valid
replica (:meth:`Settlement.revoke`) and nothing half-done (:meth:`Settlement.abandon`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .._errors import StreamDataError, TransferError
from .._integrity import entry_signature
from .._models import DataType
from ..connectors._base import Entry
from .job import EngineState, HandedOver, Job, JobKind, Options
from .transfer import Endpoint, remove_quietly

__all__ = ["Settlement"]


class Settlement:
    """Records the outcome of each destination of one transfer (see the module docstring).

    Args:
        context: The engine's state.
        entry: What storage held at the source (recorded for each copy).
        options: The transfer's options; failed destinations are added to its failures.
    """

    def __init__(self, context: EngineState, entry: Entry, options: Options) -> None:
        self._context = context
        self._catalog = context.catalog
        self._entry = entry
        self._options = options

    async def settle(
        self, job: Job, error: BaseException | None, digest: str | None = None
    ) -> None:
        """Rename into place and mark available, or clean up and mark INVALID."""
        assert job.tmp is not None
        if error is None:
            try:
                await job.connector.commit(job.location, job.tmp, job.final)
            except StreamDataError as exc:
                error = exc
        if error is not None:
            self._options.failures[job.location] = error
            job.left_behind = not await remove_quietly(
                Endpoint(job.connector, job.location, job.tmp)
            )
        self._finish(job, error, digest)

    def _finish(self, job: Job, error: BaseException | None, digest: str | None = None) -> None:
        assert job.replica is not None
        job.settled = True
        if self._context.inflight.get((job.location, job.final)) is job:
            del self._context.inflight[(job.location, job.final)]
        if error is None:
            self._catalog.complete(job.replica)
            if job.kind is JobKind.COPY:
                signature = entry_signature(self._entry)
                self._catalog.record_entry(job.replica, signature, digest)
        else:
            # Read again from another source: a transfer waiting for it takes it over.
            kind = HandedOver if self._options.handed_over(error) else TransferError
            failure = kind(
                f"the transfer to {job.final!r} on {job.location} failed: {error}",
                {job.location: error},
            )
            failure.__cause__ = error
            self._catalog.complete(job.replica, failure)
        # Last, and committed at once even inside a batch: the outcome is on disk
        # before any other task (waiting for this replica, maybe outside any batch)
        # goes on. A temporary that could not be removed stays journalled, owned by
        # nobody: the next transfer to that location (or a check) removes it.
        if job.left_behind:
            self._catalog.leave_temporary(job.replica)
        else:
            self._catalog.note_temporary(job.replica, None)

    def revoke(self, jobs: Sequence[Job]) -> None:
        """A cancelled call leaves no valid replica, even of a destination it finished.

        The finished data stays in place (it is complete); only the catalog forgets it.
        """
        for job in jobs:
            replica = job.replica
            finished = job.kind in (JobKind.COPY, JobKind.LINK) and job.settled
            if finished and replica is not None and replica.data_type is not DataType.INVALID:
                self._catalog.invalidate(job.location, job.final)

    async def abandon(self, jobs: Sequence[Job]) -> None:
        """After a cancellation or a bug: nothing half-done stays valid or on disk."""
        for job in jobs:
            if job.kind in (JobKind.COPY, JobKind.LINK) and not job.settled:
                assert job.tmp is not None
                endpoint = Endpoint(job.connector, job.location, job.tmp)
                job.left_behind = not await remove_quietly(endpoint)
                self._finish(job, asyncio.CancelledError("the transfer was cancelled"))

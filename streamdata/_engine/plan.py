"""Planning one transfer: what each destination needs, decided and claimed.

For each destination, cp rules are applied (one connector round trip), then it is
decided, without yielding to the event loop, whether there is nothing to do, an identical
transfer to wait for, a link to make or a copy to run. Links and copies register their
destination at once as a pending replica and in the in-flight table, which is how
concurrent identical transfers find each other; :mod:`.move` then makes them and
:mod:`.settle` records their outcome.

Before a decision rests on a replica (the one already at the destination, the one to
link to), one ``stat`` confirms it against storage (:mod:`.truth`); one that is gone or
changed is invalidated and the destination is decided again without it. A ``dst_path``
that already is a replica of the data is the destination itself, so a transfer run twice
does what it did once. A destination inside the data itself, or where a file would
replace a directory (or the reverse), fails.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Sequence

from .._catalog.mapper import RemotePathMapper
from .._errors import StreamDataError, TransferError
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ..connectors._base import Connector, Entry, EntryKind
from .job import EngineState, Job, JobKind, Options
from .transfer import Endpoint, temporary_path
from .truth import Lookout, followed, inside, into_itself, other_kind

__all__ = ["TransferPlan"]


def _same_data(first: DataLocation, second: DataLocation) -> bool:
    """True when two valid replicas are in one replica set (or are one replica)."""
    return RemotePathMapper.same_data(first, second)


class TransferPlan:
    """Decides and claims what each destination of one transfer needs (see the module).

    Args:
        context: The engine's state.
        source_endpoint: Where the data is read.
        source: The source replica (confirmed on storage by the caller).
        entry: What storage holds at the source.
        options: The transfer's options; failed destinations are added to its failures.
    """

    def __init__(
        self,
        context: EngineState,
        source_endpoint: Endpoint,
        source: DataLocation,
        entry: Entry,
        options: Options,
    ) -> None:
        self._context = context
        self._catalog = context.catalog
        self._endpoint = source_endpoint
        self._source = source
        self._entry = entry
        self._options = options
        self.jobs: list[Job] = []
        # The source was looked at by the caller (stat_source), through a link if it is one.
        looked_at = (source, self._catalog.link_target(source) or source)
        self._lookout = Lookout(self._catalog, context.connectors, looked_at)

    async def plan(self, destinations: Sequence[ExecutionLocation], dst_path: str) -> None:
        """Plan every destination; each planned one is in :attr:`jobs`, the others failed."""
        async with asyncio.TaskGroup() as group:
            for destination in destinations:
                group.create_task(self._plan(destination, dst_path))

    @property
    def finals(self) -> dict[ExecutionLocation, str]:
        """Where the data landed (or was found) on each destination that was planned."""
        return {job.location: job.final for job in self.jobs}

    # -- plan ------------------------------------------------------------------------------

    async def _plan(self, location: ExecutionLocation, dst_path: str) -> None:
        connector = self._context.connectors[location.deployment]
        try:
            job = Job(location, connector, await self._final_path(location, connector, dst_path))
            while (unsure := self._claim(job)) is not None:
                await self._lookout.confirm(unsure)
        except StreamDataError as exc:
            self._options.failures[location] = exc
            return
        self.jobs.append(job)

    async def _final_path(
        self, location: ExecutionLocation, connector: Connector, dst_path: str
    ) -> str:
        """Where the data lands: cp rules, unless ``dst_path`` already holds this data.

        Running a transfer again must not put the data inside its first result (a
        directory at ``dst_path`` would otherwise receive it under its basename).
        """
        held = None if self._options.exact else self._holding(location, dst_path)
        if held is not None and (not held.is_available or await self._lookout.confirm(held)):
            return dst_path
        basename = posixpath.basename(self._endpoint.path)
        prepare = connector.prepare_destination(location, dst_path, basename)
        if self._options.exact or self._entry.kind is not EntryKind.FILE:
            # most often the final path itself: looked at in the same round trip
            final, _ = await asyncio.gather(prepare, self._lookout.look(location, dst_path))
        else:
            final = await prepare
        final = dst_path if self._options.exact else normalize_path(final)
        if self._options.exact or self._entry.kind is not EntryKind.FILE or final != dst_path:
            await self._lookout.look(location, final)  # may be of the other kind
        return final

    def _holding(self, location: ExecutionLocation, path: str) -> DataLocation | None:
        """The replica of the source's data the catalog has at ``path``, unless writable."""
        existing = self._catalog.lookup(location, path)
        if existing is None or existing.implied or self._options.writable:
            return None
        if existing.data_type is DataType.INVALID:
            return None
        return existing if _same_data(existing, self._source) else None

    def _claim(self, job: Job) -> DataLocation | None:
        """Decide what ``job`` needs and register it as in flight (no await in here).

        Returns:
            None once decided; or a replica the decision rests on that must be confirmed
            first (nothing is registered then: confirm it and claim again).

        Raises:
            TransferError: If the data would be copied or linked into itself, or a file
                would replace a directory or the reverse.
        """
        source = self._source
        self._catalog.refresh()  # another process may have finished it since this one looked
        running = self._context.inflight.get((job.location, job.final))
        if running is not None:
            job.kind, job.replica = JobKind.WAIT, running.replica
            return None
        if job.location == source.location and job.final == source.path:
            return None  # JobKind.NOTHING: the data is its own destination
        existing = self._holding(job.location, job.final)
        if existing is not None:
            if existing.is_available and not self._lookout.confirmed(existing):
                return existing
            job.kind, job.replica = JobKind.WAIT, existing
            return None
        self._refuse(job)
        link_to = None
        if not (self._options.writable or self._options.exact):
            link_to = self._link_target(job.location, job.final)
            if link_to is not None and not self._lookout.confirmed(link_to):
                return link_to
        # One claim: another live process's copy there to wait for (which may not be
        # related to the source yet: the wait checks that once it ends, and plans that
        # destination again if not, WriterGone), or the destination registered as ours.
        tmp = temporary_path(job.final)
        related = None if self._options.writable else self._source
        adopt = self._options.adoptable.get((job.location, job.final))  # see .resume
        replica, elsewhere = self._catalog.claim(
            job.location, job.final, tmp_path=tmp, source=related, link_to=link_to, adopt=adopt
        )
        if elsewhere:
            job.kind, job.replica, job.elsewhere = JobKind.WAIT, replica, True
            return None
        job.kind = JobKind.COPY if link_to is None else JobKind.LINK
        job.replica, job.link_to, job.tmp = replica, link_to, tmp
        job.adopt = adopt
        self._context.inflight[(job.location, job.final)] = job
        return None

    def _refuse(self, job: Job) -> None:
        """Fail a destination inside the data itself, or holding data of the other kind.

        Raises:
            TransferError: If ``job.final`` lies inside the source on its filesystem (as
                ``cp`` refuses to copy a directory into itself), or a file would replace a
                directory there, or the reverse.
        """
        if job.connector.filesystem(job.location) == self._endpoint.filesystem:
            error = into_itself(self._catalog, self._source, job.location, job.final)
            if error is not None:
                raise error
        found = self._lookout.seen(job.location, job.final)
        reason = other_kind(self._entry.kind, found)
        if reason is not None:
            raise TransferError(
                f"cannot put {self._source.path!r} at {job.final!r} on {job.location}: {reason}"
            )

    def _link_target(self, location: ExecutionLocation, final: str) -> DataLocation | None:
        """The replica a link at ``final`` points to; None for a real copy.

        Never one that holds ``final`` itself (the link would point into itself).
        """
        if location == self._source.location:
            return self._catalog.link_target(self._source) or self._source
        at = followed(self._catalog, location, final, itself=False)
        for replica in self._catalog.replica_set(self._source):
            if (
                replica.location == location
                and replica.data_type is DataType.PRIMARY
                and replica.is_available
                and not replica.implied
                and not inside(at, replica.path)
            ):
                return replica
        return None

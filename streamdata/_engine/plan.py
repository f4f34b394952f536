"""One ``transfer_data`` call: plan, move and settle every destination.

*Plan*: for each destination, apply cp rules (one connector round trip), then decide,
without yielding to the event loop, whether there is nothing to do, an identical transfer
to wait for, a link to make or a copy to run. Links and copies register their destination
at once as a pending replica and in the in-flight table, which is how concurrent identical
transfers find each other. *Move*: links are made; copies read the source once for all
streamed destinations; a destination whose copy failed with a *transient* :class:`ConnectorError`
(a dropped connection, a broken stream) is copied once more from a clean state. *Settle*:
each destination is verified (if asked), renamed into place and marked available, or
removed and marked INVALID with its cause, also when the transfer is cancelled.

Before a decision rests on a replica (the one already at the destination, the one to
link to), one ``stat`` confirms it against storage (:mod:`._truth`); one that is gone or
changed is invalidated and the destination is decided again without it. A ``dst_path``
that already is a replica of the data is the destination itself, so a transfer run twice
does what it did once. A destination inside the data itself, or where a file would
replace a directory (or the reverse), fails.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._audit import entry_signature
from .._catalog.mapper import RemotePathMapper
from .._catalog.store import CatalogStore
from .._errors import ConnectorError, StreamDataError, TransferError, WriterGone
from .._integrity import HASH_NAME, digest_of, listing_of
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ..connectors._base import Connector, Entry, EntryKind
from .transfer import Endpoint, copy_to_all, remove_quietly, temporary_path
from .treeprint import print_of_tree
from .truth import Lookout, followed, inside, into_itself, other_kind

__all__ = ["Job", "TransferContext", "TransferPlan", "transfer_error"]

logger = logging.getLogger("streamdata")

#: Pause before the one retry of destinations that failed with a ConnectorError.
_RETRY_DELAY = 0.2


class JobKind(enum.Enum):
    """What a destination needs."""

    NOTHING = "nothing"  # the data already is there
    WAIT = "wait"  # an identical transfer is producing it, or it is there already
    LINK = "link"  # a symbolic link to a replica on the same location
    COPY = "copy"  # a real copy


@dataclass(slots=True)
class Job:
    """One destination of a transfer: where it goes and how far it got."""

    location: ExecutionLocation
    connector: Connector
    final: str
    kind: JobKind = JobKind.NOTHING
    replica: DataLocation | None = None
    link_to: DataLocation | None = None
    tmp: str | None = None
    settled: bool = False
    left_behind: bool = False  # its temporary could not be removed
    elsewhere: bool = False  # waits for a copy another process is writing


@dataclass(frozen=True, slots=True)
class TransferContext:
    """What a transfer needs from its manager (the manager owns all of it)."""

    catalog: RemotePathMapper
    connectors: Mapping[str, Connector]
    inflight: dict[tuple[ExecutionLocation, str], Job]
    store: CatalogStore | None


@dataclass(slots=True)
class _Options:
    writable: bool = False
    exact: bool = False  # replicate/repair: the destination path is exact, always a copy
    verify: bool = False
    failures: dict[ExecutionLocation, BaseException] = field(default_factory=dict)


def _same_data(first: DataLocation, second: DataLocation) -> bool:
    """True when two valid replicas are in one replica set (or are one replica)."""
    return first is second or (first._set is not None and first._set is second._set)


def _transient(error: BaseException | None) -> bool:
    return isinstance(error, ConnectorError) and error.transient


def transfer_error(
    location: ExecutionLocation, path: str, failures: Mapping[ExecutionLocation, BaseException]
) -> TransferError:
    """The error ``transfer_data`` raises for ``failures``."""
    details = "; ".join(f"{where}: {cause}" for where, cause in failures.items())
    count = len(failures)
    return TransferError(
        f"transfer of {path!r} from {location} failed for {count} destination(s): {details}",
        failures,
    )


class TransferPlan:
    """Moves one source to its destinations (see the module docstring)."""

    def __init__(
        self,
        context: TransferContext,
        source_endpoint: Endpoint,
        source: DataLocation,
        entry: Entry,
        *,
        writable: bool = False,
        exact: bool = False,
        verify: bool = False,
    ) -> None:
        self._context = context
        self._catalog = context.catalog
        self._endpoint = source_endpoint
        self._source = source
        self._entry = entry
        self._options = _Options(writable, exact, verify)
        self._jobs: list[Job] = []
        # The source was looked at by the caller (stat_source), through a link if it is one.
        looked_at = (source, self._catalog.link_target(source) or source)
        self._lookout = Lookout(self._catalog, context.connectors, looked_at)
        self._on_progress: Callable[[int, int | None], None] = lambda done, files: None

    async def run(
        self,
        destinations: Sequence[ExecutionLocation],
        dst_path: str,
        on_progress: Callable[[int, int | None], None] = lambda done, files: None,
    ) -> dict[ExecutionLocation, BaseException]:
        """Run the transfer; returns each failed destination with its cause."""
        self._on_progress = on_progress
        try:
            async with asyncio.TaskGroup() as group:
                for destination in destinations:
                    group.create_task(self._plan(destination, dst_path))
            await self._move()
        except asyncio.CancelledError:
            self._revoke_settled()
            raise
        finally:
            await self._abandon_unsettled()
        return self._options.failures

    @property
    def finals(self) -> dict[ExecutionLocation, str]:
        """Where the data landed (or was found) on each destination that was planned."""
        return {job.location: job.final for job in self._jobs}

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
        self._jobs.append(job)

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
        final = await connector.prepare_destination(location, dst_path, basename)
        final = dst_path if self._options.exact else normalize_path(final)
        if self._options.exact or self._entry.kind is not EntryKind.FILE or final != dst_path:
            await self._lookout.look(location, final)  # may be of the other kind
        return final

    def _holding(self, location: ExecutionLocation, path: str) -> DataLocation | None:
        """The replica of the source's data the catalog has at ``path``, unless writable."""
        existing = self._catalog.lookup(location, path)
        if existing is None or existing._implied or self._options.writable:
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
        held = self._held_elsewhere(job)
        if held is not None:
            job.kind, job.replica, job.elsewhere = JobKind.WAIT, held, True
            return None
        replaced = self._catalog.lookup(job.location, job.final)
        if replaced is not None and replaced.data_type is not DataType.INVALID:
            self._catalog.invalidate(job.location, job.final)  # about to be replaced
        self._register(job, link_to)
        return None

    def _held_elsewhere(self, job: Job) -> DataLocation | None:
        """Claim ``job``'s destination in a shared catalog, or return the replica another
        live process is writing there, to wait for.

        The other copy may not be related to the source yet (its process claims, then
        registers): the wait checks that once it ends, and a copy of other data, or one
        whose process died, makes the transfer plan that destination again
        (``WriterGone``)."""
        store = self._context.store
        if store is None or store.claim(job.location, job.final):
            return None
        store.refresh(self._catalog)
        held = self._catalog.lookup(job.location, job.final)
        return None if held is None or held.is_available else held

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

    def _register(self, job: Job, link_to: DataLocation | None) -> None:
        data_type = DataType.PRIMARY if link_to is None else DataType.SYMBOLIC_LINK
        job.replica = self._catalog.register(
            job.location, job.final, data_type=data_type, available=False
        )
        if link_to is not None:
            self._catalog.relate(link_to, job.replica)
            self._catalog.set_link_target(job.replica, link_to)
        elif not self._options.writable:
            self._catalog.relate(self._source, job.replica)
        job.kind = JobKind.COPY if link_to is None else JobKind.LINK
        job.link_to = link_to
        job.tmp = temporary_path(job.final)
        if self._context.store is not None:
            self._context.store.note_temporary(job.replica, job.tmp)
        self._context.inflight[(job.location, job.final)] = job

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
                and not replica._implied
                and not inside(at, replica.path)
            ):
                return replica
        return None

    # -- move ------------------------------------------------------------------------------

    async def _move(self) -> None:
        copies = [job for job in self._jobs if job.kind is JobKind.COPY]
        async with asyncio.TaskGroup() as group:
            for job in self._jobs:
                if job.kind is JobKind.WAIT:
                    group.create_task(self._wait(job))
                elif job.kind is JobKind.LINK:
                    group.create_task(self._link(job))
            if copies:
                group.create_task(self._copy(copies))

    async def _wait(self, job: Job) -> None:
        assert job.replica is not None
        try:
            await job.replica.wait_available()
        except TransferError as exc:
            self._options.failures[job.location] = exc
            return
        if job.elsewhere and job.replica not in self._catalog.replica_set(self._source):
            # another process's copy there holds other data: plan this one again
            self._options.failures[job.location] = WriterGone(
                f"the copy another process made at {job.final!r} on {job.location} holds other data"
            )

    async def _link(self, job: Job) -> None:
        assert job.link_to is not None
        assert job.tmp is not None
        try:
            await job.connector.symlink(job.location, job.link_to.path, job.tmp)
        except StreamDataError as exc:
            await self._settle(job, exc)
        else:
            await self._settle(job, None)

    async def _copy(self, jobs: Sequence[Job]) -> None:
        targets = [Endpoint(job.connector, job.location, job.tmp or "") for job in jobs]
        results, digest, tree = await self._copy_printed(targets)
        retry = [i for i, error in enumerate(results) if _transient(error)]
        if retry:  # e.g. a connection dropped mid-stream: once more, from a clean state
            logger.info("retrying %d destination(s) of %r", len(retry), self._endpoint.path)
            await asyncio.sleep(_RETRY_DELAY)
            for index in retry:
                await remove_quietly(targets[index])
            again, second = await copy_to_all(
                self._endpoint, self._entry, [targets[i] for i in retry], self._on_progress
            )
            for index, error in zip(retry, again, strict=True):
                results[index] = error
            digest = digest or second
        if self._options.verify:
            digest = await self._verify(jobs, results, digest)
        if tree is not None:
            digest = tree  # a tree's digest is its print (see _treeprint)
        async with asyncio.TaskGroup() as group:
            for job, error in zip(jobs, results, strict=True):
                group.create_task(self._settle(job, error, digest))

    async def _copy_printed(
        self, targets: list[Endpoint]
    ) -> tuple[list[BaseException | None], str | None, str | None]:
        """Copy to every target; for a tree, also print it (what the copies must hold).

        A local tree is printed before and after the copy: if it changed meanwhile, the
        copies may mix two versions of it, and they fail. Elsewhere the print is read
        alongside the copy (``tar`` reports a tree that changes under it).

        Returns:
            Each target's error (None: copied), the file digest, and the tree's print.
        """
        source, entry, report = self._endpoint, self._entry, self._on_progress
        if entry.kind is not EntryKind.DIRECTORY:
            return (*await copy_to_all(source, entry, targets, report), None)
        where = (source.connector, source.location, source.path)
        if not source.connector.is_local:
            async with asyncio.TaskGroup() as group:
                printing = group.create_task(print_of_tree(*where))
                results, digest = await copy_to_all(source, entry, targets, report)
            return results, digest, printing.result()
        before = await print_of_tree(*where)
        results, digest = await copy_to_all(source, entry, targets, report)
        if before is not None and await print_of_tree(*where) != before:
            changed = TransferError(
                f"{source.path!r} changed while it was copied: the copy could mix two "
                "versions of it"
            )
            results = [error or changed for error in results]
        return results, digest, before

    # -- verify ----------------------------------------------------------------------------

    async def _verify(
        self, jobs: Sequence[Job], results: list[BaseException | None], digest: str | None
    ) -> str | None:
        """Compare each written destination with the source; mismatches become failures."""
        source = self._endpoint
        if self._entry.kind is EntryKind.FILE:
            if digest is None:  # copied in the kernel: nothing streamed through us
                digest = await digest_of(source.connector, source.location, source.path)
            expected: object = digest
        else:
            expected = await listing_of(source.connector, source.location, source.path)
        for index, job in enumerate(jobs):
            if results[index] is None:
                results[index] = await self._verify_one(job, expected)
        return digest

    async def _verify_one(self, job: Job, expected: object) -> BaseException | None:
        assert job.tmp is not None
        try:
            if self._entry.kind is EntryKind.FILE:
                found: object = await digest_of(job.connector, job.location, job.tmp)
            else:
                found = await listing_of(job.connector, job.location, job.tmp)
        except StreamDataError as exc:
            return exc
        if found == expected:
            return None
        what = f"{HASH_NAME} digest" if self._entry.kind is EntryKind.FILE else "tree listing"
        return TransferError(
            f"integrity check failed for {job.final!r} on {job.location}: its {what} "
            f"differs from the source {self._endpoint.path!r}"
        )

    # -- settle ----------------------------------------------------------------------------

    async def _settle(
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
            failure = TransferError(
                f"the transfer to {job.final!r} on {job.location} failed: {error}",
                {job.location: error},
            )
            failure.__cause__ = error
            self._catalog.complete(job.replica, failure)
        if self._context.store is not None:
            # Last, and committed at once even inside a batch: the outcome is on disk
            # before any other task (waiting for this replica, maybe outside any batch)
            # goes on. A temporary that could not be removed stays journalled, owned by
            # nobody: the next transfer to that location (or a check) removes it.
            if job.left_behind:
                self._context.store.leave_temporary(job.replica)
            else:
                self._context.store.note_temporary(job.replica, None)

    def _revoke_settled(self) -> None:
        """A cancelled call leaves no valid replica, even of a destination it finished.

        The finished data stays in place (it is complete); only the catalog forgets it.
        """
        for job in self._jobs:
            replica = job.replica
            finished = job.kind in (JobKind.COPY, JobKind.LINK) and job.settled
            if finished and replica is not None and replica.data_type is not DataType.INVALID:
                self._catalog.invalidate(job.location, job.final)

    async def _abandon_unsettled(self) -> None:
        """After a cancellation or a bug: nothing half-done stays valid or on disk."""
        for job in self._jobs:
            if job.kind in (JobKind.COPY, JobKind.LINK) and not job.settled:
                assert job.tmp is not None
                endpoint = Endpoint(job.connector, job.location, job.tmp)
                job.left_behind = not await remove_quietly(endpoint)
                self._finish(job, asyncio.CancelledError("the transfer was cancelled"))

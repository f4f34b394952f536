"""Moving one planned transfer: waits, links and copies, each destination then settled.

Links are made; copies read the source once for all streamed destinations
(:func:`~.transfer.copy_to_all`); a destination whose copy failed with a *transient*
:class:`ConnectorError` (a dropped connection, a broken stream) is copied once more:
resumed from what arrived if it can be (:mod:`.resume`), else from a clean state. A
temporary file a process that died left at a destination (adopted by :mod:`.plan`) is
resumed in the same way. A tree is printed (:mod:`.treeprint`) as it is copied: what its
copies must hold; a local tree while the transfer is planned and again as soon as its
read ends, so that neither print waits for the network. Copies are verified if asked
(:mod:`.verify`), then every destination is settled (:mod:`.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from .._catalog.mapper import RemotePathMapper
from .._errors import ConnectorError, StreamDataError, TransferError, WriterGone
from .._models import DataLocation, ExecutionLocation
from ..connectors._base import Connector, Entry, EntryKind
from .job import Job, JobKind, Options
from .resume import resumable, resume_copy
from .settle import Settlement
from .transfer import Endpoint, copy_to_all, remove_quietly
from .treeprint import print_of_tree
from .verify import verify_copies

__all__ = ["Mover"]

logger = logging.getLogger("streamdata")

#: Pause before the one retry of destinations that failed with a ConnectorError.
_RETRY_DELAY = 0.2

#: Told the bytes and, for a tree, the files done so far (see :func:`.copy_to_all`).
OnProgress = Callable[[int, int | None], None]


def _transient(error: BaseException | None) -> bool:
    return isinstance(error, ConnectorError) and error.transient


async def _moved(job: Job, target: Endpoint) -> bool:
    """Rename the temporary ``job`` adopts to its own; False if it is gone."""
    assert job.adopt is not None
    try:
        await job.connector.commit(job.location, job.adopt, target.path)
    except StreamDataError:
        return False
    return True


class Mover:
    """Makes the links and copies of one planned transfer (see the module docstring).

    Args:
        catalog: The catalog (to tell whether a copy waited for holds this data).
        endpoint: Where the data is read.
        source: The source replica.
        entry: What storage holds at the source.
        options: The transfer's options; failed destinations are added to its failures.
        settlement: Records each destination's outcome.
        on_progress: Told the progress of the copies.
    """

    def __init__(
        self,
        catalog: RemotePathMapper,
        endpoint: Endpoint,
        source: DataLocation,
        entry: Entry,
        options: Options,
        settlement: Settlement,
        on_progress: OnProgress,
    ) -> None:
        self._catalog = catalog
        self._endpoint = endpoint
        self._source = source
        self._entry = entry
        self._options = options
        self._settlement = settlement
        self._on_progress = on_progress
        self._early: asyncio.Task[str | None] | None = None

    async def move(self, jobs: Sequence[Job]) -> None:
        """Wait for, link or copy every planned destination, and settle it."""
        copies = [job for job in jobs if job.kind is JobKind.COPY]
        if not copies and self._early is not None:
            self._early.cancel()  # nothing to print for
        async with asyncio.TaskGroup() as group:
            for job in jobs:
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
        if job.adopt is not None:  # left by a dead process at this destination: not needed
            await remove_quietly(Endpoint(job.connector, job.location, job.adopt))
        try:
            await job.connector.symlink(job.location, job.link_to.path, job.tmp)
        except StreamDataError as exc:
            await self._settlement.settle(job, exc)
        else:
            await self._settlement.settle(job, None)

    async def _copy(self, jobs: Sequence[Job]) -> None:
        targets = [Endpoint(job.connector, job.location, job.tmp or "") for job in jobs]
        results: list[BaseException | None] = [None] * len(jobs)
        digests: list[str | None] = []
        fresh = await self._adopt(jobs, targets, results, digests)
        firsts, digest, tree = await self._copy_printed([targets[i] for i in fresh])
        for index, error in zip(fresh, firsts, strict=True):
            results[index] = error
        # A source that failed is not read again when another one will be (failover).
        options = self._options
        retry = [
            i
            for i, error in enumerate(results)
            if _transient(error) and not options.handed_over(error)
        ]
        if retry:  # e.g. a connection dropped mid-stream: resume, or start again
            logger.info("retrying %d destination(s) of %r", len(retry), self._endpoint.path)
            await asyncio.sleep(_RETRY_DELAY)
            digests.append(await self._again(retry, targets, results, digests))
        digest = digest or next(filter(None, digests), None)
        if self._options.verify:
            digest = await verify_copies(self._endpoint, self._entry, jobs, results, digest)
        if tree is not None:
            digest = tree  # a tree's digest is its print (see .treeprint)
        async with asyncio.TaskGroup() as group:
            for job, error in zip(jobs, results, strict=True):
                group.create_task(self._settlement.settle(job, error, digest))

    async def _adopt(
        self,
        jobs: Sequence[Job],
        targets: list[Endpoint],
        results: list[BaseException | None],
        digests: list[str | None],
    ) -> list[int]:
        """Resume the temporaries dead processes left (:mod:`.resume`); the rest to copy.

        An adopted temporary is first renamed to this copy's own (whoever else removes
        the old name then finds nothing); one that is gone, or that cannot be resumed, is
        copied from zero.

        Returns:
            The indexes of the jobs to copy from zero.
        """
        fresh, adopted = [], []
        for index, job in enumerate(jobs):
            target = targets[index]
            if job.adopt is None:
                fresh.append(index)
            elif resumable(self._endpoint, target, self._entry) and await _moved(job, target):
                adopted.append(index)
            else:
                await remove_quietly(Endpoint(job.connector, job.location, job.adopt))
                fresh.append(index)
        return sorted(fresh + await self._resume(adopted, targets, results, digests, True))

    async def _again(
        self,
        retry: list[int],
        targets: list[Endpoint],
        results: list[BaseException | None],
        digests: list[str | None],
    ) -> str | None:
        """Copy the ``retry`` destinations again: resumed where possible, else from zero.

        Returns:
            The file's digest if a copy from zero streamed it.
        """
        source, entry = self._endpoint, self._entry
        resumed = [i for i in retry if resumable(source, targets[i], entry)]
        whole = [i for i in retry if i not in resumed]
        for index in whole:
            await remove_quietly(targets[index])
        whole += await self._resume(resumed, targets, results, digests, False)
        again, second = await copy_to_all(
            source,
            entry,
            [targets[i] for i in whole],
            self._on_progress,
            self._options.source_errors.append,
            routes=self._options.routes,
        )
        for index, error in zip(whole, again, strict=True):
            results[index] = error
        return second

    async def _resume(
        self,
        indexes: list[int],
        targets: list[Endpoint],
        results: list[BaseException | None],
        digests: list[str | None],
        report: bool,
    ) -> list[int]:
        """Resume each of ``indexes`` at once; returns those that kept nothing (removed)."""
        source, entry, on_progress = self._endpoint, self._entry, self._on_progress
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    resume_copy(
                        source,
                        entry,
                        targets[i],
                        on_progress,
                        report=report,
                        on_source_error=self._options.source_errors.append,
                    )
                )
                for i in indexes
            ]
        restart = []
        for index, task in zip(indexes, tasks, strict=True):
            outcome = task.result()
            if outcome is None:
                restart.append(index)
                continue
            results[index] = outcome.error
            digests.append(outcome.digest)
            logger.info("resumed %r after %d bytes kept", targets[index].path, outcome.kept)
        return restart

    @contextlib.asynccontextmanager
    async def printing_early(self) -> AsyncIterator[None]:
        """Print a local source tree meanwhile (the transfer is being planned).

        The print a copy of a local tree starts from needs no network: taken while the
        destinations are looked at (connections made, cp rules applied), it costs the
        copy no time. It is stopped if no copy needs it, and on exit.
        """
        source = self._endpoint
        if self._entry.kind is not EntryKind.DIRECTORY or not source.connector.is_local:
            yield
            return
        task = asyncio.create_task(print_of_tree(source.connector, source.location, source.path))
        self._early = task
        try:
            yield
        finally:
            self._early = None
            if not task.cancelling():  # once: a second cancel would cut its cleanup short
                task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: a failure was raised to the copy that used it

    async def _copy_printed(
        self, targets: list[Endpoint]
    ) -> tuple[list[BaseException | None], str | None, str | None]:
        """Copy to every target; for a tree, also print it (what the copies must hold).

        A local tree is printed before and after it is read (the second print as soon as
        the read ends, while the destinations still write): if it changed meanwhile, the
        copies may mix two versions of it, and they fail. Elsewhere the print is read
        alongside the copy (``tar`` reports a tree that changes under it).

        Returns:
            Each target's error (None: copied), the file digest, and the tree's print.
        """
        source, entry = self._endpoint, self._entry
        report, broke = self._on_progress, self._options.source_errors.append
        routes = self._options.routes
        if entry.kind is not EntryKind.DIRECTORY:
            return (*await copy_to_all(source, entry, targets, report, broke, routes=routes), None)
        where = (source.connector, source.location, source.path)
        if not source.connector.is_local:
            async with asyncio.TaskGroup() as group:
                printing = group.create_task(print_of_tree(*where))
                results, digest = await copy_to_all(
                    source, entry, targets, report, broke, routes=routes
                )
            return results, digest, printing.result()
        early, self._early = self._early, None
        before = await early if early is not None else await print_of_tree(*where)
        read = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            after = group.create_task(_print_once(read, *where))
            try:
                results, digest = await copy_to_all(
                    source, entry, targets, report, broke, routes=routes, on_read_end=read.set
                )
            finally:
                read.set()
        if before is not None and after.result() != before:
            changed = TransferError(
                f"{source.path!r} changed while it was copied: the copy could mix two "
                "versions of it"
            )
            results = [error or changed for error in results]
        return results, digest, before


async def _print_once(
    read: asyncio.Event, connector: Connector, location: ExecutionLocation, root: str
) -> str | None:
    """The print of the tree at ``root`` once ``read`` is set (its read has ended)."""
    await read.wait()
    return await print_of_tree(connector, location, root)

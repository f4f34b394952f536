"""Exact copies within a replica set: what ``replicate`` fills and ``check`` repairs with.

Unlike ``transfer_data``, an exact copy applies no cp rules: the destination path is the
target itself, the destination is always a real copy (never a link), related to its
source, and the source is the one the policy picks among the set's PRIMARY replicas.

Before a copy, the target is looked at on storage: a replica of the data that is really
there is left alone (one that is gone or changed is invalidated); an empty target gets
the copy; any other entry is never removed or overwritten, and that destination fails,
except that a repair replaces the broken copy its check found there, if it is still
what the check saw and of the data's own type (a file never replaces a tree, nor the
other way round).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass

from .._audit import entry_changed, entry_signature
from .._catalog.lineage import Signature
from .._catalog.mapper import RemotePathMapper
from .._errors import DataNotFoundError, StreamDataError, TransferError
from .._events import EventBus
from .._models import DataLocation, DataType, ExecutionLocation
from .._policy import SourcePolicy
from ..connectors._base import Entry, EntryKind
from .deployments import Deployments
from .plan import TransferContext, transfer_error
from .run import run_transfer
from .transfer import Endpoint

__all__ = ["Replicator"]

_PRIMARY = DataType.PRIMARY


@dataclass(frozen=True, slots=True)
class Replicator:
    """Picks sources and makes exact copies, with its manager's state (passed in)."""

    context: TransferContext
    events: EventBus
    deployments: Deployments
    policy: SourcePolicy
    rng: random.Random
    verify: bool

    def pick_source(
        self, replicas: Sequence[DataLocation], dst_deployment: str
    ) -> DataLocation | None:
        """The PRIMARY replica among ``replicas`` the policy picks for ``dst_deployment``."""
        candidates = [r for r in replicas if r.data_type is _PRIMARY and not r.implied]
        return self.policy(
            candidates,
            dst_deployment=dst_deployment,
            is_local=self.deployments.is_local,
            rng=self.rng,
        )

    async def fill(
        self,
        replicas: Sequence[DataLocation],
        destinations: Iterable[ExecutionLocation],
        target: str,
        *,
        replaceable: Signature | None = None,
    ) -> tuple[dict[ExecutionLocation, DataLocation], dict[ExecutionLocation, BaseException]]:
        """Copy the data of ``replicas`` to ``target`` on each destination lacking it.

        A destination whose entry at ``target`` is confirmed (on storage) to be one of
        ``replicas`` is left alone; one where nothing is at ``target`` gets a copy. Any
        other entry there is never touched and fails that destination, except one whose
        signature is ``replaceable`` (the broken copy a check found) and whose type is the
        data's own. The
        copies are transfers like ``transfer_data``'s (:func:`~._run.run_transfer`, with
        its events), one per source read.

        Returns:
            The replica of each destination holding the data, and the cause of each
            destination that failed.
        """
        results: dict[ExecutionLocation, DataLocation] = {}
        failures: dict[ExecutionLocation, BaseException] = {}
        sources: dict[ExecutionLocation, DataLocation] = {}
        async with asyncio.TaskGroup() as group:
            for destination in dict.fromkeys(destinations):
                vet = self._vet(replicas, destination, target, replaceable, results, sources)
                group.create_task(_capture(vet, [destination], failures))
        async with asyncio.TaskGroup() as group:
            for source, todo in _by_source(sources).items():
                copy = self._copy(source, todo, target, results)
                group.create_task(_capture(copy, todo, failures))
        return results, failures

    async def _vet(
        self,
        replicas: Sequence[DataLocation],
        destination: ExecutionLocation,
        target: str,
        replaceable: Signature | None,
        results: dict[ExecutionLocation, DataLocation],
        sources: dict[ExecutionLocation, DataLocation],
    ) -> None:
        """Find ``destination`` holding the data, or the source to copy it from.

        Raises:
            ConnectorError: If a location cannot be reached.
            DataNotFoundError: If no PRIMARY replica is left to copy from.
            TransferError: If ``target`` holds an entry the copy must not replace.
        """
        entry = await self.deployments.connector(destination).stat(destination, target)
        held = self._confirmed(replicas, destination, target, entry)
        if held is not None:
            results[destination] = held
            return
        source = self.pick_source(replicas, destination.deployment)
        if source is None:
            raise DataNotFoundError(f"no valid replica to copy to {target!r} on {destination}")
        if entry is not None and not await self._may_replace(source, entry, replaceable):
            raise _refusal(source, destination, target)
        sources[destination] = source

    async def _copy(
        self,
        source: DataLocation,
        destinations: Sequence[ExecutionLocation],
        target: str,
        results: dict[ExecutionLocation, DataLocation],
    ) -> None:
        """Copy ``source`` to exactly ``target`` on each destination, related (a transfer).

        Raises:
            ConfigurationError: If the manager is closed or a deployment is unknown.
            DataNotFoundError: If the source's data is gone.
            TransferError: If some copies failed (the others are in ``results``).
        """
        connector = self.deployments.connector(source.location)
        endpoint = Endpoint(connector, source.location, source.path)
        try:
            await run_transfer(
                self.context,
                self.events,
                endpoint,
                destinations,
                target,
                writable=False,
                exact=True,
                verify=self.verify,
            )
        finally:
            for destination in destinations:
                replica = self.context.catalog.lookup(destination, target)
                if replica is not None and replica.is_available:
                    results[destination] = replica

    def _confirmed(
        self,
        replicas: Sequence[DataLocation],
        destination: ExecutionLocation,
        target: str,
        entry: Entry | None,
    ) -> DataLocation | None:
        """The replica of ``replicas`` at ``target`` if storage confirms it, else None.

        One that storage does not confirm (gone, or changed) is invalidated.
        """
        catalog = self.context.catalog
        held = catalog.lookup(destination, target)
        if held is None or held.implied or held not in replicas:
            return None
        if entry is not None and _holds(catalog, held, entry):
            return held
        catalog.invalidate(destination, target)
        return None

    async def _may_replace(
        self, source: DataLocation, entry: Entry, replaceable: Signature | None
    ) -> bool:
        """True when ``entry`` is ``replaceable`` and of the type of the data at ``source``."""
        if replaceable is None or entry_changed(replaceable, entry_signature(entry)):
            return False
        connector = self.deployments.connector(source.location)
        data = await connector.stat(source.location, source.path)
        return data is None or data.kind is entry.kind  # gone: the copy will say so


def _refusal(source: DataLocation, destination: ExecutionLocation, target: str) -> TransferError:
    """The error of a destination whose ``target`` holds an entry a copy must not replace."""
    cause = TransferError(
        f"{target!r} on {destination} holds an entry that is not a replica of "
        f"{source.path!r}; it was left untouched"
    )
    return transfer_error(source.location, source.path, {destination: cause})


def _holds(catalog: RemotePathMapper, replica: DataLocation, entry: Entry) -> bool:
    """True when ``entry`` (followed if a link) is what the catalog recorded for ``replica``."""
    if entry.kind is EntryKind.SYMLINK:
        return False  # a dangling link, or a link where data should be
    if replica.data_type is DataType.SYMBOLIC_LINK:
        return True  # the link resolves; its target is checked as a replica of its own
    recorded = catalog.entry_of(replica)
    if recorded is None:
        return True  # registered without a recorded entry: existence is all we know
    return not entry_changed(recorded, entry_signature(entry))


def _by_source(
    sources: dict[ExecutionLocation, DataLocation],
) -> dict[DataLocation, list[ExecutionLocation]]:
    """The destinations to copy from each source (one read for all of them)."""
    grouped: dict[DataLocation, list[ExecutionLocation]] = {}
    for destination, source in sources.items():
        grouped.setdefault(source, []).append(destination)
    return grouped


async def _capture(
    work: Awaitable[None],
    destinations: Sequence[ExecutionLocation],
    failures: dict[ExecutionLocation, BaseException],
) -> None:
    """Run the work of ``destinations``; a failure is recorded for those it concerns."""
    try:
        await work
    except TransferError as exc:
        for destination in destinations:
            cause = exc.failures.get(destination)
            if cause is not None or not exc.failures:
                failures[destination] = cause or exc
    except StreamDataError as exc:
        for destination in destinations:
            failures[destination] = exc

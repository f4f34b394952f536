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
from collections.abc import Awaitable, Iterable, Sequence

from .._catalog.lineage import Signature
from .._catalog.mapper import RemotePathMapper
from .._errors import DataNotFoundError, StreamDataError, TransferError
from .._integrity import entry_changed, entry_signature
from .._models import DataLocation, DataType, ExecutionLocation
from ..connectors._base import Entry, EntryKind
from .engine import Engine
from .job import transfer_error
from .transfer import Endpoint

__all__ = ["fill", "replicate"]

#: The replica of each destination holding the data, and the cause of each that failed.
Filled = tuple[dict[ExecutionLocation, DataLocation], dict[ExecutionLocation, BaseException]]


async def replicate(
    engine: Engine,
    path: str,
    replicas: Sequence[DataLocation],
    locations: Iterable[ExecutionLocation],
    target: str,
) -> list[DataLocation]:
    """Fill ``target`` on each location with the data of ``replicas`` (known at ``path``).

    Returns:
        The replica of each distinct location, in order.

    Raises:
        DataNotFoundError: If ``replicas`` holds no PRIMARY replica.
        TypeError: If a location is not an :class:`ExecutionLocation`.
        ConfigurationError: If the manager is closed or a deployment is unknown.
        TransferError: If some destinations failed (``.failures`` maps each to its cause).
    """
    if not any(r.data_type is DataType.PRIMARY and not r.implied for r in replicas):
        raise DataNotFoundError(f"no valid replica of {path!r} is known")
    destinations = engine.deployments.destinations(locations)
    results, failures = await fill(engine, replicas, destinations, target)
    if failures:
        details = "; ".join(f"{where}: {cause}" for where, cause in failures.items())
        raise TransferError(
            f"replication of {path!r} failed for {len(failures)} location(s): {details}",
            failures,
        )
    return [results[d] for d in destinations]


async def fill(
    engine: Engine,
    replicas: Sequence[DataLocation],
    destinations: Iterable[ExecutionLocation],
    target: str,
    *,
    replaceable: Signature | None = None,
) -> Filled:
    """Copy the data of ``replicas`` to ``target`` on each destination lacking it.

    A destination whose entry at ``target`` is confirmed (on storage) to be one of
    ``replicas`` is left alone; one where nothing is at ``target`` gets a copy. Any
    other entry there is never touched and fails that destination, except one whose
    signature is ``replaceable`` (the broken copy a check found) and whose type is the
    data's own. The copies are transfers like ``transfer_data``'s
    (:meth:`.Engine.transfer`, with its events), one per source read.

    Returns:
        The replica of each destination holding the data, and the cause of each
        destination that failed.
    """
    results: dict[ExecutionLocation, DataLocation] = {}
    failures: dict[ExecutionLocation, BaseException] = {}
    sources: dict[ExecutionLocation, DataLocation] = {}
    async with asyncio.TaskGroup() as group:
        for destination in dict.fromkeys(destinations):
            vet = _vet(engine, replicas, destination, target, replaceable, results, sources)
            group.create_task(_capture(vet, [destination], failures))
    async with asyncio.TaskGroup() as group:
        for source, todo in _by_source(sources).items():
            copy = _copy(engine, source, todo, target, results)
            group.create_task(_capture(copy, todo, failures))
    return results, failures


async def _vet(
    engine: Engine,
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
    entry = await engine.deployments.connector(destination).stat(destination, target)
    held = _confirmed(engine.catalog, replicas, destination, target, entry)
    if held is not None:
        results[destination] = held
        return
    source = engine.pick_source(replicas, destination.deployment)
    if source is None:
        raise DataNotFoundError(f"no valid replica to copy to {target!r} on {destination}")
    if entry is not None and not await _may_replace(engine, source, entry, replaceable):
        raise _refusal(source, destination, target)
    sources[destination] = source


async def _copy(
    engine: Engine,
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
    connector = engine.deployments.connector(source.location)
    endpoint = Endpoint(connector, source.location, source.path)
    try:
        await engine.transfer(endpoint, destinations, target, writable=False, exact=True)
    finally:
        for destination in destinations:
            replica = engine.catalog.lookup(destination, target)
            if replica is not None and replica.is_available:
                results[destination] = replica


def _confirmed(
    catalog: RemotePathMapper,
    replicas: Sequence[DataLocation],
    destination: ExecutionLocation,
    target: str,
    entry: Entry | None,
) -> DataLocation | None:
    """The replica of ``replicas`` at ``target`` if storage confirms it, else None.

    One that storage does not confirm (gone, or changed) is invalidated.
    """
    held = catalog.lookup(destination, target)
    if held is None or held.implied or held not in replicas:
        return None
    if entry is not None and _holds(catalog, held, entry):
        return held
    catalog.invalidate(destination, target)
    return None


async def _may_replace(
    engine: Engine, source: DataLocation, entry: Entry, replaceable: Signature | None
) -> bool:
    """True when ``entry`` is ``replaceable`` and of the type of the data at ``source``."""
    if replaceable is None or entry_changed(replaceable, entry_signature(entry)):
        return False
    connector = engine.deployments.connector(source.location)
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

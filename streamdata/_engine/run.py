"""One attempt of a transfer, and what comes before it: the source, resolved and looked at.

Before anything moves, the source replica is resolved in the catalog (waiting for the
transfer still producing it) and its data is looked at on storage
(:func:`resolve_source`, :func:`stat_source`). An attempt then plans every destination
(:mod:`.plan`), moves the data (:mod:`.move`) and settles each destination
(:mod:`.settle`); a cancelled attempt leaves no valid replica and nothing half-done.
:class:`~.engine.Engine` runs the attempts, with progress events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .._catalog.mapper import RemotePathMapper
from .._errors import ConnectorError, DataNotFoundError, TransferError
from .._models import DataLocation, ExecutionLocation
from ..connectors._base import Connector, Entry, EntryKind
from .job import EngineState, Options, transfer_error
from .move import Mover, OnProgress
from .plan import TransferPlan
from .settle import Settlement
from .transfer import Endpoint
from .truth import note_source

__all__ = ["resolve_source", "run_attempt", "stat_source"]


async def run_attempt(
    context: EngineState,
    endpoint: Endpoint,
    source: DataLocation,
    entry: Entry,
    options: Options,
    destinations: Sequence[ExecutionLocation],
    dst_path: str,
    on_progress: OnProgress,
) -> dict[ExecutionLocation, str]:
    """Plan, move and settle every destination; failures go to ``options.failures``.

    Returns:
        Where the data landed (or was found) on each destination that was planned.
    """
    plan = TransferPlan(context, endpoint, source, entry, options)
    settlement = Settlement(context, entry, options)
    mover = Mover(context.catalog, endpoint, source, entry, options, settlement, on_progress)
    try:
        async with mover.printing_early():  # a local tree's print, while planning
            await plan.plan(destinations, dst_path)
            await mover.move(plan.jobs)
    except asyncio.CancelledError:
        settlement.revoke(plan.jobs)
        raise
    finally:
        await settlement.abandon(plan.jobs)
    return plan.finals


async def resolve_source(
    catalog: RemotePathMapper, location: ExecutionLocation, path: str
) -> DataLocation:
    """The valid replica at ``path`` on ``location``, once the transfer producing it is done.

    Raises:
        DataNotFoundError: If no valid replica covers ``path``, or its transfer failed.
    """
    covering = catalog.covering(location, path)
    if covering is None:
        raise DataNotFoundError(f"no valid replica of {path!r} is registered on {location}")
    try:
        await covering.wait_available()
    except TransferError as exc:
        raise DataNotFoundError(f"the transfer producing {path!r} on {location} failed") from exc
    if covering.path == path:
        return covering
    return catalog.register(location, path)  # a known path inside a known tree


async def stat_source(
    catalog: RemotePathMapper,
    connector: Connector,
    source: DataLocation,
    destinations: Sequence[ExecutionLocation],
) -> Entry:
    """What storage holds at ``source``: a regular file or a directory.

    Data changed since it was recorded is new data: the source leaves the replica set of
    its old copies (see :func:`.truth.note_source`).

    Raises:
        TransferError: If the source cannot be looked at, or is neither a file nor a
            directory (a special file: its replica is then invalidated); every
            destination fails with that cause.
        DataNotFoundError: If the data is gone (the replica is then invalidated).
    """
    try:
        entry = await connector.stat(source.location, source.path)
    except ConnectorError as exc:
        raise transfer_error(
            source.location, source.path, dict.fromkeys(destinations, exc)
        ) from exc
    if entry is None or entry.kind is EntryKind.SYMLINK:
        catalog.invalidate(source.location, source.path)
        raise DataNotFoundError(
            f"{source.path!r} is registered on {source.location} but no longer exists "
            "there; its replica has been invalidated"
        )
    if entry.kind is EntryKind.OTHER:  # a fifo, a socket or a device: never data to copy
        catalog.invalidate(source.location, source.path)
        cause = ConnectorError(
            f"{source.path!r} is a special file (neither a regular file nor a directory), "
            "which is never copied; its replica has been invalidated"
        )
        raise transfer_error(source.location, source.path, dict.fromkeys(destinations, cause))
    note_source(catalog, source, entry)
    return entry

"""How the manager runs one transfer, around its :class:`~._plan.TransferPlan`.

Before anything moves, the destinations are cleared of temporary files left by an earlier
process, the source replica is resolved in the catalog (waiting for the transfer still
producing it) and its data is looked at on storage. The plan then runs with progress
events: with cp rules for ``transfer_data``, exact for ``replicate`` and repairs.
Module-level functions: the manager passes in its transfer context and event bus.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._catalog.mapper import RemotePathMapper
from .._errors import (
    ConnectorError,
    DataNotFoundError,
    StreamDataError,
    TransferError,
    WriterGone,
)
from .._events import EventBus
from .._models import DataLocation, ExecutionLocation
from .._progress import Progress
from ..connectors._base import Connector, Entry, EntryKind
from .plan import TransferContext, TransferPlan, transfer_error
from .transfer import Endpoint
from .truth import note_source

__all__ = ["remove_stale_temporaries", "resolve_source", "run_transfer", "stat_source"]

#: How many times a transfer takes over copies whose writing process died.
TAKEOVERS = 3


async def run_transfer(
    context: TransferContext,
    events: EventBus,
    endpoint: Endpoint,
    destinations: Sequence[ExecutionLocation],
    dst_path: str,
    *,
    writable: bool,
    verify: bool,
    exact: bool = False,
) -> dict[ExecutionLocation, str]:
    """Copy ``endpoint``'s data to ``dst_path`` on each destination (checked, distinct).

    The one way data is copied: ``transfer_data``, and with ``exact`` (``dst_path`` is
    the destination itself, no cp rules, always a real copy) ``replicate`` and repairs.

    Returns:
        The path where the data is on each destination.

    Raises:
        DataNotFoundError: If the source is not a valid known replica, or its data is gone.
        TransferError: If some destinations failed.
    """
    src_location, src_path = endpoint.location, endpoint.path
    await remove_stale_temporaries(context, destinations)
    source = await resolve_source(context.catalog, src_location, src_path)
    entry = await stat_source(context.catalog, endpoint.connector, source, destinations)
    failures: dict[ExecutionLocation, BaseException] = {}
    finals: dict[ExecutionLocation, str] = {}
    for attempt in range(TAKEOVERS + 1):
        if not destinations:
            break
        transfer = TransferPlan(
            context, endpoint, source, entry, writable=writable, exact=exact, verify=verify
        )
        report = Progress(events, src_location, src_path, destinations, dst_path, entry)
        failed = await report.around(transfer.run(destinations, dst_path, report.advance))
        finals.update(transfer.finals)
        # A copy this one waited for died with its process: take it over (a new claim).
        last = attempt == TAKEOVERS
        gone = [d for d, cause in failed.items() if isinstance(cause, WriterGone) and not last]
        failures.update((d, cause) for d, cause in failed.items() if d not in gone)
        destinations = gone
    if failures:
        raise transfer_error(src_location, src_path, failures)
    return finals


async def remove_stale_temporaries(
    context: TransferContext, locations: Sequence[ExecutionLocation]
) -> None:
    """Remove temporary files of transfers interrupted in an earlier process.

    Done when a location is next used (connections are lazy); an unreachable location
    keeps its entries for a later attempt.
    """
    store = context.store
    if store is None:
        return
    wanted = set(locations)
    for location, tmp in store.stale_temporaries():
        if location not in wanted or location.deployment not in context.connectors:
            continue
        try:
            await context.connectors[location.deployment].remove(location, tmp)
        except StreamDataError:
            continue
        store.forget_temporary(location, tmp)


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
    its old copies (see :func:`._truth.note_source`).

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

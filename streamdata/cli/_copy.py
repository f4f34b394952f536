"""``streamdata cp``: copy sources to one or more destinations, reporting each outcome.

Only the public API is used: the source is looked at and each destination is asked to
answer before the catalog changes (bad input leaves it untouched), then
:meth:`~streamdata.DataManager.copy_data` copies and tells where the data is.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamdata import (
    DataManager,
    EventKind,
    ExecutionLocation,
    ReplicaEvent,
    TransferError,
    TransferEvent,
)
from streamdata.connectors import Entry, EntryKind

from ._ops import (
    PartlyFailed,
    Session,
    answering,
    directory_meant,
    existing,
    normalized,
    require_absolute,
)
from ._output import TransferProgress, tree_size
from ._sites import Address, SitesError

__all__ = ["copy"]


@dataclass
class _Plan:
    """One source of ``cp``, and where it goes."""

    location: ExecutionLocation
    path: str
    entry: Entry
    land: str  # the destination path given to the copy
    answered: list[ExecutionLocation]  # the destinations that answered
    failures: dict[ExecutionLocation, BaseException]
    finals: dict[ExecutionLocation, str] = field(default_factory=dict)  # where data is


async def copy(
    session: Session, sources: Sequence[Address], target: Address, *, writable: bool = False
) -> list[dict[str, Any]]:
    """``streamdata cp``: copy each source to every location of ``target``.

    With several sources, ``target.path`` is a directory that receives each of them.
    ``writable`` asks for independent copies (never links, not related to the source).
    A target path ending in ``/`` is a directory, made on each destination if missing,
    that receives the source (links included). A destination that fails (unreachable, a
    path that cannot be made) does not stop the others, as in
    :meth:`DataManager.transfer_data`; a source none of whose destinations answers is not
    registered.

    Returns:
        One record per source: the source, and per destination its location, final path,
        type, ``ok`` and ``error``.

    Raises:
        SitesError: If a source names several locations or a path is relative.
        DataNotFoundError: If a source does not exist.
        ConnectorError: If a source's location cannot be reached.
        PartlyFailed: If some destinations failed; ``result`` holds the records.
    """
    for source in sources:
        if len(source.locations) != 1:
            raise SitesError(f"the source {source} must name exactly one location")
        require_absolute(source.path)
    dst_path = require_absolute(target.path)
    into = directory_meant(target.path)
    async with session.manager() as manager:
        entries = [await existing(session, s.locations[0], normalized(s.path)) for s in sources]
        broken: dict[ExecutionLocation, BaseException] = {}
        plans = []
        for source, entry in zip(sources, entries, strict=True):
            path = normalized(source.path)
            basename = posixpath.basename(path)
            land = posixpath.join(dst_path, basename) if len(sources) > 1 else dst_path
            answers = await answering(session, target.locations, land, basename, broken, into=into)
            plans.append(_Plan(source.locations[0], path, entry, land, *answers))
        records = await _run_copies(session, manager, plans, writable)
    failures = _first_per_location(plans)
    if failures:
        raise PartlyFailed("cp", len(target.locations), failures, records)
    return records


def _first_per_location(plans: Sequence[_Plan]) -> dict[ExecutionLocation, BaseException]:
    failures: dict[ExecutionLocation, BaseException] = {}
    for plan in plans:
        for where, cause in plan.failures.items():
            failures.setdefault(where, cause)
    return failures


async def _run_copies(
    session: Session, manager: DataManager, plans: Sequence[_Plan], writable: bool
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with session.progress() as progress:
        remove = manager.add_listener(progress)
        try:
            for plan in plans:
                if plan.answered:
                    await _copy_one(session, manager, progress, plan, writable)
                records.append(_copy_record(manager, plan))
        finally:
            remove()
    return records


async def _copy_one(
    session: Session,
    manager: DataManager,
    progress: TransferProgress,
    plan: _Plan,
    writable: bool,
) -> None:
    """Copy one source to the destinations that answered; failures go to ``plan``.

    The source is registered first if the catalog does not know it. Where the data is on
    each destination comes from the copy; when some destinations failed, it comes from
    the replicas registered meanwhile (a destination that held the data already then
    shows the path asked for).
    """
    location, path = plan.location, plan.path
    if plan.entry.kind is EntryKind.DIRECTORY:
        connector = session.connectors[location.deployment]
        progress.expect(location, path, *await tree_size(connector, location, path))
    registered = _Registered(plan.answered, (location, path))
    stop_noting = manager.add_listener(registered)
    try:
        landed = await manager.copy_data(
            location, path, plan.answered, plan.land, writable=writable, register_source=True
        )
    except TransferError as exc:
        if not exc.failures:
            raise
        plan.failures.update(exc.failures)
        landed = {w: p for w, p in registered.paths.items() if w not in plan.failures}
    finally:
        stop_noting()
    plan.finals.update(landed)  # where each copy really is (e.g. the data was there)


@dataclass
class _Registered:
    """A listener noting where replicas are registered on some destinations.

    Attributes:
        destinations: The destinations watched.
        source: The source's location and path (registered first, never a copy).
        paths: The path last registered on each destination.
    """

    destinations: Sequence[ExecutionLocation]
    source: tuple[ExecutionLocation, str]
    paths: dict[ExecutionLocation, str] = field(default_factory=dict)

    def __call__(self, event: TransferEvent | ReplicaEvent) -> None:
        """Note a replica registered on a destination (the listener)."""
        if isinstance(event, ReplicaEvent) and event.kind is EventKind.REPLICA_REGISTERED:
            where, path = event.replica.location, event.replica.path
            if where in self.destinations and (where, path) != self.source:
                self.paths[where] = path


def _copy_record(manager: DataManager, plan: _Plan) -> dict[str, Any]:
    destinations = []
    for where in (*plan.answered, *(w for w in plan.failures if w not in plan.answered)):
        final = plan.finals.get(where, plan.land)
        cause = plan.failures.get(where)
        made = manager.get_data_locations(final, where.deployment, where.name)
        kinds = [r.data_type.name for r in made if r.path == final and r.location == where]
        destinations.append(
            {
                "location": str(where),
                "path": final,
                "type": None if cause else (kinds[0] if kinds else "PRIMARY"),
                "ok": cause is None,
                "error": None if cause is None else str(cause),
            }
        )
    source = {"location": str(plan.location), "path": plan.path}
    return {"source": source, "destinations": destinations}

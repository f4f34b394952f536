"""The operations behind the ``streamdata`` subcommands, as coroutines.

Each operation validates everything it can (addresses, locations, that sources exist and
destinations answer) *before* it changes the catalog, so bad input leaves it untouched.
Results are plain dictionaries, printed as tables or JSON by :mod:`streamdata.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ._check import CheckReport
from ._cli_output import ReplicaRow, TransferProgress, describe_replicas, tree_size
from ._cli_sites import Address, Sites, SitesError
from ._errors import DataNotFoundError
from ._manager import DataManager
from ._models import DataLocation, DataType, ExecutionLocation, normalize_path
from .connectors._base import Connector, Entry, EntryKind

__all__ = ["Session", "check", "copy", "list_replicas", "replicate"]


@dataclass
class Session:
    """What one command invocation works with.

    Attributes:
        sites: The deployments.
        catalog: The SQLite catalog file.
        progress_console: Where progress bars go (standard error).
        show_progress: Whether to draw progress bars.
        connectors: The connectors of the open manager, by deployment.
    """

    sites: Sites
    catalog: Path
    progress_console: Console
    show_progress: bool
    connectors: dict[str, Connector] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def manager(self) -> AsyncIterator[DataManager]:
        """Open the catalog with every deployment of the sites file; close both after."""
        self.catalog.parent.mkdir(parents=True, exist_ok=True)
        self.connectors = self.sites.connectors()
        async with DataManager(self.connectors, catalog=self.catalog) as manager:
            yield manager

    def progress(self) -> TransferProgress:
        """A progress display for this session's transfers."""
        return TransferProgress(self.progress_console, enabled=self.show_progress)


def _require_absolute(path: str) -> str:
    if not path.startswith("/"):
        raise SitesError(f"{path!r} is not an absolute path")
    return normalize_path(path)


async def _existing(session: Session, location: ExecutionLocation, path: str) -> Entry:
    entry = await session.connectors[location.deployment].stat(location, path)
    if entry is None:
        raise DataNotFoundError(f"{location}:{path}: no such file or directory")
    return entry


async def _destination_paths(
    session: Session, locations: Sequence[ExecutionLocation], path: str, basename: str
) -> dict[ExecutionLocation, str]:
    """Where the data will land on each destination (cp rules); checks they answer."""

    async def one(location: ExecutionLocation) -> str:
        entry = await session.connectors[location.deployment].stat(location, path)
        is_directory = entry is not None and entry.kind is EntryKind.DIRECTORY
        return posixpath.join(path, basename) if is_directory else path

    finals = await asyncio.gather(*(one(location) for location in locations))
    return dict(zip(locations, finals, strict=True))


def _is_known(manager: DataManager, location: ExecutionLocation, path: str) -> bool:
    """True when a valid explicit replica on ``location`` holds ``path`` (or a parent)."""
    return manager._catalog.covering(location, path) is not None


async def copy(
    session: Session, sources: Sequence[Address], target: Address, *, writable: bool = False
) -> list[dict[str, Any]]:
    """``streamdata cp``: copy each source to every location of ``target``.

    With several sources, ``target.path`` is a directory that receives each of them.
    ``writable`` asks for independent copies (never links, not related to the source).

    Returns:
        One record per source: source, bytes, and the destination paths.

    Raises:
        SitesError: If a source names several locations or a path is relative.
        DataNotFoundError: If a source does not exist.
        ConnectorError: If a location cannot be reached.
        TransferError: If a copy failed.
    """
    for source in sources:
        if len(source.locations) != 1:
            raise SitesError(f"the source {source} must name exactly one location")
        _require_absolute(source.path)
    dst_path = _require_absolute(target.path)
    async with session.manager() as manager:
        entries = [
            await _existing(session, s.locations[0], normalize_path(s.path)) for s in sources
        ]
        plans = []
        for source in sources:
            path = normalize_path(source.path)
            land = (
                posixpath.join(dst_path, posixpath.basename(path)) if len(sources) > 1 else dst_path
            )
            finals = await _destination_paths(
                session, target.locations, land, posixpath.basename(path)
            )
            plans.append((source.locations[0], path, land, finals))
        return await _run_copies(session, manager, plans, entries, writable)


async def _run_copies(
    session: Session,
    manager: DataManager,
    plans: Sequence[tuple[ExecutionLocation, str, str, dict[ExecutionLocation, str]]],
    entries: Sequence[Entry],
    writable: bool,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with session.progress() as progress:
        remove = manager.add_listener(progress)
        try:
            for (location, path, land, finals), entry in zip(plans, entries, strict=True):
                if entry.kind is EntryKind.DIRECTORY:
                    connector = session.connectors[location.deployment]
                    progress.expect(location, path, *await tree_size(connector, location, path))
                if not _is_known(manager, location, path):
                    manager.register_path(location, path)
                landed = await manager._transfer_data(location, path, list(finals), land, writable)
                results.append(_copy_record(manager, location, path, {**finals, **landed}))
        finally:
            remove()
    return results


def _copy_record(
    manager: DataManager,
    location: ExecutionLocation,
    path: str,
    finals: dict[ExecutionLocation, str],
) -> dict[str, Any]:
    destinations = []
    for where, final in finals.items():
        made = manager.get_data_locations(final, where.deployment, where.name)
        kinds = [r.data_type.name for r in made if r.path == final and r.location == where]
        destinations.append(
            {"location": str(where), "path": final, "type": kinds[0] if kinds else "PRIMARY"}
        )
    return {"source": {"location": str(location), "path": path}, "destinations": destinations}


async def list_replicas(session: Session, path: str) -> list[ReplicaRow]:
    """``streamdata ls``: every replica of ``path``, with sizes read from the locations.

    Raises:
        SitesError: If ``path`` is relative.
        DataNotFoundError: If no replica of ``path`` is known.
    """
    path = _require_absolute(path)
    async with session.manager() as manager:
        replicas = manager.get_data_locations(path)
        if not replicas:
            raise DataNotFoundError(f"no replica of {path!r} is known")
        return await describe_replicas(session.connectors, replicas)


def report_record(report: CheckReport) -> dict[str, Any]:
    """A check report as a JSON-ready dictionary."""
    record = asdict(report)
    record["location"] = str(report.location)
    record["errors"] = [{"path": p, "reason": r} for p, r in report.errors]
    return record


async def check(
    session: Session,
    location: ExecutionLocation,
    path: str,
    *,
    repair: bool,
    max_missing: int | None,
    dry_run: bool = False,
) -> CheckReport:
    """``streamdata check``: audit ``path`` on ``location`` (and repair; or only report).

    Raises:
        SitesError: If ``path`` is relative.
        ConnectorError: If the location cannot be listed.
        ConsistencyError: If more than ``max_missing`` replicas are missing.
    """
    path = _require_absolute(path)
    async with session.manager() as manager:
        with session.progress() as progress:
            remove = manager.add_listener(progress)
            try:
                return await manager.check(
                    location, path, repair=repair, max_missing=max_missing, dry_run=dry_run
                )
            finally:
                remove()


async def replicate(
    session: Session,
    path: str,
    locations: Sequence[ExecutionLocation],
    dst_path: str | None,
) -> list[ReplicaRow]:
    """``streamdata replicate``: make every location hold a replica of ``path``.

    Raises:
        SitesError: If a path is relative.
        DataNotFoundError: If no valid replica of ``path`` is known.
        ConnectorError: If a destination cannot be reached.
        TransferError: If a copy failed.
    """
    path = _require_absolute(path)
    target = _require_absolute(dst_path) if dst_path is not None else path
    async with session.manager() as manager:
        known = manager.get_data_locations(path, location_type=DataType.PRIMARY)
        if not known:
            raise DataNotFoundError(f"no valid replica of {path!r} is known")
        await _destination_paths(session, locations, target, posixpath.basename(path))
        with session.progress() as progress:
            remove = manager.add_listener(progress)
            try:
                replicas: list[DataLocation] = await manager.replicate(path, locations, target)
            finally:
                remove()
        return await describe_replicas(session.connectors, replicas)

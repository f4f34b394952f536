"""The operations behind the ``streamdata`` subcommands, as coroutines.

Each operation validates everything it can (addresses, locations, that sources exist and
destinations answer) *before* it changes the catalog, so bad input leaves it untouched.
Results are plain dictionaries, printed as tables or JSON by :mod:`streamdata.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .._audit import CheckReport
from .._errors import DataNotFoundError, StreamDataError, TransferError
from .._manager import DataManager
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ..connectors._base import Connector, Entry, EntryKind
from ._output import ReplicaRow, TransferProgress, describe_replicas, tree_size
from ._sites import Address, Sites, SitesError

__all__ = ["PartlyFailed", "Session", "check", "copy", "list_replicas", "replicate"]


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


class PartlyFailed(TransferError):
    """Some destinations failed; the others were served, as the library does.

    Attributes:
        result: What the operation returns, for every destination (``cp``) or for those
            served (``replicate``): printed before the error line.
    """

    def __init__(
        self,
        command: str,
        total: int,
        failures: Mapping[ExecutionLocation, BaseException],
        result: Any,
    ) -> None:
        causes = "; ".join(f"{where}: {cause}" for where, cause in failures.items())
        super().__init__(
            f"{command} failed for {len(failures)} of {total} destination(s): {causes}", failures
        )
        self.result = result


async def _landing(
    session: Session,
    locations: Sequence[ExecutionLocation],
    path: str,
    basename: str,
    broken: dict[ExecutionLocation, BaseException],
    *,
    into: str | None = None,
) -> tuple[dict[ExecutionLocation, str], dict[ExecutionLocation, BaseException]]:
    """Where the data will land on each destination (cp rules), or why it cannot.

    A destination that fails to answer is left out (and added to ``broken``, so that it
    is not asked again for the next source); the others go on without it.

    Args:
        session: The session.
        locations: The destinations.
        path: The destination path given to ``transfer_data``.
        basename: The source's name.
        broken: Destinations that failed already, with their errors.
        into: A directory to create first on each destination (``DST/``).

    Returns:
        The destinations that answered, with their final paths; those that did not, with
        the error.
    """

    async def one(location: ExecutionLocation) -> str:
        if location in broken:
            raise broken[location]
        connector = session.connectors[location.deployment]
        if into is not None:  # creates the parents of into/basename: into itself
            await connector.prepare_destination(location, posixpath.join(into, basename), basename)
        entry = await connector.stat(location, path)
        is_directory = entry is not None and entry.kind is EntryKind.DIRECTORY
        return posixpath.join(path, basename) if is_directory else path

    outcomes = await asyncio.gather(*(_outcome(one(where)) for where in locations))
    finals = {where: o for where, o in zip(locations, outcomes, strict=True) if isinstance(o, str)}
    failures: dict[ExecutionLocation, BaseException] = {
        where: o for where, o in zip(locations, outcomes, strict=True) if not isinstance(o, str)
    }
    broken.update(failures)
    return finals, failures


async def _outcome(call: Awaitable[str]) -> str | StreamDataError:
    """The result of ``call``, or the error the library raised on purpose."""
    try:
        return await call
    except StreamDataError as exc:
        return exc


def _is_known(manager: DataManager, location: ExecutionLocation, path: str) -> bool:
    """True when a valid explicit replica on ``location`` holds ``path`` (or a parent)."""
    return manager._catalog.covering(location, path) is not None


@dataclass
class _Plan:
    """One source of ``cp``, and where it goes."""

    location: ExecutionLocation
    path: str
    entry: Entry
    land: str  # the destination path given to transfer_data
    finals: dict[ExecutionLocation, str]  # destinations that answered: where data lands
    failures: dict[ExecutionLocation, BaseException]


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
        _require_absolute(source.path)
    dst_path = _require_absolute(target.path)
    into = _directory_meant(target.path)
    async with session.manager() as manager:
        entries = [
            await _existing(session, s.locations[0], normalize_path(s.path)) for s in sources
        ]
        broken: dict[ExecutionLocation, BaseException] = {}
        plans = []
        for source, entry in zip(sources, entries, strict=True):
            path = normalize_path(source.path)
            basename = posixpath.basename(path)
            land = posixpath.join(dst_path, basename) if len(sources) > 1 else dst_path
            landing = await _landing(session, target.locations, land, basename, broken, into=into)
            plans.append(_Plan(source.locations[0], path, entry, land, *landing))
        records = await _run_copies(session, manager, plans, writable)
    failures = _first_per_location(plans)
    if failures:
        raise PartlyFailed("cp", len(target.locations), failures, records)
    return records


def _directory_meant(path: str) -> str | None:
    """``DST/`` means "into the directory DST" (made if missing), as in rsync and scp.

    The library normalises paths, so the slash is read here. Returns the normalised
    directory, or None when ``path`` has no trailing slash (or is ``/``).
    """
    directory = normalize_path(path)
    return directory if path.endswith("/") and directory != "/" else None


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
                if plan.finals:
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
    """Copy one source to the destinations that answered; failures go to ``plan``."""
    location, path = plan.location, plan.path
    if plan.entry.kind is EntryKind.DIRECTORY:
        connector = session.connectors[location.deployment]
        progress.expect(location, path, *await tree_size(connector, location, path))
    if not _is_known(manager, location, path):
        manager.register_path(location, path)
    try:
        landed = await manager._transfer_data(
            location, path, list(plan.finals), plan.land, writable
        )
    except TransferError as exc:
        if not exc.failures:
            raise
        plan.failures.update(exc.failures)
    else:
        plan.finals.update(landed)  # where each copy really is (e.g. the data was there)


def _copy_record(manager: DataManager, plan: _Plan) -> dict[str, Any]:
    destinations = []
    for where in (*plan.finals, *(w for w in plan.failures if w not in plan.finals)):
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
        PartlyFailed: If some locations failed (unreachable, or their copy failed); the
            others are served, and ``result`` holds their rows.
    """
    path = _require_absolute(path)
    target = _require_absolute(dst_path) if dst_path is not None else path
    if dst_path is not None and _directory_meant(dst_path) is not None:
        target = posixpath.join(target, posixpath.basename(path))  # DST/: into DST
    async with session.manager() as manager:
        known = manager.get_data_locations(path, location_type=DataType.PRIMARY)
        if not known:
            raise DataNotFoundError(f"no valid replica of {path!r} is known")
        finals, failures = await _landing(session, locations, target, posixpath.basename(path), {})
        with session.progress() as progress:
            remove = manager.add_listener(progress)
            try:
                replicas = await _replicate_to(manager, path, list(finals), target, failures)
            finally:
                remove()
        rows = await describe_replicas(session.connectors, replicas)
    if failures:
        raise PartlyFailed("replicate", len(locations), failures, rows)
    return rows


async def _replicate_to(
    manager: DataManager,
    path: str,
    locations: Sequence[ExecutionLocation],
    target: str,
    failures: dict[ExecutionLocation, BaseException],
) -> list[DataLocation]:
    """Replicate to ``locations``; their failures go to ``failures``, the rest is returned."""
    if not locations:
        return []
    try:
        return await manager.replicate(path, locations, target)
    except TransferError as exc:
        if not exc.failures:
            raise
        failures.update(exc.failures)
    served = [where for where in locations if where not in failures]
    return [r for r in manager.get_data_locations(target) if r.location in served]

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
from typing import Any, TypeVar

from rich.console import Console

from streamdata import (
    CheckReport,
    DataLocation,
    DataManager,
    DataNotFoundError,
    DataType,
    ExecutionLocation,
    StreamDataError,
    TransferError,
)
from streamdata.connectors import Connector, Entry

from ._catalog import Catalog
from ._output import ReplicaRow, TransferProgress, describe_replicas
from ._sites import Sites, SitesError

__all__ = [
    "PartlyFailed",
    "Session",
    "answering",
    "check",
    "directory_meant",
    "existing",
    "list_replicas",
    "normalized",
    "replicate",
    "report_record",
    "require_absolute",
]

_T = TypeVar("_T")


@dataclass
class Session:
    """What one command invocation works with.

    Attributes:
        sites: The deployments.
        catalog: The catalog (a SQLite file or a PostgreSQL database).
        progress_console: Where progress bars go (standard error).
        show_progress: Whether to draw progress bars.
        connectors: The connectors of the open manager, by deployment.
    """

    sites: Sites
    catalog: Catalog
    progress_console: Console
    show_progress: bool
    connectors: dict[str, Connector] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def manager(self) -> AsyncIterator[DataManager]:
        """Open the catalog with every deployment of the sites file; close both after."""
        self.connectors = self.sites.connectors()
        async with self.catalog.open(self.connectors) as manager:
            yield manager

    def progress(self) -> TransferProgress:
        """A progress display for this session's transfers."""
        return TransferProgress(self.progress_console, enabled=self.show_progress)


def normalized(path: str) -> str:
    """An absolute ``path`` written as the catalog writes it: ``/a//b/`` is ``/a/b``."""
    return "/" + posixpath.normpath(path).lstrip("/")


def require_absolute(path: str) -> str:
    if not path.startswith("/"):
        raise SitesError(f"{path!r} is not an absolute path")
    return normalized(path)


async def existing(session: Session, location: ExecutionLocation, path: str) -> Entry:
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


async def answering(
    session: Session,
    locations: Sequence[ExecutionLocation],
    path: str,
    basename: str,
    broken: dict[ExecutionLocation, BaseException],
    *,
    into: str | None = None,
) -> tuple[list[ExecutionLocation], dict[ExecutionLocation, BaseException]]:
    """The destinations that answer (so the catalog is changed only if one does).

    A destination that fails to answer is left out (and added to ``broken``, so that it
    is not asked again for the next source); the others go on without it.

    Args:
        session: The session.
        locations: The destinations.
        path: The destination path given to the copy.
        basename: The source's name.
        broken: Destinations that failed already, with their errors.
        into: A directory to create first on each destination (``DST/``).

    Returns:
        The destinations that answered; those that did not, with the error.
    """

    async def one(location: ExecutionLocation) -> ExecutionLocation:
        if location in broken:
            raise broken[location]
        connector = session.connectors[location.deployment]
        if into is None:
            await connector.stat(location, path)  # only to learn that it answers
        else:  # creates the parents of into/basename: into itself
            await connector.prepare_destination(location, posixpath.join(into, basename), basename)
        return location

    outcomes = await asyncio.gather(*(_outcome(one(where)) for where in locations))
    answered = [o for o in outcomes if isinstance(o, ExecutionLocation)]
    failures: dict[ExecutionLocation, BaseException] = {
        where: o for where, o in zip(locations, outcomes, strict=True) if isinstance(o, Exception)
    }
    broken.update(failures)
    return answered, failures


async def _outcome(call: Awaitable[_T]) -> _T | StreamDataError:
    """The result of ``call``, or the error the library raised on purpose."""
    try:
        return await call
    except StreamDataError as exc:
        return exc


def directory_meant(path: str) -> str | None:
    """``DST/`` means "into the directory DST" (made if missing), as in rsync and scp.

    The library normalises paths, so the slash is read here. Returns the normalised
    directory, or None when ``path`` has no trailing slash (or is ``/``).
    """
    directory = normalized(path)
    return directory if path.endswith("/") and directory != "/" else None


async def list_replicas(session: Session, path: str) -> list[ReplicaRow]:
    """``streamdata ls``: every replica of ``path``, with sizes read from the locations.

    Raises:
        SitesError: If ``path`` is relative.
        DataNotFoundError: If no replica of ``path`` is known.
    """
    path = require_absolute(path)
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
    path = require_absolute(path)
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
    path = require_absolute(path)
    target = require_absolute(dst_path) if dst_path is not None else path
    if dst_path is not None and directory_meant(dst_path) is not None:
        target = posixpath.join(target, posixpath.basename(path))  # DST/: into DST
    async with session.manager() as manager:
        known = manager.get_data_locations(path, location_type=DataType.PRIMARY)
        if not known:
            raise DataNotFoundError(f"no valid replica of {path!r} is known")
        answered, failures = await answering(
            session, locations, target, posixpath.basename(path), {}
        )
        with session.progress() as progress:
            remove = manager.add_listener(progress)
            try:
                replicas = await _replicate_to(manager, path, answered, target, failures)
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

"""The DataManager: the catalog, the connectors and the transfers that keep them true.

A transfer runs in three steps. *Plan*: for each destination, apply cp rules (one
connector round trip), then decide, without yielding to the event loop, whether there is
nothing to do, an identical transfer to wait for, a link to make or a copy to run; links
and copies register their destination at once as a pending replica, which is how
concurrent identical transfers find each other. *Move*: links are made, copies read the
source once for all destinations. *Settle*: each destination is renamed into place and
marked available, or removed and marked INVALID with its cause, also when the transfer is
cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

from ._catalog import RemotePathMapper
from ._check import CheckReport, entry_signature, run_check
from ._errors import (
    ConfigurationError,
    ConnectorError,
    DataNotFoundError,
    StreamDataError,
    TransferError,
)
from ._events import Event, EventBus, EventKind, ReplicaEvent
from ._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ._plan import Job, TransferContext, TransferPlan, transfer_error
from ._policy import SourcePolicy, default_source_policy
from ._progress import Progress
from ._store import CatalogBatch, open_store
from ._transfer import Endpoint
from .connectors._base import Connector, Entry, EntryKind, entry_from_stat

__all__ = ["DataManager"]

logger = logging.getLogger("streamdata")


class DataManager:
    """Knows where every replica is and moves data between locations.

    Args:
        deployments: Connectors by deployment name.
        catalog: None keeps the catalog in memory; a path keeps it in an embedded SQLite
            file, durable once each call returns.
        rng: Random generator for the random tier of source selection.
        source_policy: Chooses transfer sources; defaults to the contract's tiers.
        verify: Verify every copy end to end before it is renamed into place: a file's
            XXH3-128 digest (computed while it streams, or by reading the source when the
            copy ran in the kernel) against the destination's; a tree's listing (paths,
            types, sizes). A mismatch fails that destination. Off by default; each
            ``transfer_data`` call may override it.

    With a catalog file, each change is committed before the call that made it returns.
    To register many paths quickly, group the calls in a batch: inside
    ``with dm.batch():`` (or ``async with``) the block's changes are committed once, when
    the outermost block exits (other tasks keep committing call by call), also when it
    exits with an exception (the replicas registered before it are real in memory, so
    the file keeps them too). A process killed inside the block loses at most the
    changes made since the batch began.

    Raises:
        TypeError: If a deployment is not a :class:`Connector`.
        ConfigurationError: If the catalog file cannot be opened.
    """

    def __init__(
        self,
        deployments: Mapping[str, Connector] | None = None,
        *,
        catalog: str | os.PathLike[str] | None = None,
        rng: random.Random | None = None,
        source_policy: SourcePolicy = default_source_policy,
        verify: bool = False,
    ) -> None:
        self._connectors: dict[str, Connector] = {}
        self._local_deployments: set[str] = set()
        for name, connector in (deployments or {}).items():
            self.add_deployment(name, connector)
        self._store = open_store(catalog)
        self._events = EventBus(self._listen_to_catalog)
        self._catalog = RemotePathMapper(self._store)
        if self._store is not None:
            self._store.load(self._catalog)
        self._rng = rng if rng is not None else random.Random()
        self._policy = source_policy
        self._inflight: dict[tuple[ExecutionLocation, str], Job] = {}
        self._closed = False
        self._verify = verify
        self._context = TransferContext(
            self._catalog, self._connectors, self._inflight, self._store
        )

    # -- lifecycle -------------------------------------------------------------------------

    def add_deployment(self, name: str, connector: Connector) -> None:
        """Make the locations of deployment ``name`` reachable through ``connector``.

        Raises:
            TypeError: If ``connector`` is not a :class:`Connector`.
            ValueError: If ``name`` is empty.
            ConfigurationError: If another connector already serves ``name``.
        """
        if not isinstance(connector, Connector):
            raise TypeError(f"deployment {name!r}: expected a Connector, got {connector!r}")
        if not isinstance(name, str) or not name:
            raise ValueError("a deployment needs a non-empty name")
        if self._connectors.setdefault(name, connector) is not connector:
            raise ConfigurationError(f"deployment {name!r} is already configured")
        if connector.is_local:
            self._local_deployments.add(name)

    async def close(self) -> None:
        """Close every connector and the catalog; calling it again does nothing.

        Raises:
            ConnectorError: If a connector fails to close (the others are still closed).
        """
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for connector in self._connectors.values():
            try:
                await connector.close()
            except StreamDataError as exc:
                errors.append(exc)
        if self._store is not None:
            self._store.close()
        if errors:
            raise errors[0]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def batch(self) -> CatalogBatch:
        """Commit the catalog changes made inside a block once, when the block exits.

        ``with dm.batch(): ...`` or ``async with dm.batch(): ...``. Every change made by
        the code inside the block (and by tasks it starts there) is written to the catalog
        file when the outermost batch exits, normally or with an exception, instead of
        call by call. Batches nest: only the outermost one commits. Other tasks are not
        held back: their calls are durable when they return, as always, and may carry the
        batch's changes to the file early. Changes may become durable earlier than the
        block's end (a transfer journals its temporary file at once), never later. Without
        a catalog file it does nothing.

        Returns:
            A context manager for ``with`` and ``async with``.

        Raises:
            ConfigurationError: If the manager is closed.
        """
        self._ensure_open()
        return CatalogBatch(self._store)

    # -- events ----------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`TransferEvent` and :class:`ReplicaEvent`.

        The callback runs in the event loop and must return quickly; an exception it raises
        is logged and ignored.

        Returns:
            A function that removes the listener.
        """
        return self._events.add_callback(callback)

    def events(self, *, buffer: int = 1024) -> AsyncIterator[Event]:
        """Iterate over events from now on (``async for event in dm.events(): ...``).

        The queue holds ``buffer`` events; a consumer that falls behind loses progress
        events, never the others. Stop iterating (``break``) to unsubscribe.
        """
        return self._events.subscribe(buffer)

    def _listen_to_catalog(self, active: bool) -> None:
        """Catalog changes are reported only while somebody listens (it costs nothing else)."""
        self._catalog._listener = self._on_catalog_change if active else None

    def _on_catalog_change(self, invalidated: bool, replica: DataLocation) -> None:
        kind = EventKind.REPLICA_INVALIDATED if invalidated else EventKind.REPLICA_REGISTERED
        self._events.publish(ReplicaEvent(kind, replica))

    # -- catalog ---------------------------------------------------------------------------

    def register_path(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str | None = None,
        data_type: DataType = DataType.PRIMARY,
    ) -> DataLocation:
        """Record a replica of ``path`` on ``location`` and, implied, its ancestors.

        Registering an existing ``(location, path)`` returns the same replica, made valid
        again with the new type.

        Raises:
            TypeError: If ``location`` or ``data_type`` has the wrong type.
            ValueError: If ``path`` is relative or ``data_type`` is INVALID.
            ConfigurationError: If the manager is closed.
        """
        _check_location(location)
        if not isinstance(data_type, DataType):
            raise TypeError(f"data_type must be a DataType, not {data_type!r}")
        self._ensure_open()
        replica = self._catalog.register(location, path, relpath, data_type)
        if self._is_local(location):
            self._record_local_entry(replica)
        return replica

    def _record_local_entry(self, replica: DataLocation) -> None:
        """Remember size and mtime of a local replica now, for :meth:`check` to compare."""
        try:
            info = os.lstat(replica.path)  # what a storage listing will see
        except OSError:
            return
        entry = entry_from_stat(replica.path, info)
        self._catalog.record_entry(replica, entry_signature(entry))

    def register_relation(self, src_location: DataLocation, dst_location: DataLocation) -> None:
        """Record that two replicas hold the same data (symmetric and transitive).

        Raises:
            TypeError: If an argument is not a :class:`DataLocation`.
            DataNotFoundError: If a replica is unknown or INVALID.
            ConfigurationError: If the manager is closed.
        """
        for replica in (src_location, dst_location):
            if not isinstance(replica, DataLocation):
                raise TypeError(f"expected a DataLocation, got {replica!r}")
        self._ensure_open()
        self._catalog.relate(src_location, dst_location)

    def invalidate_location(self, location: ExecutionLocation, path: str) -> None:
        """Mark ``location``'s replica at ``path``, its subtree and links to them INVALID.

        An unknown path is a no-op.

        Raises:
            TypeError: If ``location`` is not an :class:`ExecutionLocation`.
            ValueError: If ``path`` is relative.
            ConfigurationError: If the manager is closed.
        """
        if not isinstance(location, ExecutionLocation):  # _check_location, inlined: hot
            raise TypeError(f"expected an ExecutionLocation, got {location!r}")
        self._ensure_open()
        self._catalog.invalidate(location, path)

    def get_data_locations(
        self,
        path: str,
        deployment: str | None = None,
        location: str | None = None,
        location_type: DataType | None = None,
    ) -> list[DataLocation]:
        """Every valid replica at ``path`` and every replica related to them, filtered.

        Args:
            path: Absolute POSIX path.
            deployment: Keep only replicas of this deployment.
            location: Keep only replicas on locations with this name.
            location_type: Keep only replicas of this type.

        Returns:
            The matching replicas; ``[]`` for an unknown path.

        Raises:
            ValueError: If ``path`` is relative.
        """
        return self._catalog.locations(path, deployment, location, location_type)

    def get_source_location(self, path: str, dst_deployment: str) -> DataLocation | None:
        """Choose the PRIMARY replica of ``path`` a transfer to ``dst_deployment`` reads.

        Returns:
            The replica the source policy picks, or None if there is none.

        Raises:
            ValueError: If ``path`` is relative.
        """
        # _pick_source inlined: this is the hottest query of a workflow engine.
        replicas = self._catalog.locations(path)
        candidates = [r for r in replicas if r._data_type is _PRIMARY and not r._implied]
        if not candidates:
            return None
        return self._policy(
            candidates, dst_deployment=dst_deployment, is_local=self._is_local, rng=self._rng
        )

    def _pick_source(
        self, replicas: Sequence[DataLocation], dst_deployment: str
    ) -> DataLocation | None:
        candidates = [r for r in replicas if r._data_type is _PRIMARY and not r._implied]
        return self._policy(
            candidates, dst_deployment=dst_deployment, is_local=self._is_local, rng=self._rng
        )

    def _is_local(self, location: ExecutionLocation) -> bool:
        return location.local or location.deployment in self._local_deployments

    def _ensure_open(self) -> None:
        if self._closed:
            raise ConfigurationError("the DataManager is closed")

    def _connector(self, location: ExecutionLocation) -> Connector:
        self._ensure_open()
        try:
            return self._connectors[location.deployment]
        except KeyError:
            raise ConfigurationError(
                f"unknown deployment {location.deployment!r} (location {location})"
            ) from None

    # -- transfers -------------------------------------------------------------------------

    async def transfer_data(
        self,
        src_location: ExecutionLocation,
        src_path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str,
        writable: bool = False,
        *,
        verify: bool | None = None,
    ) -> None:
        """Copy the data at ``src_path`` on ``src_location`` to ``dst_path`` on each destination.

        cp rules apply: an existing directory at ``dst_path`` receives the data under the
        source's basename. Each destination is written atomically and registered; unless
        ``writable``, it is related to the source, and a destination that is the source's
        location (or already holds the data) gets a symbolic link instead of a copy.
        ``verify`` (default: the manager's setting) checks each copy against the source
        before it is renamed into place.

        Raises:
            ValueError: If a path is relative.
            TypeError: If a location has the wrong type.
            ConfigurationError: If a deployment is unknown.
            DataNotFoundError: If the source is not a valid known replica, or its data is
                gone (its replica is then invalidated).
            TransferError: If some destinations failed; ``.failures`` maps each to its
                cause, and the others stay registered and valid.
        """
        src_path, dst_path = normalize_path(src_path), normalize_path(dst_path)
        _check_location(src_location)
        if isinstance(dst_locations, ExecutionLocation):
            raise TypeError("dst_locations must be a sequence of ExecutionLocation")
        destinations = list(dict.fromkeys(dst_locations))
        for destination in destinations:
            _check_location(destination)
            self._connector(destination)
        source_connector = self._connector(src_location)
        await self._remove_stale_temporaries(destinations)
        source = await self._resolve_source(src_location, src_path)
        entry = await self._stat_source(source_connector, source, destinations)
        if destinations:
            endpoint = Endpoint(source_connector, src_location, src_path)
            check = self._verify if verify is None else verify
            transfer = TransferPlan(
                self._context, endpoint, source, entry, writable=writable, verify=check
            )
            report = Progress(self._events, src_location, src_path, destinations, dst_path, entry)
            failures = await report.around(transfer.run(destinations, dst_path, report.advance))
            if failures:
                raise transfer_error(src_location, src_path, failures)

    async def _remove_stale_temporaries(self, locations: Sequence[ExecutionLocation]) -> None:
        """Remove temporary files of transfers interrupted in an earlier process.

        Done when a location is next used (connections are lazy); an unreachable location
        keeps its entries for a later attempt.
        """
        if self._store is None:
            return
        wanted = set(locations)
        for location, tmp in self._store.stale_temporaries():
            if location not in wanted or location.deployment not in self._connectors:
                continue
            try:
                await self._connectors[location.deployment].remove(location, tmp)
            except StreamDataError:
                continue
            self._store.forget_temporary(location, tmp)

    async def _resolve_source(self, location: ExecutionLocation, path: str) -> DataLocation:
        covering = self._catalog.covering(location, path)
        if covering is None:
            raise DataNotFoundError(f"no valid replica of {path!r} is registered on {location}")
        try:
            await covering.wait_available()
        except TransferError as exc:
            raise DataNotFoundError(
                f"the transfer producing {path!r} on {location} failed"
            ) from exc
        if covering.path == path:
            return covering
        return self._catalog.register(location, path)  # a known path inside a known tree

    async def _stat_source(
        self, connector: Connector, source: DataLocation, destinations: Sequence[ExecutionLocation]
    ) -> Entry:
        try:
            entry = await connector.stat(source.location, source.path)
        except ConnectorError as exc:
            raise transfer_error(
                source.location, source.path, dict.fromkeys(destinations, exc)
            ) from exc
        if entry is None or entry.kind is EntryKind.SYMLINK:
            self._catalog.invalidate(source.location, source.path)
            raise DataNotFoundError(
                f"{source.path!r} is registered on {source.location} but no longer exists "
                "there; its replica has been invalidated"
            )
        if entry.kind is EntryKind.OTHER:
            cause = ConnectorError(f"{source.path!r} is neither a regular file nor a directory")
            raise transfer_error(source.location, source.path, dict.fromkeys(destinations, cause))
        return entry

    # -- consistency -----------------------------------------------------------------------

    async def check(
        self,
        location: ExecutionLocation,
        path: str,
        *,
        repair: bool = False,
        max_missing: int | None = None,
        verify_content: bool = False,
    ) -> CheckReport:
        """Compare the catalog with what is really under ``path`` on ``location``.

        Missing or changed replicas are invalidated; with ``repair``, each one that has
        another valid replica in its set is copied back from the best of them. With
        ``verify_content``, every file is also read and its XXH3-128 digest compared with
        the one recorded when it was transferred (a flipped byte counts as changed);
        files with no recorded digest get one.

        Returns:
            The report: ``missing``, ``orphans`` and ``repaired`` paths, sorted.

        Raises:
            ValueError: If ``path`` is relative.
            ConfigurationError: If the location's deployment is unknown.
            ConnectorError: If the location cannot be listed.
            ConsistencyError: If more than ``max_missing`` replicas would be invalidated;
                nothing is changed then.
        """
        _check_location(location)
        path = normalize_path(path)
        await self._remove_stale_temporaries([location])
        return await run_check(
            self,
            self._catalog,
            self._connector(location),
            location,
            path,
            repair=repair,
            max_missing=max_missing,
            verify_content=verify_content,
        )

    async def replicate(
        self,
        path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str | None = None,
    ) -> list[DataLocation]:
        """Make sure every destination holds a valid replica of the data known at ``path``.

        Each missing destination is filled with a real copy from the source the policy
        picks for its deployment; destinations already holding a valid replica are left
        alone.

        Returns:
            The destination replicas, in the order of ``dst_locations``.

        Raises:
            ValueError: If a path is relative.
            ConfigurationError: If a deployment is unknown.
            DataNotFoundError: If no valid replica of ``path`` is known.
            TransferError: If some destinations failed (the others stay valid).
        """
        path = normalize_path(path)
        target = normalize_path(dst_path) if dst_path is not None else path
        replicas = self.get_data_locations(path)
        if not any(r.data_type is DataType.PRIMARY and not r._implied for r in replicas):
            raise DataNotFoundError(f"no valid replica of {path!r} is known")
        results: dict[ExecutionLocation, DataLocation] = {}
        failures: dict[ExecutionLocation, BaseException] = {}
        todo: list[ExecutionLocation] = []
        for destination in dict.fromkeys(dst_locations):
            _check_location(destination)
            self._connector(destination)
            held = self._catalog.lookup(destination, target)
            if held is not None and held in replicas and not held._implied:
                results[destination] = held
            else:
                todo.append(destination)
        async with asyncio.TaskGroup() as group:
            for destination in todo:
                group.create_task(
                    self._replicate_one(replicas, destination, target, results, failures)
                )
        if failures:
            raise TransferError(
                f"replication of {path!r} failed for {len(failures)} location(s)", failures
            )
        return [results[d] for d in dict.fromkeys(dst_locations)]

    async def _replicate_one(
        self,
        replicas: Sequence[DataLocation],
        destination: ExecutionLocation,
        target: str,
        results: dict[ExecutionLocation, DataLocation],
        failures: dict[ExecutionLocation, BaseException],
    ) -> None:
        source = self._pick_source(replicas, destination.deployment)
        assert source is not None
        try:
            await self._copy_exact(source, destination, target)
        except TransferError as exc:
            failures[destination] = exc.failures.get(destination, exc)
            return
        except StreamDataError as exc:
            failures[destination] = exc
            return
        replica = self._catalog.lookup(destination, target)
        assert replica is not None
        results[destination] = replica

    async def _copy_exact(
        self, source: DataLocation, destination: ExecutionLocation, target: str
    ) -> None:
        """Copy ``source`` to exactly ``target`` on ``destination`` (no cp rules), related."""
        connector = self._connector(source.location)
        entry = await self._stat_source(connector, source, [destination])
        endpoint = Endpoint(connector, source.location, source.path)
        transfer = TransferPlan(
            self._context, endpoint, source, entry, exact=True, verify=self._verify
        )
        failures = await transfer.run([destination], target)
        if failures:
            raise transfer_error(source.location, source.path, failures)


_PRIMARY = DataType.PRIMARY


def _check_location(location: object) -> None:
    if not isinstance(location, ExecutionLocation):
        raise TypeError(f"expected an ExecutionLocation, got {location!r}")

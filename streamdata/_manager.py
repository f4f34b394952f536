"""The DataManager: the catalog, the connectors and the transfers that keep them true.

The public API, checking its arguments and wiring the parts that do the work: the
deployments (``_deployments``), the catalog (``_catalog``, ``_store``), a transfer
(``_run``, ``_plan``: plan, move, settle), exact copies (``_replicate``) and the
consistency audit (``_check``).
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from time import monotonic
from types import TracebackType
from typing import Self

from ._audit import CheckReport, record_local_entry, run_check
from ._catalog.batch import CatalogBatch
from ._catalog.mapper import RemotePathMapper
from ._catalog.sqlite import open_store
from ._catalog.sync import CatalogSync
from ._engine.deployments import Deployments, check_location
from ._engine.plan import Job, TransferContext
from ._engine.replicate import Replicator
from ._engine.run import remove_stale_temporaries, run_transfer
from ._engine.transfer import Endpoint
from ._errors import DataNotFoundError, TransferError
from ._events import Event, EventBus
from ._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ._policy import SourcePolicy, default_source_policy
from .connectors._base import Connector

__all__ = ["DataManager"]


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
        self._deployments = Deployments()
        for name, connector in (deployments or {}).items():
            self.add_deployment(name, connector)
        self._store = open_store(catalog)
        self._events = EventBus(self._listen_to_catalog)
        self._catalog = RemotePathMapper(self._store)
        self._sync: CatalogSync | None = None
        if self._store is not None:
            self._catalog.load()
            self._sync = CatalogSync(self._catalog)
        self._rng = rng if rng is not None else random.Random()
        self._policy = source_policy
        self._inflight: dict[tuple[ExecutionLocation, str], Job] = {}
        self._verify = verify
        connectors = self._deployments.connectors
        self._context = TransferContext(self._catalog, connectors, self._inflight, self._store)
        self._replicator = Replicator(
            self._context, self._events, self._deployments, source_policy, self._rng, verify
        )

    # -- lifecycle -------------------------------------------------------------------------

    def add_deployment(self, name: str, connector: Connector) -> None:
        """Make the locations of deployment ``name`` reachable through ``connector``.

        Raises:
            TypeError: If ``connector`` is not a :class:`Connector`.
            ValueError: If ``name`` is empty.
            ConfigurationError: If another connector already serves ``name``.
        """
        self._deployments.add(name, connector)

    async def close(self) -> None:
        """Close every connector and the catalog; calling it again does nothing.

        Raises:
            ConnectorError: If a connector fails to close (the others are still closed).
        """
        if self._deployments.closed:
            return
        error = await self._deployments.close()
        if self._sync is not None:
            await self._sync.close()
        if self._store is not None:
            self._store.close()
        if error is not None:
            raise error

    async def __aenter__(self) -> Self:
        self._refresh(watch=True)
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
        self._deployments.ensure_open()
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
        self._catalog._listener = self._events.replica_changed if active else None

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
        check_location(location)
        if not isinstance(data_type, DataType):
            raise TypeError(f"data_type must be a DataType, not {data_type!r}")
        self._deployments.ensure_open()
        self._refresh()
        replica = self._catalog.register(location, path, relpath, data_type)
        if self._deployments.is_local(location):
            record_local_entry(self._catalog, replica)
        return replica

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
        self._deployments.ensure_open()
        self._refresh(now=True)
        self._catalog.relate(src_location, dst_location)

    def invalidate_location(self, location: ExecutionLocation, path: str) -> None:
        """Mark ``location``'s replica at ``path``, its subtree and links to them INVALID.

        Replicas there that a check invalidated are given up as well: ``check(repair=True)``
        no longer copies them back. An unknown path is a no-op.

        Raises:
            TypeError: If ``location`` is not an :class:`ExecutionLocation`.
            ValueError: If ``path`` is relative.
            ConfigurationError: If the manager is closed.
        """
        if not isinstance(location, ExecutionLocation):  # check_location, inlined: hot
            raise TypeError(f"expected an ExecutionLocation, got {location!r}")
        if self._deployments.closed:
            self._deployments.ensure_open()  # raises
        if self._sync is not None:  # self._refresh(now=True), inlined: hot
            self._sync.refresh(now=True)
        catalog = self._catalog
        catalog.invalidate(location, path)
        if catalog.lineage.anchored:
            catalog.forget_lost(location, path)

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
        sync = self._sync
        if sync is not None and monotonic() >= sync.due:  # CatalogSync.refresh, inlined
            sync.refresh()
        return self._catalog.locations(path, deployment, location, location_type)

    def get_source_location(self, path: str, dst_deployment: str) -> DataLocation | None:
        """Choose the PRIMARY replica of ``path`` a transfer to ``dst_deployment`` reads.

        Returns:
            The replica the source policy picks, or None if there is none.

        Raises:
            ValueError: If ``path`` is relative.
        """
        # Replicator.pick_source inlined: this is the hottest query of a workflow engine.
        sync = self._sync
        if sync is not None and monotonic() >= sync.due:  # CatalogSync.refresh, inlined
            sync.refresh()
        candidates = self._catalog.sources(path)
        if not candidates:
            return None
        return self._policy(
            candidates,
            dst_deployment=dst_deployment,
            is_local=self._deployments.is_local,
            rng=self._rng,
        )

    def _refresh(self, *, now: bool = False, watch: bool = False) -> None:
        """See other processes' changes to a shared catalog; ``watch`` also from the loop."""
        if self._sync is not None:
            self._sync.refresh(now=now)
            if watch:
                self._sync.watch()

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
        source's basename, unless ``dst_path`` already is a replica of this data (running
        a transfer twice leaves what running it once did). Each destination is written
        atomically and registered; unless ``writable``, it is related to the source, and a
        destination that is the source's location (or already holds the data) gets a
        symbolic link instead of a copy. A destination inside the data itself fails, as
        ``cp`` refuses to copy a directory into itself.
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
        await self._transfer_data(
            src_location, src_path, dst_locations, dst_path, writable, verify=verify
        )

    async def _transfer_data(
        self,
        src_location: ExecutionLocation,
        src_path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str,
        writable: bool = False,
        *,
        verify: bool | None = None,
    ) -> dict[ExecutionLocation, str]:
        """:meth:`transfer_data`, telling where the data is on each destination (for the CLI).

        Raises:
            StreamDataError: As :meth:`transfer_data`.
        """
        src_path, dst_path = normalize_path(src_path), normalize_path(dst_path)
        check_location(src_location)
        if isinstance(dst_locations, ExecutionLocation):
            raise TypeError("dst_locations must be a sequence of ExecutionLocation")
        destinations = self._deployments.destinations(dst_locations)
        source = Endpoint(self._deployments.connector(src_location), src_location, src_path)
        self._refresh(now=True, watch=True)
        check = self._verify if verify is None else verify
        return await run_transfer(
            self._context,
            self._events,
            source,
            destinations,
            dst_path,
            writable=writable,
            verify=check,
        )

    # -- consistency -----------------------------------------------------------------------

    async def check(
        self,
        location: ExecutionLocation,
        path: str,
        *,
        repair: bool = False,
        max_missing: int | None = None,
        verify_content: bool = False,
        dry_run: bool = False,
    ) -> CheckReport:
        """Compare the catalog with what is really under ``path`` on ``location``.

        Missing or changed replicas are invalidated; the catalog remembers what each was
        a copy of. With ``repair``, each one that has another valid replica in its set is
        copied back from the best of them, and so is each replica an earlier check
        invalidated there, while a valid replica of its former set is left (and no other
        valid replica has taken its place). A repair replaces only what the check found
        in a replica's place, never an entry of another type or one that appeared since;
        such a repair fails (``errors``) and is tried again by the next one. With
        ``verify_content``, every file is also read and its XXH3-128 digest compared with
        the one recorded when it was transferred (a flipped byte counts as changed);
        files with no recorded digest get one. With ``dry_run``, nothing is changed,
        neither the catalog nor storage: the report says what would be invalidated
        (``missing``) and, with ``repair``, copied back (``repaired``).

        Returns:
            The report: ``missing``, ``orphans`` and ``repaired`` paths, sorted.

        Raises:
            ValueError: If ``path`` is relative.
            ConfigurationError: If the location's deployment is unknown.
            ConnectorError: If the location cannot be listed.
            ConsistencyError: If more than ``max_missing`` replicas would be invalidated;
                nothing is changed then.
        """
        check_location(location)
        path = normalize_path(path)
        self._refresh(now=True, watch=True)
        if not dry_run:
            await remove_stale_temporaries(self._context, [location])
        return await run_check(
            self._replicator,
            self._catalog,
            self._deployments.connector(location),
            location,
            path,
            repair=repair,
            max_missing=max_missing,
            verify_content=verify_content,
            dry_run=dry_run,
        )

    async def replicate(
        self,
        path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str | None = None,
    ) -> list[DataLocation]:
        """Make sure every destination holds a valid replica of the data known at ``path``.

        ``dst_path`` (default: ``path``) is the exact destination path (no cp rules). Each
        destination with nothing there is filled with a real copy from the source the
        policy picks for its deployment; destinations whose entry at ``dst_path`` is a
        valid replica of the data (confirmed on storage) are left alone. Any other entry
        there is never removed or overwritten: that destination fails.

        Returns:
            The destination replicas, in the order of ``dst_locations``.

        Raises:
            ValueError: If a path is relative.
            ConfigurationError: If a deployment is unknown.
            DataNotFoundError: If no valid replica of ``path`` is known.
            TransferError: If some destinations failed, e.g. because ``dst_path`` holds
                an entry that is not a replica of the data (``.failures`` maps each to its
                cause; the others stay valid).
        """
        path = normalize_path(path)
        target = normalize_path(dst_path) if dst_path is not None else path
        self._refresh(now=True, watch=True)
        replicas = self.get_data_locations(path)
        if not any(r.data_type is DataType.PRIMARY and not r.implied for r in replicas):
            raise DataNotFoundError(f"no valid replica of {path!r} is known")
        destinations = self._deployments.destinations(dst_locations)
        results, failures = await self._replicator.fill(replicas, destinations, target)
        if failures:
            details = "; ".join(f"{where}: {cause}" for where, cause in failures.items())
            raise TransferError(
                f"replication of {path!r} failed for {len(failures)} location(s): {details}",
                failures,
            )
        return [results[d] for d in dict.fromkeys(dst_locations)]


_PRIMARY = DataType.PRIMARY

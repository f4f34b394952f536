"""The DataManager, the public API: it checks arguments and wires the parts doing the work:
the catalog (``_catalog``), the engine (``_engine``: copies, probes), the audit (``_audit``)."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from time import monotonic
from types import TracebackType
from typing import Self

from ._audit import CheckReport, record_local_entry, run_check
from ._catalog.batch import CatalogBatch
from ._catalog.sync import open_catalog
from ._engine.deployments import Deployments, check_location
from ._engine.engine import Engine
from ._engine.probing import Probing
from ._engine.replicate import replicate
from ._events import Event
from ._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ._policy import SourcePolicy, default_source_policy
from .connectors._base import Connector

__all__ = ["DataManager"]


class DataManager(Probing):
    """Knows where every replica is and moves data between locations.

    Args:
        deployments: Connectors by deployment name.
        catalog: None keeps the catalog in memory; a path keeps it in an embedded SQLite
            file, durable once each call returns.
        rng: Random generator for the random tier of source selection.
        source_policy: Chooses transfer sources; defaults to the contract's tiers.
        verify: Verify every copy before it is renamed into place (a file's XXH3-128
            digest, a tree's listing); a mismatch fails that destination. Off by
            default; each ``transfer_data`` call may override it.

    With a catalog file, each change is committed before the call that made it returns;
    to register many paths quickly, group the calls in a batch (:meth:`batch`).

    Raises:
        TypeError: If a deployment is not a :class:`Connector`.
        ConfigurationError: If the catalog file cannot be opened.
    """

    __module__ = "streamdata"

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
        self._catalog, self._sync = open_catalog(catalog)
        self._engine = Engine(
            self._catalog, self._deployments, policy=source_policy, rng=rng, verify=verify
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
        await self._sync.close()
        self._catalog.close()
        if error is not None:
            raise error

    async def __aenter__(self) -> Self:
        self._sync.watch()
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

        ``with dm.batch(): ...`` or ``async with dm.batch(): ...``: every change made
        inside the block (and by tasks it starts there) is written to the catalog file
        once, when the outermost batch exits, normally or with an exception (what was
        registered is real in memory, so the file keeps it too); a process killed
        inside loses at most the changes since the batch began. Batches nest: only the
        outermost one commits. Other tasks are not held back (their calls are durable
        when they return) and may carry the batch's changes to the file early, as may a
        transfer journalling its temporary file. Without a catalog file it does nothing.

        Returns:
            A context manager for ``with`` and ``async with``.

        Raises:
            ConfigurationError: If the manager is closed.
        """
        self._deployments.ensure_open()
        return self._catalog.batch()

    # -- events ----------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every :class:`TransferEvent` and :class:`ReplicaEvent`.

        The callback runs in the event loop and must return quickly; an exception it raises
        is logged and ignored.

        Returns:
            A function that removes the listener.
        """
        return self._engine.events.add_callback(callback)

    def events(self, *, buffer: int = 1024) -> AsyncIterator[Event]:
        """Iterate over events from now on (``async for event in dm.events(): ...``).

        The queue holds ``buffer`` events; a consumer that falls behind loses progress
        events, never the others. Stop iterating (``break``) to unsubscribe.
        """
        return self._engine.events.subscribe(buffer)

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
        self._sync.refresh()
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
        self._sync.refresh(now=True)
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
        if self._sync.shared:  # self._sync.refresh(now=True), inlined: hot
            self._sync.refresh(now=True)
        self._catalog.invalidate(location, path)
        if self._catalog.lineage.anchored:
            self._catalog.forget_lost(location, path)

    def get_data_locations(
        self,
        path: str,
        deployment: str | None = None,
        location: str | None = None,
        location_type: DataType | None = None,
    ) -> list[DataLocation]:
        """Every valid replica at ``path`` and every replica related to them, filtered.

        Only replicas of ``deployment``, on locations named ``location``, of type
        ``location_type`` are kept (each filter when given; ``path`` is absolute POSIX).

        Returns:
            The matching replicas; ``[]`` for an unknown path.

        Raises:
            ValueError: If ``path`` is relative.
        """
        if self._sync.shared and monotonic() >= self._sync.due:  # sync.refresh(), inlined
            self._sync.refresh()
        return self._catalog.locations(path, deployment, location, location_type)

    def get_source_location(self, path: str, dst_deployment: str) -> DataLocation | None:
        """Choose the PRIMARY replica of ``path`` a transfer to ``dst_deployment`` reads.

        Returns:
            The replica the source policy picks, or None if there is none.

        Raises:
            ValueError: If ``path`` is relative.
        """
        if self._sync.shared and monotonic() >= self._sync.due:  # sync.refresh(), inlined
            self._sync.refresh()
        return self._engine.choose(self._catalog.sources(path), dst_deployment)

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
        ``cp`` refuses to copy a directory into itself. ``verify`` (default: the
        manager's setting) checks each copy against the source before it is renamed.
        If the source fails (down, gone, broken stream), the next replica is read.

        Raises:
            ValueError: If a path is relative.
            TypeError: If a location has the wrong type.
            ConfigurationError: If a deployment is unknown.
            DataNotFoundError: If the source is not a valid known replica, or its data is
                gone from every replica (each such replica is then invalidated).
            TransferError: If some destinations failed, on their own or as every source
                did; ``.failures`` maps each to its cause, the others stay registered and valid.
        """
        await self.copy_data(
            src_location, src_path, dst_locations, dst_path, writable=writable, verify=verify
        )

    async def copy_data(
        self,
        src_location: ExecutionLocation,
        src_path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str,
        *,
        writable: bool = False,
        verify: bool | None = None,
        register_source: bool = False,
    ) -> dict[ExecutionLocation, str]:
        """:meth:`transfer_data`, telling where the data is on each destination.

        For tools that report each copy, such as the ``streamdata cp`` command: under cp
        rules the data lands inside ``dst_path`` when that is a directory, and a
        destination that already held the data keeps it where it is. The arguments are
        those of :meth:`transfer_data`, and ``register_source`` first registers
        ``src_path`` on ``src_location`` (PRIMARY) when no valid replica there holds it,
        at that path or as a directory registered above it: data the catalog has not
        seen yet.

        Returns:
            Each destination mapped to the path of the data on it.

        Raises:
            ValueError: If a path is relative.
            TypeError: If a location has the wrong type.
            StreamDataError: As :meth:`transfer_data` (``TransferError`` when some
                destinations failed).
        """
        src_path, dst_path = normalize_path(src_path), normalize_path(dst_path)
        if register_source and self._catalog.covering(src_location, src_path) is None:
            self.register_path(src_location, src_path)
        source, destinations = self._deployments.ends(src_location, src_path, dst_locations)
        self._sync.refresh_and_watch()
        return await self._engine.transfer(
            source, destinations, dst_path, writable=writable, verify=verify
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
        a copy of. ``repair`` copies back (through the same transfers as
        ``transfer_data``) each one with another valid replica in its set, and each one an
        earlier check invalidated there while its former set lives on and nothing else
        took its place; it replaces only what the check found there, else that repair
        fails (``errors``) and the next check tries again. ``verify_content`` also
        compares each file's XXH3-128 digest with the recorded one (recording missing
        ones). ``dry_run`` changes nothing, neither the catalog nor storage: the report
        says what would be invalidated (``missing``) and, with ``repair``, copied back.

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
        self._sync.refresh_and_watch()
        return await run_check(
            self._engine,
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

        ``dst_path`` (default: ``path``) is the exact destination path (no cp rules). A
        destination with nothing there gets a real copy (a transfer, as ``transfer_data``
        makes) from the source the policy picks for its deployment; one holding a valid
        replica of the data (confirmed on storage) is left alone. Any other entry there
        is never removed or overwritten: that destination fails.

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
        self._sync.refresh_and_watch()
        replicas = self.get_data_locations(path)
        return await replicate(self._engine, path, replicas, dst_locations, target)

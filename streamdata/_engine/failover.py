"""Failover: when the source of a transfer fails, the next replica of its data is read.

A transfer reads the replica it was given. If that source fails (its host cannot be
reached, its data is gone, its stream breaks), the destinations it failed are copied
again, from a clean state (their temporaries removed, nothing left at the target), from
the next replica of the same data: the source's replica set (for a path inside a
registered tree, that path inside the tree's other replicas), in the order the source
policy gives, with replicas on locations known to be down (:mod:`.health`) last, the
given source included. Each source is read at most once per call, and a location that
failed is not tried again through another of its replicas.

A destination fails only when every source failed: with the source's own error if
there was one source, else with a :class:`~streamdata.ConnectorError` naming each source
and why, chained to an exception group of their errors. A source whose data is gone is
invalidated, as ever; if the data is gone everywhere, the transfer raises
:class:`~streamdata.DataNotFoundError`, as it does for a single source. Each source read
is an attempt with the events of its own (started, then finished or failed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from .._catalog.mapper import RemotePathMapper, parent_of
from .._errors import ConnectorError, DataNotFoundError, StreamDataError, TransferError
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from ..connectors._base import Connector, Entry
from .health import Health, location_failed
from .run import resolve_source, stat_source
from .transfer import Endpoint

__all__ = ["Copy", "Failures", "Source", "SourceChain"]

Failures = dict[ExecutionLocation, BaseException]


@dataclass(frozen=True, slots=True)
class Source:
    """One source to read: where it is, its replica, and what storage holds there."""

    endpoint: Endpoint
    replica: DataLocation
    entry: Entry


#: Copies a source to destinations; ``failover`` says whether another source remains.
#: Returns the destinations that failed on their own, and those the source failed.
Copy = Callable[[Source, list[ExecutionLocation], bool], Awaitable[tuple[Failures, Failures]]]
#: Orders candidate replicas as the source policy picks them, for a deployment.
Order = Callable[[list[DataLocation], str], list[DataLocation]]


@dataclass(slots=True)
class _Tried:
    """A source that failed, why, and whether the failure was found before copying."""

    location: ExecutionLocation
    path: str
    cause: BaseException
    raised: StreamDataError | None = None  # what looking at it raised


class SourceChain:
    """The sources one transfer may read, tried in order (see the module docstring).

    Args:
        catalog: The replicas.
        connectors: The connectors by deployment name.
        health: What is known of each location's readiness (told what happens).
        order: The source policy's order of candidates.
        first: The source the transfer was given, and its (resolved) replica.
        dst_deployment: The deployment of the first destination (the policy's order).
    """

    def __init__(
        self,
        catalog: RemotePathMapper,
        connectors: Mapping[str, Connector],
        health: Health,
        order: Order,
        first: tuple[Endpoint, DataLocation],
        dst_deployment: str,
    ) -> None:
        self._catalog = catalog
        self._connectors = connectors
        self._health = health
        self._first = first
        self._tried: list[_Tried] = []
        alternatives = self._alternatives(first[1], order, dst_deployment)
        todo = [(first[0].location, first[0].path), *alternatives]
        # Locations known to be down are read last (but read, if nothing else works).
        self._todo = sorted(todo, key=lambda where: health.is_down(where[0]))

    def _alternatives(
        self, source: DataLocation, order: Order, dst_deployment: str
    ) -> list[tuple[ExecutionLocation, str]]:
        """The other replicas of the source's data, in the policy's order."""
        held, inside = self._holder(source)
        candidates = [
            replica
            for replica in self._catalog.replica_set(held)
            if replica is not held
            and replica.data_type is DataType.PRIMARY
            and not replica.implied
            and replica.location.deployment in self._connectors
        ]
        ordered = order(candidates, dst_deployment) if len(candidates) > 1 else candidates
        return [(r.location, normalize_path(r.path + inside)) for r in ordered]

    def _holder(self, source: DataLocation) -> tuple[DataLocation, str]:
        """The replica whose set holds the source's data, and the source's path inside it.

        The source's own replica; for a path inside a registered tree that has no copies
        of its own, the tree's. A link stands for the replica it points to.
        """
        held, inside = source, ""
        if len(self._catalog.replica_set(source)) < 2 and source.path != "/":
            tree = self._catalog.covering(source.location, parent_of(source.path))
            if tree is not None and tree.data_type is not DataType.INVALID:
                held = tree
                inside = source.path if tree.path == "/" else source.path[len(tree.path) :]
        if held.data_type is DataType.SYMBOLIC_LINK:
            held = self._catalog.link_target(held) or held
        return held, inside

    async def run(self, destinations: Sequence[ExecutionLocation], copy: Copy) -> Failures:
        """Copy to every destination from the first source that works for it.

        Returns:
            The destinations that failed, each with its cause.

        Raises:
            DataNotFoundError: If the data turned out to be gone from every source.
            TransferError: If the only source could not be looked at (as ever).
        """
        failures: Failures = {}
        pending, lost = list(destinations), Failures()
        for index, (location, path) in enumerate(self._todo):
            if index and not pending:
                break
            if not self._worth_trying(location, index):
                continue
            source = await self._look(location, path, pending)
            if source is None:
                continue
            more = any(
                where != location and self._worth_trying(where, -1)
                for where, _ in self._todo[index + 1 :]
            )
            own, lost = await copy(source, pending, more)
            failures.update(own)
            if lost:
                self._failed(location, path, next(iter(lost.values())))
            pending = list(lost)
        if pending or (not destinations and self._tried):  # no destination: looked at, as ever
            failures.update(self._exhausted(pending, lost))
        return failures

    def _worth_trying(self, location: ExecutionLocation, index: int) -> bool:
        """False for a location whose host failed already in this call."""
        if index == 0:
            return True
        return not any(t.location == location and location_failed(t.cause) for t in self._tried)

    async def _look(
        self, location: ExecutionLocation, path: str, pending: list[ExecutionLocation]
    ) -> Source | None:
        """The source at ``path`` on ``location``, looked at; None if it failed."""
        endpoint, replica = self._first
        if (location, path) != (endpoint.location, endpoint.path):
            endpoint = Endpoint(self._connectors[location.deployment], location, path)
            try:
                replica = await resolve_source(self._catalog, location, path)
            except DataNotFoundError:
                return None  # no longer a valid replica: not a source to try
        try:
            entry = await stat_source(self._catalog, endpoint.connector, replica, pending)
        except (DataNotFoundError, TransferError) as exc:
            cause = exc if isinstance(exc, DataNotFoundError) else _cause(exc)
            self._failed(location, path, cause, raised=exc)
            return None
        self._health.succeeded(location)
        return Source(endpoint, replica, entry)

    def _failed(
        self,
        location: ExecutionLocation,
        path: str,
        cause: BaseException,
        *,
        raised: StreamDataError | None = None,
    ) -> None:
        self._tried.append(_Tried(location, path, cause, raised))
        self._health.failed(location, cause)

    def _exhausted(self, pending: list[ExecutionLocation], lost: Failures) -> Failures:
        """The failures of ``pending`` destinations, every source having failed.

        Raises:
            DataNotFoundError: If the data is gone from every source.
            TransferError: If the only source could not be looked at (as ever).
        """
        tried = self._tried
        if len(tried) == 1 and tried[0].raised is not None:
            raise tried[0].raised  # one source: what looking at it raised, as ever
        if len(tried) == 1:
            return {destination: lost[destination] for destination in pending}
        details = "; ".join(f"{t.location} {t.path!r}: {t.cause}" for t in tried)
        if all(isinstance(t.cause, DataNotFoundError) for t in tried):
            raise DataNotFoundError(f"the data is gone from every source: {details}")
        cause = ConnectorError(
            f"every source failed: {details}",
            transient=any(location_failed(t.cause) for t in tried),
        )
        cause.__cause__ = ExceptionGroup(
            "the failure of each source", [_exception(t.cause) for t in tried]
        )
        return dict.fromkeys(pending, cause)


def _cause(error: TransferError) -> BaseException:
    """What a transfer error raised before copying says about its source."""
    return next(iter(error.failures.values()), error.__cause__ or error)


def _exception(error: BaseException) -> Exception:
    """``error`` as a member of an exception group (they hold Exceptions)."""
    return error if isinstance(error, Exception) else ConnectorError(str(error))

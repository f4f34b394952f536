"""The transfer engine: the one way the manager copies data, and the state it owns.

Every copy goes through :meth:`Engine.transfer`: ``transfer_data`` (cp rules), and
``replicate`` and repairs (:mod:`.replicate`, exact). It clears the destinations of
temporary files an earlier process left (but those it may resume from: :mod:`.resume`),
resolves the source and looks at its data,
then runs the transfer (:func:`.run.run_attempt`) between a started and a finished or
failed event, taking over copies whose writing process died; if the source fails, the
next replica of the data is read (:mod:`.failover`). The engine owns the in-flight
table and the readiness of locations (:mod:`.health`), and holds the catalog, the
deployments, the event bus and the one source policy (:meth:`Engine.pick_source`) that
the manager wires in.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from .._catalog.mapper import RemotePathMapper
from .._errors import StreamDataError, WriterGone
from .._events import EventBus
from .._models import DataLocation, DataType, ExecutionLocation, normalize_path
from .._policy import SourcePolicy
from .._progress import Progress
from ..connectors._base import Connector, Entry, EntryKind
from .deployments import Deployments
from .failover import Failures, Source, SourceChain
from .health import Health
from .job import InFlight, Options, transfer_error
from .resume import RESUME_MIN
from .routes import Routes
from .run import resolve_source, run_attempt
from .transfer import Endpoint

__all__ = ["Engine"]

#: How many times a transfer takes over copies whose writing process died.
TAKEOVERS = 3

_PRIMARY = DataType.PRIMARY
#: The destinations that failed on their own, and those their source failed.
Lost = tuple[Failures, Failures]


class Engine:
    """Runs every transfer of one :class:`~streamdata.DataManager` (see the module docstring).

    Args:
        catalog: The replicas.
        deployments: The connectors by deployment name.
        policy: Chooses the source of a copy.
        rng: Random generator for the policy's random tier (default: a fresh one).
        verify: Whether copies are verified unless a call says otherwise.

    Attributes:
        events: Where transfers and catalog changes are published (owned here).
        inflight: The links and copies being made (owned here).
        health: What is known of each location's readiness (owned here).
        routes: The route graph: direct or relayed copies between hosts (owned here).
    """

    def __init__(
        self,
        catalog: RemotePathMapper,
        deployments: Deployments,
        *,
        policy: SourcePolicy,
        rng: random.Random | None = None,
        verify: bool = False,
    ) -> None:
        self.catalog = catalog
        self.deployments = deployments
        self.events = EventBus(self._listen_to_catalog)
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self.verify = verify
        self.inflight: InFlight = {}
        self.health = Health()
        self.routes = Routes()

    def _listen_to_catalog(self, active: bool) -> None:
        """Catalog changes are reported only while somebody listens (it costs nothing else)."""
        self.catalog.listen(self.events.replica_changed if active else None)

    @property
    def connectors(self) -> Mapping[str, Connector]:
        """The connectors by deployment name."""
        return self.deployments.connectors

    def pick_source(
        self, replicas: Iterable[DataLocation], dst_deployment: str
    ) -> DataLocation | None:
        """The PRIMARY replica among ``replicas`` the policy picks for ``dst_deployment``.

        Implied ancestors and links are never picked; None if nothing is left to pick.
        """
        return self.choose(
            [r for r in replicas if r.data_type is _PRIMARY and not r.implied], dst_deployment
        )

    def choose(self, candidates: list[DataLocation], dst_deployment: str) -> DataLocation | None:
        """The replica among ``candidates`` (PRIMARY, not implied) the policy picks.

        Replicas on locations known to be down are left out, unless all of them are.
        """
        if not candidates:
            return None
        return self.policy(
            self.health.reachable(candidates),
            dst_deployment=dst_deployment,
            is_local=self.deployments.is_local,
            rng=self.rng,
        )

    def order(self, candidates: list[DataLocation], dst_deployment: str) -> list[DataLocation]:
        """``candidates`` in the order the policy picks them, one after another."""
        left, ordered = list(candidates), []
        while left:
            chosen = self.choose(left, dst_deployment)
            if chosen is None or not any(c is chosen for c in left):
                break  # the policy declines the rest
            ordered.append(chosen)
            left = [c for c in left if c is not chosen]
        return ordered

    def writing(self, location: ExecutionLocation) -> set[str]:
        """The temporary paths this engine's transfers are writing on ``location``."""
        return {job.tmp for job in self.inflight.values() if job.location == location and job.tmp}

    async def transfer(
        self,
        endpoint: Endpoint,
        destinations: Sequence[ExecutionLocation],
        dst_path: str,
        *,
        writable: bool,
        verify: bool | None = None,
        exact: bool = False,
    ) -> dict[ExecutionLocation, str]:
        """Copy ``endpoint``'s data to ``dst_path`` on each destination (checked, distinct).

        The one way data is copied: ``transfer_data``, and with ``exact`` (``dst_path`` is
        the destination itself, no cp rules, always a real copy) ``replicate`` and repairs.
        ``verify`` None: the engine's setting.

        Returns:
            The path where the data is on each destination.

        Raises:
            DataNotFoundError: If the source is not a valid known replica, or its data is gone.
            TransferError: If some destinations failed.
        """
        source = await resolve_source(self.catalog, endpoint.location, endpoint.path)
        check = self.verify if verify is None else verify
        finals: dict[ExecutionLocation, str] = {}

        async def copy(read: Source, todo: list[ExecutionLocation], failover: bool) -> Lost:
            options = Options(writable, exact, check, failover=failover, routes=self.routes)
            return await self._copy_from(read, options, todo, dst_path, finals)

        chain = SourceChain(
            self.catalog,
            self.connectors,
            self.health,
            self.order,
            (endpoint, source),
            destinations[0].deployment if destinations else endpoint.location.deployment,
        )
        failures = await chain.run(destinations, copy)
        if failures:
            raise transfer_error(endpoint.location, endpoint.path, failures)
        return finals

    async def _copy_from(
        self,
        read: Source,
        settings: Options,
        destinations: Sequence[ExecutionLocation],
        dst_path: str,
        finals: dict[ExecutionLocation, str],
    ) -> Lost:
        """Copy from one source, taking over copies whose writing process died.

        Returns:
            The destinations that failed on their own, and those the source failed.
        """
        own: Failures = {}
        lost: Failures = {}
        for attempt in range(TAKEOVERS + 1):
            if not destinations:
                break
            # A dead writer's temporary at a path this copy may write is resumed from
            # (adopted); the others go first: a claim replaces their journal entry.
            adoptable = self._adoptable(
                read.endpoint, read.entry, destinations, dst_path, settings.exact
            )
            await self.remove_stale_temporaries(destinations, keep=adoptable)
            options = replace(settings, failures={}, source_errors=[], adoptable=adoptable)
            failed = await self._attempt(
                read.endpoint, read.replica, read.entry, options, destinations, dst_path, finals
            )
            # A copy this one waited for died with its process: take it over (a new claim).
            last = attempt == TAKEOVERS
            gone = [d for d, cause in failed.items() if isinstance(cause, WriterGone) and not last]
            for destination, cause in failed.items():
                if destination not in gone:
                    (lost if options.from_source(cause) else own)[destination] = cause
            destinations = gone
        return own, lost

    async def _attempt(
        self,
        endpoint: Endpoint,
        source: DataLocation,
        entry: Entry,
        options: Options,
        destinations: Sequence[ExecutionLocation],
        dst_path: str,
        finals: dict[ExecutionLocation, str],
    ) -> dict[ExecutionLocation, BaseException]:
        """One attempt, between its events; adds to ``finals``, returns the failures."""
        report = Progress(
            self.events, endpoint.location, endpoint.path, destinations, dst_path, entry
        )

        async def attempt() -> dict[ExecutionLocation, BaseException]:
            where = await run_attempt(
                self, endpoint, source, entry, options, destinations, dst_path, report.advance
            )
            finals.update(where)
            return options.failures

        return await report.around(attempt())

    def _adoptable(
        self,
        endpoint: Endpoint,
        entry: Entry,
        destinations: Sequence[ExecutionLocation],
        dst_path: str,
        exact: bool,
    ) -> dict[tuple[ExecutionLocation, str], str]:
        """The temporaries dead processes left at the paths this copy may write (cp rules).

        A copy of a big file claiming one of those paths resumes from its temporary
        (:mod:`.resume`); only a durable catalog journals them.
        """
        if not self.catalog.durable or entry.kind is not EntryKind.FILE or entry.size < RESUME_MIN:
            return {}
        paths = {dst_path}
        if not exact:
            paths.add(normalize_path(posixpath.join(dst_path, posixpath.basename(endpoint.path))))
        wanted = set(destinations)
        return {
            (location, path): tmp
            for location, tmp, path in self.catalog.stale_temporaries()
            if location in wanted and path in paths
        }

    async def remove_stale_temporaries(
        self,
        locations: Iterable[ExecutionLocation],
        keep: Mapping[tuple[ExecutionLocation, str], str] | None = None,
    ) -> None:
        """Remove temporary files of transfers interrupted in an earlier process.

        Done when a location is next used (connections are lazy); an unreachable location
        keeps its entries for a later attempt. Those in ``keep`` (by destination and
        final path) stay: the transfer resumes from them.
        """
        catalog = self.catalog
        wanted = set(locations)
        for location, tmp, path in catalog.stale_temporaries():
            if location not in wanted or location.deployment not in self.connectors:
                continue
            if keep and keep.get((location, path)) == tmp:
                continue
            try:
                await self.connectors[location.deployment].remove(location, tmp)
            except StreamDataError:
                continue
            catalog.forget_temporary(location, tmp)

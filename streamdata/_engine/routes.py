"""Routes between sites: direct host to host, or relayed through this process, by cost.

Where a connector says a host can send straight to another (an SSH host's ``routes``),
a copy between them may take either of two paths: the *direct* one (the source host
pipes the data to the destination itself) or the *relay* (read here, written there,
with the parallel channels the connector uses far away). Which is cheaper depends on the
links: two login nodes of one site are close to each other and far from a laptop; two
sites far apart may both be close to the machine running the workflow.

:class:`Routes`, owned by the engine, keeps the sites as a graph (``networkx``): a node
per location and one for this process (:data:`HERE`), an edge per measured link
(:class:`RouteLink`: the seconds before data flows, and the bytes per second of one
stream). A link is measured by the connector (:class:`LinkMeter`) the first time a
transfer needs it, by moving :data:`PROBE_BYTES` over it once. A measurement is kept
:attr:`Routes.max_age` seconds, then taken again. A path's cost for ``size`` bytes is
the sum of its links' latencies plus ``size`` over its slowest link's rate (a relay is
pipelined, so its legs overlap); the cheaper path is taken (:class:`Route`). A link
that could not be measured, or a route that failed, costs infinity until its
measurement is taken again. A connector that cannot measure its links keeps the direct
route, as without measurements.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import networkx as nx

from .._errors import StreamDataError
from .._models import ExecutionLocation

__all__ = [
    "HERE",
    "MEASURE_MIN",
    "PROBE_BYTES",
    "TREE_BYTES",
    "LinkMeter",
    "Route",
    "RouteLink",
    "Routes",
]

logger = logging.getLogger("streamdata")

#: The graph node of this process (the relay).
HERE = "this process"
#: Bytes moved to measure a link.
PROBE_BYTES = 8 << 20
#: Seconds a measurement is kept by default.
MAX_AGE = 300.0
#: Seconds one link's measurement may take; longer is a failed link.
MEASURE_TIMEOUT = 20.0
#: Bytes a tree counts as (its size is not known before it is copied): rates weigh
#: more than latencies.
TREE_BYTES = 256 << 20
#: From this size on, a link's parallel streams count (smaller moves use one stream).
PARALLEL_MIN = 8 << 20
#: A smaller copy does not pay for measuring links (three probes of PROBE_BYTES): it
#: uses fresh measurements if there are, else takes the route (relayed if known broken).
MEASURE_MIN = PROBE_BYTES

#: One end of a link: a location, or None for this process.
End = ExecutionLocation | None
#: How a pair of hosts is told to copy: "direct", "relay", or None (by cost).
RouteMode = Literal["direct", "relay"] | None


@runtime_checkable
class LinkMeter(Protocol):
    """A connector that can measure its links (the SSH connector)."""

    async def measure_link(self, source: End, target: End, size: int) -> tuple[float, float, int]:
        """Move ``size`` bytes from ``source`` to ``target`` (None: this process).

        Returns:
            The seconds before data flows, the bytes per second one stream carries,
            and the most streams a big transfer over that link uses at once.

        Raises:
            ConnectorError: If the link does not work.
        """


@dataclass(frozen=True, slots=True)
class RouteLink:
    """One measured link of the route graph (see :attr:`DataManager.routes`).

    Attributes:
        source: Where the data leaves: a location, or None for this process.
        target: Where it arrives: a location, or None for this process.
        latency: Seconds before data flows (a command start; for a direct route, also
            the route's own login to the destination).
        rate: Bytes per second one stream carries.
        streams: Streams a big transfer over the link uses at once (parallel channels).
        measured_at: When it was measured (seconds since the epoch).
        error: Why the link does not work (it costs infinity), else None.
    """

    __module__ = "streamdata"

    source: ExecutionLocation | None
    target: ExecutionLocation | None
    latency: float
    rate: float
    streams: int
    measured_at: float
    error: str | None = None

    def seconds(self, size: int) -> float:
        """The time this link alone would take to move ``size`` bytes (infinity if broken)."""
        if self.error is not None:
            return math.inf
        return self.latency + size / self.rate_for(size)

    def rate_for(self, size: int) -> float:
        """Bytes per second for a move of ``size`` bytes (parallel streams if big)."""
        return self.rate * (self.streams if size >= PARALLEL_MIN else 1)


@dataclass(frozen=True, slots=True)
class Route:
    """How a copy between two hosts goes (see :attr:`DataManager.routes`).

    Attributes:
        source: The source location.
        target: The destination location.
        direct: True: host to host over the route; False: relayed through this process.
        seconds: The estimated time of the path taken (None: not measured).
        other_seconds: The estimated time of the other path (None: not measured).
        reason: Why: ``"cheaper"``, ``"forced"``, ``"not measured"`` (no measurement,
            or a copy too small to measure for), ``"the direct route is known broken"``,
            or ``"the direct route failed: ..."`` when the route broke before any data
            was written and the copy was relayed instead.
        size: The bytes the estimate was made for.
    """

    __module__ = "streamdata"

    source: ExecutionLocation
    target: ExecutionLocation
    direct: bool
    seconds: float | None
    other_seconds: float | None
    reason: str
    size: int

    @property
    def path(self) -> tuple[str, ...]:
        """The nodes the data passes: ``(source, target)`` or ``(source, HERE, target)``."""
        ends = (str(self.source), str(self.target))
        return ends if self.direct else (ends[0], HERE, ends[1])


class Routes:
    """The route graph of one manager, its measurements and its choices.

    Reached as :attr:`DataManager.routes`. Measurements are made by the transfers that
    need them, or by :meth:`choose`.

    Args:
        max_age: Seconds a link's measurement is kept before it is taken again.
        clock: Seconds since the epoch (for tests).

    Raises:
        ValueError: If ``max_age`` is negative.
    """

    __module__ = "streamdata"

    def __init__(self, *, max_age: float = MAX_AGE, clock: Callable[[], float] = time.time) -> None:
        if not max_age >= 0:
            raise ValueError(f"max_age must be a number of seconds >= 0, not {max_age!r}")
        #: Seconds a link's measurement is kept before it is taken again.
        self.max_age = max_age
        self._clock = clock
        self._graph: nx.DiGraph[ExecutionLocation | str] = nx.DiGraph()
        self._modes: dict[tuple[ExecutionLocation, ExecutionLocation], RouteMode] = {}
        self._last: dict[tuple[ExecutionLocation, ExecutionLocation], Route] = {}
        self._locks: dict[tuple[End, End], asyncio.Lock] = {}

    def force(self, source: ExecutionLocation, target: ExecutionLocation, mode: RouteMode) -> None:
        """Make copies from ``source`` to ``target`` go one way, whatever the cost.

        Args:
            source: The source host's location.
            target: The destination host's location.
            mode: ``"direct"`` (the route, still relayed if it fails before writing
                anything), ``"relay"`` (through this process), or None (by cost again).

        Raises:
            ValueError: If ``mode`` is none of those.
        """
        if mode not in ("direct", "relay", None):
            raise ValueError(f"mode must be 'direct', 'relay' or None, not {mode!r}")
        if mode is None:
            self._modes.pop((source, target), None)
        else:
            self._modes[(source, target)] = mode

    def last(self, source: ExecutionLocation, target: ExecutionLocation) -> Route | None:
        """The route the last copy from ``source`` to ``target`` took (None: none yet)."""
        return self._last.get((source, target))

    def links(self) -> list[RouteLink]:
        """Every link measured so far (the edges of the graph), oldest first."""
        found = [data["link"] for _, _, data in self._graph.edges(data=True)]
        return sorted(found, key=lambda link: link.measured_at)

    def graph(self) -> nx.DiGraph[ExecutionLocation | str]:
        """A copy of the route graph: locations and :data:`HERE` as nodes, each edge's
        ``link`` attribute its :class:`RouteLink`."""
        return self._graph.copy()

    async def choose(
        self, connector: object, source: ExecutionLocation, target: ExecutionLocation, size: int
    ) -> Route:
        """The route a copy of ``size`` bytes from ``source`` to ``target`` would take.

        Links not measured, or measured longer than :attr:`max_age` ago, are measured
        first (one at a time: measurements at once would slow each other down), unless
        the copy is smaller than :data:`MEASURE_MIN`: it then takes the route as it is
        (relayed if the route is known broken), not worth three probes.

        Args:
            connector: The connector of both hosts; one that cannot measure its links
                (:class:`LinkMeter`, as the SSH connector does) keeps the direct route.
            source: The source host's location.
            target: The destination host's location.
            size: Bytes to move.

        Returns:
            The route, also remembered as :meth:`last` for the pair.
        """
        mode = self._modes.get((source, target))
        if mode is not None:
            return self._remember(
                Route(source, target, mode == "direct", None, None, "forced", size)
            )
        if not isinstance(connector, LinkMeter):
            return self._remember(Route(source, target, True, None, None, "not measured", size))
        links = ((source, target), (source, None), (None, target))
        if size < MEASURE_MIN and not all(self._fresh(*ends) for ends in links):
            broken = self._fresh(source, target) and self._broken(source, target)
            reason = "the direct route is known broken" if broken else "not measured"
            return self._remember(Route(source, target, not broken, None, None, reason, size))
        for ends in links:
            await self._measured(connector, *ends)
        direct = self._cost([source, target], size)
        relay = self._cost([source, HERE, target], size)
        if math.isinf(direct) and math.isinf(relay):  # both broken: try the route, as before
            return self._remember(Route(source, target, True, None, None, "not measured", size))
        chosen, other = (direct, relay) if direct <= relay else (relay, direct)
        route = Route(source, target, direct <= relay, chosen, _finite(other), "cheaper", size)
        logger.info(
            "route %s -> %s: %s (%.3f s, the other way %.3f s)",
            source,
            target,
            "direct" if route.direct else "relayed",
            chosen,
            other,
        )
        return self._remember(route)

    def route_failed(self, route: Route, error: BaseException) -> Route:
        """A direct route broke before writing anything: it costs infinity until re-measured.

        Returns:
            The route taken instead (relayed), remembered as :meth:`last`.
        """
        link = RouteLink(route.source, route.target, math.inf, 0.0, 1, self._clock(), str(error))
        self._add(link)
        relayed = Route(
            route.source,
            route.target,
            False,
            None,
            route.seconds,
            f"the direct route failed: {error}",
            route.size,
        )
        return self._remember(relayed)

    def _remember(self, route: Route) -> Route:
        self._last[(route.source, route.target)] = route
        return route

    def _cost(self, path: list[ExecutionLocation | str], size: int) -> float:
        """Latencies summed, plus ``size`` over the slowest link's rate (infinity if cut)."""
        links: list[RouteLink] = []
        for a, b in itertools.pairwise(path):
            data = self._graph.get_edge_data(a, b)
            if data is None:
                return math.inf
            links.append(data["link"])
        if any(link.error is not None for link in links):
            return math.inf
        slowest = min(link.rate_for(size) for link in links)
        return sum(link.latency for link in links) + size / slowest

    def _broken(self, source: End, target: End) -> bool:
        data = self._graph.get_edge_data(_node(source), _node(target))
        return data is not None and data["link"].error is not None

    def _fresh(self, source: End, target: End) -> bool:
        data = self._graph.get_edge_data(_node(source), _node(target))
        return data is not None and self._clock() - data["link"].measured_at < self.max_age

    async def _measured(self, meter: LinkMeter, source: End, target: End) -> None:
        """Measure the link unless a fresh measurement is known (one at a time per link)."""
        if self._fresh(source, target):
            return
        lock = self._locks.setdefault((source, target), asyncio.Lock())
        async with lock:
            if not self._fresh(source, target):
                self._add(await self._measure(meter, source, target))

    async def _measure(self, meter: LinkMeter, source: End, target: End) -> RouteLink:
        """Move :data:`PROBE_BYTES` over the link: its latency and rate."""
        try:
            async with asyncio.timeout(MEASURE_TIMEOUT):
                latency, rate, streams = await meter.measure_link(source, target, PROBE_BYTES)
        except (StreamDataError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {MEASURE_TIMEOUT:g} s"
            logger.info("link %s -> %s does not work: %s", source, target, reason)
            return RouteLink(source, target, math.inf, 0.0, 1, self._clock(), reason)
        return RouteLink(source, target, latency, rate, max(1, streams), self._clock())

    def _add(self, link: RouteLink) -> None:
        self._graph.add_edge(_node(link.source), _node(link.target), link=link)


def _node(end: End) -> ExecutionLocation | str:
    return HERE if end is None else end


def _finite(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds

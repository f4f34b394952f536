"""The readiness methods of :class:`~streamdata.DataManager`, kept here to keep it small.

:class:`Probing` is a base class of the manager: it asks locations whether they answer
(:func:`.health.probe_location`) and remembers the answers in the engine's
:class:`~.health.Health`, which source selection consults. It also shows the engine's
route graph (:attr:`Probing.routes`, :mod:`.routes`): what links between locations cost.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import overload

from .._errors import ConfigurationError
from .._models import ExecutionLocation
from .deployments import Deployments, check_location
from .engine import Engine
from .health import PROBE_TIMEOUT, Readiness, probe_location
from .routes import Routes

__all__ = ["Probing"]


class Probing:
    """What :class:`~streamdata.DataManager` knows of the readiness of its locations."""

    _engine: Engine
    _deployments: Deployments

    @property
    def routes(self) -> Routes:
        """How copies between two hosts go: host to host, or relayed here, by measured cost.

        Where a host can send to another directly (``SSHHost.routes``), each copy takes
        the cheaper way for its size: the route, or a relay through this process. The
        links are measured the first time a copy needs them and again once older than
        ``routes.max_age`` seconds. ``routes.last(source, target)`` is the :class:`Route`
        the last copy took (and why), ``routes.links()`` the measured links,
        ``routes.force(source, target, "direct" | "relay" | None)`` overrides the choice.
        """
        return self._engine.routes

    @overload
    async def probe(
        self,
        target: ExecutionLocation,
        *,
        timeout: float = ...,  # noqa: ASYNC109 -- see probe below
        max_age: float = ...,
    ) -> Readiness: ...

    @overload
    async def probe(
        self,
        target: str,
        *,
        timeout: float = ...,  # noqa: ASYNC109 -- see probe below
        max_age: float = ...,
    ) -> list[Readiness]: ...

    async def probe(
        self,
        target: ExecutionLocation | str,
        *,
        timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109 -- running out of time is an answer
        max_age: float = 0.0,
    ) -> Readiness | list[Readiness]:
        """Ask a location (or every location of a deployment) whether it answers.

        A probe connects if needed and times one request (a ``stat`` of ``/``): the
        location is ``up``, with that round trip, or ``down``, with the reason (refused,
        unreachable, refused login, or no answer within ``timeout``). The answer is
        remembered: transfers skip a location found down as a source for a while, when
        another replica of the data is on a location not known to be down; transfers
        keep it up to date too. An answer is never slower than ``timeout``.

        Args:
            target: A location; or a deployment name, meaning every location of it that
                its connector names (an SSH connector's hosts) or the catalog holds
                replicas on, probed at once.
            timeout: Seconds to wait for an answer.
            max_age: Seconds an answer already known (from a probe or a transfer) stays
                good enough: if the last one is younger, it is returned without asking.

        Returns:
            The location's :class:`Readiness`; for a deployment, one per location,
            sorted by location name.

        Raises:
            TypeError: If ``target`` is neither a location nor a deployment name.
            ValueError: If ``timeout`` is not positive.
            ConfigurationError: If the manager is closed or the deployment is unknown.
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if isinstance(target, str):
            locations = self._locations_of(target)
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._probe(loc, timeout, max_age)) for loc in locations]
            return [task.result() for task in tasks]
        check_location(target)
        return await self._probe(target, timeout, max_age)

    async def _probe(
        self, location: ExecutionLocation, seconds: float, max_age: float
    ) -> Readiness:
        """Probe ``location`` for up to ``seconds``, unless an answer younger than ``max_age``."""
        health = self._engine.health
        known = health.readiness(location)
        if known.checked_at is not None and time.time() - known.checked_at < max_age:
            return known
        answer = await probe_location(self._deployments.connector(location), location, seconds)
        health.record(answer)
        return answer

    def _locations_of(self, deployment: str) -> list[ExecutionLocation]:
        """The locations of ``deployment`` its connector names or the catalog holds, sorted.

        Raises:
            ConfigurationError: If the manager is closed or the deployment is unknown.
        """
        self._deployments.ensure_open()
        connector = self._deployments.connectors.get(deployment)
        if connector is None:
            raise ConfigurationError(f"unknown deployment {deployment!r}")
        local = connector.is_local
        names = dict.fromkeys(connector.location_names())
        known = {r.location for r in self._engine.catalog if r.location.deployment == deployment}
        found = [ExecutionLocation(name, deployment, local=local) for name in names]
        found += [location for location in known if location.name not in names]
        return sorted(found, key=lambda location: location.name)

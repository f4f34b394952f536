"""Readiness of locations: a probe with a short timeout, and a circuit breaker for sources.

:func:`probe_location` asks a location for one ``stat`` of ``/`` (connecting first if
needed), then times a second one: the round trip. No answer within the timeout is
*down*, as is any error reaching the location.

:class:`Health`, owned by the engine, remembers the last answer for each location, from
probes and from transfers: a source whose connection was lost or refused is *down*.
A location found down is skipped as a source for :data:`DOWN_FOR` seconds (the breaker
is open), then may be read again (half-open): a success closes the breaker, another
failure opens it again. Skipping never makes a transfer fail that could have
succeeded: when every candidate is down, they are all kept.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .._errors import ConnectorError, StreamDataError
from .._models import DataLocation, ExecutionLocation
from ..connectors._base import Connector

__all__ = [
    "DOWN_FOR",
    "PROBE_TIMEOUT",
    "Health",
    "Readiness",
    "ReadinessState",
    "location_failed",
    "probe_location",
]

#: Seconds a probe waits for an answer by default.
PROBE_TIMEOUT = 3.0
#: Seconds a location found down is skipped as a source before it is tried again.
DOWN_FOR = 30.0

_T = TypeVar("_T", bound=DataLocation)


class ReadinessState(enum.Enum):
    """Whether a location answers: ``up``, ``down``, or ``unknown`` (never checked)."""

    __module__ = "streamdata"

    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Readiness:
    """What is known of one location's readiness (see :meth:`DataManager.probe`).

    Attributes:
        location: The location.
        state: UP if it answered, DOWN if it could not be reached or did not answer in
            time, UNKNOWN if it was never checked.
        round_trip: Seconds one request took once connected (probes only), else None.
        error: Why it is down, else None.
        checked_at: When this was learnt (seconds since the epoch), None if never.
    """

    __module__ = "streamdata"

    location: ExecutionLocation
    state: ReadinessState
    round_trip: float | None = None
    error: str | None = None
    checked_at: float | None = None


def location_failed(error: BaseException) -> bool:
    """True when ``error`` says the location itself failed (lost, refused, timed out)."""
    return isinstance(error, ConnectorError) and error.transient


async def probe_location(
    connector: Connector,
    location: ExecutionLocation,
    seconds: float,
) -> Readiness:
    """Ask ``location`` whether it answers, within ``seconds``.

    Returns:
        UP with the round trip of one request, or DOWN with the reason.
    """
    try:
        async with asyncio.timeout(seconds):
            await connector.stat(location, "/")  # connects first if needed
            sent = time.monotonic()
            await connector.stat(location, "/")
            round_trip = time.monotonic() - sent
    except TimeoutError:
        reason = f"no answer within {seconds:g} s"
        return Readiness(location, ReadinessState.DOWN, None, reason, time.time())
    except StreamDataError as exc:
        return Readiness(location, ReadinessState.DOWN, None, str(exc), time.time())
    return Readiness(location, ReadinessState.UP, round_trip, None, time.time())


class Health:
    """The last known readiness of each location, and which are skipped as sources.

    Args:
        down_for: Seconds a location found down is skipped as a source.
        clock: Monotonic seconds (for tests).
    """

    def __init__(
        self, *, down_for: float = DOWN_FOR, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.down_for = down_for
        self._clock = clock
        self._known: dict[ExecutionLocation, Readiness] = {}
        self._open_until: dict[ExecutionLocation, float] = {}

    def readiness(self, location: ExecutionLocation) -> Readiness:
        """The last answer about ``location`` (UNKNOWN if none)."""
        return self._known.get(location) or Readiness(location, ReadinessState.UNKNOWN)

    def record(self, readiness: Readiness) -> None:
        """Remember an answer: DOWN opens the breaker of its location, UP closes it."""
        location = readiness.location
        self._known[location] = readiness
        if readiness.state is ReadinessState.DOWN:
            self._open_until[location] = self._clock() + self.down_for
        else:
            self._open_until.pop(location, None)

    def succeeded(self, location: ExecutionLocation) -> None:
        """A transfer reached ``location``: it is up (recorded only when that is news)."""
        known = self._known.get(location)
        if known is None or known.state is not ReadinessState.UP:
            self.record(Readiness(location, ReadinessState.UP, None, None, time.time()))

    def failed(self, location: ExecutionLocation, error: BaseException) -> None:
        """A transfer could not use ``location``: down, if the location itself failed."""
        if location_failed(error):
            self.record(Readiness(location, ReadinessState.DOWN, None, str(error), time.time()))

    def is_down(self, location: ExecutionLocation) -> bool:
        """True while ``location`` is skipped (found down less than ``down_for`` ago)."""
        until = self._open_until.get(location)
        return until is not None and self._clock() < until

    def reachable(self, candidates: Sequence[_T]) -> Sequence[_T]:
        """``candidates`` but those on locations skipped now; all of them if all are."""
        if not self._open_until:
            return candidates
        kept = [c for c in candidates if not self.is_down(c.location)]
        return kept or candidates

"""What one transfer works on: its destinations (jobs), its options and the engine's state.

A transfer is planned (:mod:`.plan`), moved (:mod:`.move`, :mod:`.verify`) and settled
(:mod:`.settle`) by :func:`.run.run_attempt`; each of those sees the state the
:class:`~.engine.Engine` owns through :class:`EngineState` (the engine is below none of
them, so they name only what they use of it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .._catalog.mapper import RemotePathMapper
from .._errors import TransferError, WriterGone
from .._models import DataLocation, ExecutionLocation
from ..connectors._base import Connector
from .routes import Routes

__all__ = [
    "EngineState",
    "HandedOver",
    "InFlight",
    "Job",
    "JobKind",
    "Options",
    "transfer_error",
]


class JobKind(enum.Enum):
    """What a destination needs."""

    NOTHING = "nothing"  # the data already is there
    WAIT = "wait"  # an identical transfer is producing it, or it is there already
    LINK = "link"  # a symbolic link to a replica on the same location
    COPY = "copy"  # a real copy


@dataclass(slots=True)
class Job:
    """One destination of a transfer: where it goes and how far it got."""

    location: ExecutionLocation
    connector: Connector
    final: str
    kind: JobKind = JobKind.NOTHING
    replica: DataLocation | None = None
    link_to: DataLocation | None = None
    tmp: str | None = None
    settled: bool = False
    left_behind: bool = False  # its temporary could not be removed
    elsewhere: bool = False  # waits for a copy another process is writing
    adopt: str | None = None  # a temporary a dead process left here, to resume from


#: The links and copies being made, by (destination, final path): how concurrent
#: identical transfers find each other.
InFlight = dict[tuple[ExecutionLocation, str], Job]


class EngineState(Protocol):
    """The state a transfer uses, owned by the :class:`~.engine.Engine` that runs it."""

    @property
    def catalog(self) -> RemotePathMapper:
        """The replicas."""

    @property
    def connectors(self) -> Mapping[str, Connector]:
        """The connectors by deployment name."""

    @property
    def inflight(self) -> InFlight:
        """The links and copies being made."""


@dataclass(slots=True)
class Options:
    """How one transfer copies, and the destinations that failed so far.

    ``failover``: another source will be read if this one fails (:mod:`.failover`), so a
    destination its source failed is not copied again from it. ``source_errors``: the
    errors of this attempt's source reads (a destination's failure caused by one of them
    is the source's, see :meth:`from_source`).
    """

    writable: bool = False
    exact: bool = False  # replicate/repair: the destination path is exact, always a copy
    verify: bool = False
    failures: dict[ExecutionLocation, BaseException] = field(default_factory=dict)
    failover: bool = False
    source_errors: list[BaseException] = field(default_factory=list)
    #: Temporaries dead processes left, by (destination, final path): to resume from.
    adoptable: Mapping[tuple[ExecutionLocation, str], str] = field(default_factory=dict)
    #: Chooses direct routes or relays between hosts (the engine's), None: always direct.
    routes: Routes | None = None

    def from_source(self, error: BaseException | None) -> bool:
        """True when ``error`` is (or was caused by) an error of the source's read."""
        seen = 0
        while error is not None and seen < 16:  # the chain of causes, bounded
            if any(error is known for known in self.source_errors):
                return True
            error, seen = error.__cause__ or error.__context__, seen + 1
        return False

    def handed_over(self, error: BaseException | None) -> bool:
        """True when a destination failed by ``error`` will be copied from another source."""
        return self.failover and self.from_source(error)


class HandedOver(WriterGone):
    """The transfer writing a replica goes on from another source (internal).

    Its destination failed because its source did; a transfer waiting for that replica
    takes the copy over, as when the writing process died, instead of failing.
    """


def transfer_error(
    location: ExecutionLocation, path: str, failures: Mapping[ExecutionLocation, BaseException]
) -> TransferError:
    """The error ``transfer_data`` raises for ``failures``."""
    details = "; ".join(f"{where}: {cause}" for where, cause in failures.items())
    count = len(failures)
    return TransferError(
        f"transfer of {path!r} from {location} failed for {count} destination(s): {details}",
        failures,
    )

"""The per-destination state of one transfer call (owned by that call only)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._models import DataLocation, ExecutionLocation
from .connectors._base import Connector

__all__ = ["Job", "JobKind"]


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

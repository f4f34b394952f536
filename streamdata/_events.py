"""Events: what the DataManager does, for progress displays, logs and engines.

The manager publishes :class:`TransferEvent` and :class:`ReplicaEvent` values to every
subscriber. A subscriber is either a plain callback (called synchronously, in the event
loop, so it must be quick) or an async iterator from :meth:`DataManager.events`, whose
queue is bounded: a consumer that falls behind loses *progress* events (counted in
``dropped``), never ``started``/``finished``/``failed`` or catalog events.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ._models import DataLocation, ExecutionLocation

__all__ = ["Event", "EventBus", "EventKind", "ReplicaEvent", "TransferEvent"]

logger = logging.getLogger("streamdata")


class EventKind(enum.Enum):
    """What happened."""

    __module__ = "streamdata"

    TRANSFER_STARTED = "transfer_started"
    TRANSFER_PROGRESS = "transfer_progress"
    TRANSFER_FINISHED = "transfer_finished"
    TRANSFER_FAILED = "transfer_failed"
    REPLICA_REGISTERED = "replica_registered"
    REPLICA_INVALIDATED = "replica_invalidated"


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """A step of one transfer (one ``transfer_data`` call, all its destinations).

    Attributes:
        kind: TRANSFER_STARTED, TRANSFER_PROGRESS, TRANSFER_FINISHED or TRANSFER_FAILED.
        transfer_id: Identifies the transfer across its events.
        source: Where the data is read.
        src_path: The source path.
        destinations: Where the data goes.
        dst_path: The requested destination path.
        bytes_done: Bytes read from the source so far (monotonic).
        bytes_total: Size of the data when known (files: their size; trees: the sum of
            their files' sizes once known, else None).
        files_done: Files moved so far (monotonic): a file counts once all its data has
            passed. A tree's files are counted in its stream as they go by; a tree
            copied without passing through this process (on its own filesystem, or over
            a direct route) reports none.
        files_total: How many files, when known: 1 for a file; for a tree, None until it
            is finished, then the files counted (still None if it was copied, linked or
            waited for unseen, or its stream could not be counted).
        error: The cause, for TRANSFER_FAILED.
    """

    kind: EventKind
    transfer_id: int
    source: ExecutionLocation
    src_path: str
    destinations: tuple[ExecutionLocation, ...]
    dst_path: str
    bytes_done: int = 0
    bytes_total: int | None = None
    files_done: int = 0
    files_total: int | None = None
    error: BaseException | None = None


TransferEvent.__module__ = "streamdata"


@dataclass(frozen=True, slots=True)
class ReplicaEvent:
    """A catalog change.

    Attributes:
        kind: REPLICA_REGISTERED or REPLICA_INVALIDATED.
        replica: The replica concerned.
    """

    kind: EventKind
    replica: DataLocation


ReplicaEvent.__module__ = "streamdata"


Event = TransferEvent | ReplicaEvent
_ESSENTIAL = frozenset(EventKind) - {EventKind.TRANSFER_PROGRESS}


class _Subscription:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            if event.kind not in _ESSENTIAL:
                self.dropped += 1
                return
            self._make_room()
            self.queue.put_nowait(event)

    def _make_room(self) -> None:
        kept = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item.kind in _ESSENTIAL:
                kept.append(item)
            else:
                self.dropped += 1
        for item in kept[-(self.queue.maxsize - 1) :]:
            self.queue.put_nowait(item)


class EventBus:
    """Fans events out to callbacks and async subscribers (owned by one DataManager)."""

    def __init__(self, on_active: Callable[[bool], None] = lambda active: None) -> None:
        self._callbacks: list[Callable[[Event], None]] = []
        self._subscriptions: list[_Subscription] = []
        self._next_id = 0
        self._on_active = on_active  # told when the first listener comes or the last goes

    @property
    def active(self) -> bool:
        """True when somebody listens (events are not even built otherwise)."""
        return bool(self._callbacks or self._subscriptions)

    def new_transfer_id(self) -> int:
        """A fresh identifier for a transfer."""
        self._next_id += 1
        return self._next_id

    def add_callback(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` for every event; returns a function that unsubscribes."""
        self._callbacks.append(callback)
        self._on_active(True)

        def remove() -> None:
            self._callbacks.remove(callback)
            self._on_active(self.active)

        return remove

    async def subscribe(self, size: int) -> AsyncIterator[Event]:
        """Yield events as they come, until the consumer stops iterating."""
        subscription = _Subscription(size)
        self._subscriptions.append(subscription)
        self._on_active(True)
        try:
            while True:
                yield await subscription.queue.get()
        finally:
            self._subscriptions.remove(subscription)
            self._on_active(self.active)

    def replica_changed(self, invalidated: bool, replica: DataLocation) -> None:
        """Publish a catalog change (the catalog's listener while somebody listens)."""
        kind = EventKind.REPLICA_INVALIDATED if invalidated else EventKind.REPLICA_REGISTERED
        self.publish(ReplicaEvent(kind, replica))

    def publish(self, event: Event) -> None:
        """Deliver ``event``; a failing callback is logged, never propagated."""
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                logger.exception("event callback %r failed", callback)
        for subscription in self._subscriptions:
            subscription.offer(event)

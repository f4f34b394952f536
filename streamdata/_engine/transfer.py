"""Moving bytes: one source to several destinations, each written atomically.

Every destination is written under a temporary name unique to the transfer, in the
destination's own directory (so concurrent transfers to locations sharing a filesystem
never collide), then renamed into place. Destinations on the source's filesystem get a
connector-side ``copy``; those the source's host reaches itself (a route configured on
the connector) get a connector-side ``send``, the bytes never passing through this
process, when that is cheaper than relaying them (:mod:`.routes`; a route that fails
before writing anything is relayed after all); the others share one read of the
source, fanned out through bounded queues so a slow destination holds back at most
``_QUEUE_CHUNKS`` chunks before it slows the reader (back-pressure), and a failing
destination is dropped without disturbing the others.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .._errors import ConnectorError, StreamDataError
from .._integrity import Hasher
from .._models import ExecutionLocation
from ..connectors._base import Connector, Entry, EntryKind
from ..connectors._tar.count import TarFileCounter
from .routes import TREE_BYTES, Route, Routes

__all__ = ["Endpoint", "copy_to_all", "remove_quietly", "temporary_path"]

logger = logging.getLogger("streamdata")

_QUEUE_CHUNKS = 16
#: A queue item: a chunk, the source's error, or None for the end of the stream.
_Item = bytes | BaseException | None
#: Receives each chunk read from the source, in order.
_ChunkSink = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A path on a location, with the connector that reaches it."""

    connector: Connector
    location: ExecutionLocation
    path: str

    @property
    def filesystem(self) -> Hashable:
        """The filesystem key of the endpoint's location."""
        return self.connector.filesystem(self.location)


def temporary_path(final_path: str) -> str:
    """A name next to ``final_path`` that no other transfer uses."""
    directory = posixpath.dirname(final_path)
    return posixpath.join(directory, f".streamdata-tmp-{uuid.uuid4().hex}")


async def remove_quietly(endpoint: Endpoint) -> bool:
    """Best-effort removal of a temporary path, safe to call while being cancelled.

    Returns:
        False if it could not be removed (e.g. the connection is gone).
    """
    try:
        await asyncio.shield(endpoint.connector.remove(endpoint.location, endpoint.path))
    except (StreamDataError, OSError):
        return False
    return True


async def copy_to_all(
    source: Endpoint,
    entry: Entry,
    targets: Sequence[Endpoint],
    on_progress: Callable[[int, int | None], None] = lambda done, files: None,
    on_source_error: Callable[[BaseException], None] = lambda error: None,
    *,
    routes: Routes | None = None,
    on_read_end: Callable[[], None] = lambda: None,
) -> tuple[list[BaseException | None], str | None]:
    """Copy ``source`` to every target path (which must not exist yet).

    ``on_progress`` is called with the bytes of each chunk the source stream delivers
    and the files of a tree completed so far in it (None once its tar counter gave up);
    and with the entry's size (files: None) when a same-filesystem copy or a direct
    send completes. ``on_source_error`` is told the error of a source stream that broke
    while a destination still took it (the failures it caused are chained to it). A
    target the source's host can send to directly goes the way ``routes`` chooses
    (direct when None); a direct send that fails before writing is relayed.
    ``on_read_end``: called once the source was read to its end, if every target is
    streamed (the destinations may still be writing then).

    Returns:
        For each target, None on success or the exception that made it fail; and the
        XXH3-128 digest of a file that was streamed (hashed as it was read), else None.
        Cancellation propagates; nothing is cleaned up here (the caller removes targets).
    """
    results: list[BaseException | None] = [None] * len(targets)
    hasher = Hasher() if entry.kind is EntryKind.FILE else None
    ways = [await _way(source, target, entry, routes) for target in targets]
    streamed = [index for index, way in enumerate(ways) if way is None]
    async with asyncio.TaskGroup() as group:
        for index, (target, way) in enumerate(zip(targets, ways, strict=True)):
            if way == _SAME_FILESYSTEM:
                copy = _copy_same_filesystem(source, target, entry, on_progress)
            elif isinstance(way, Route):
                send = _Send(source, target, entry, routes, on_progress, on_source_error)
                copy = send.run(way)
            else:
                continue
            group.create_task(_capture(results, index, copy))
        if streamed:
            streams = [targets[i] for i in streamed]
            progress = _hashing(hasher, _counter(entry), on_progress)
            ended = on_read_end if len(streams) == len(targets) else _nothing
            args = (streams, streamed, results, progress, on_source_error, ended)
            group.create_task(_stream(source, entry, *args))
    # The file's digest only if its read completed: then a streamed destination succeeded.
    whole = hasher is not None and any(results[i] is None for i in streamed)
    return results, hasher.hexdigest() if whole and hasher is not None else None


#: How a target is copied: on its filesystem, over a direct route (which may fall back
#: to a relay), or None: in the shared stream through this process.
_Way = Literal["same-filesystem"] | Route | None
_SAME_FILESYSTEM: Final = "same-filesystem"


async def _way(source: Endpoint, target: Endpoint, entry: Entry, routes: Routes | None) -> _Way:
    """How ``target`` gets its copy (see :data:`_Way`); measures the links if needed."""
    if target.filesystem == source.filesystem:
        return _SAME_FILESYSTEM
    if not _direct(source, target):
        return None
    pair = (source.location, target.location)
    size = entry.size if entry.kind is EntryKind.FILE else TREE_BYTES
    if routes is None:
        return Route(*pair, True, None, None, "not measured", size)
    route = await routes.choose(source.connector, *pair, size)
    return route if route.direct else None


def _counter(entry: Entry) -> TarFileCounter | None:
    return TarFileCounter() if entry.kind is EntryKind.DIRECTORY else None


def _hashing(
    hasher: Hasher | None,
    counter: TarFileCounter | None,
    on_progress: Callable[[int, int | None], None],
) -> _ChunkSink:
    def sink(chunk: bytes) -> None:
        if hasher is not None:
            hasher.update(chunk)
        if counter is None:
            on_progress(len(chunk), 0)
            return
        counter.feed(chunk)
        on_progress(len(chunk), None if counter.broken else counter.files)

    return sink


async def _capture(results: list[BaseException | None], index: int, work: Awaitable[None]) -> None:
    try:
        await work
    except Exception as exc:  # recorded per destination, reported by the caller
        results[index] = exc


async def _copy_same_filesystem(
    source: Endpoint, target: Endpoint, entry: Entry, on_progress: Callable[[int, int | None], None]
) -> None:
    await target.connector.copy(target.location, source.path, target.path)
    on_progress(entry.size, None)


def _direct(source: Endpoint, target: Endpoint) -> bool:
    """True when the source's host sends to the target's host itself (a configured route)."""
    connector = source.connector
    return target.connector is connector and connector.can_send(source.location, target.location)


@dataclass(frozen=True, slots=True)
class _Send:
    """A copy over a direct route, relayed through this process if the route fails first."""

    source: Endpoint
    target: Endpoint
    entry: Entry
    routes: Routes | None
    on_progress: Callable[[int, int | None], None]
    on_source_error: Callable[[BaseException], None]

    async def run(self, route: Route) -> None:
        """Send over the route; relay if it failed with nothing written at the target.

        Raises:
            ConnectorError: If the route failed after writing, or both ways failed (the
                route's failure first).
        """
        source, target = self.source, self.target
        try:
            await source.connector.send(source.location, self.entry, target.location, target.path)
        except ConnectorError as exc:
            if not await self._nothing_written():
                raise
            if self.routes is not None:
                self.routes.route_failed(route, exc)
            logger.info("the route %s -> %s failed, relaying: %s", route.source, route.target, exc)
            await self._relay(exc)
            return
        self.on_progress(self.entry.size, None)

    async def _nothing_written(self) -> bool:
        target = self.target
        try:
            return await target.connector.stat(target.location, target.path) is None
        except StreamDataError:
            return False

    async def _relay(self, failure: ConnectorError) -> None:
        results: list[BaseException | None] = [None]
        sink = _hashing(None, _counter(self.entry), self.on_progress)
        await _stream(
            self.source, self.entry, [self.target], [0], results, sink, self.on_source_error
        )
        error = results[0]
        if error is not None:
            transient = isinstance(error, ConnectorError) and error.transient
            # Chained to the relay's error: a source that failed is seen (failover).
            raise ConnectorError(
                f"{failure}; relaying through this process failed too: {error}",
                transient=transient,
            ) from error


def _nothing() -> None:
    """Do nothing (a callback not wanted)."""


async def _stream(
    source: Endpoint,
    entry: Entry,
    targets: Sequence[Endpoint],
    indexes: Sequence[int],
    results: list[BaseException | None],
    on_chunk: _ChunkSink,
    on_source_error: Callable[[BaseException], None],
    on_read_end: Callable[[], None] = lambda: None,
) -> None:
    """Read the source once and feed every target through its own bounded queue."""
    queues = [asyncio.Queue[_Item](_QUEUE_CHUNKS) for _ in targets]
    alive = [True] * len(targets)

    async def write(slot: int) -> None:
        target = targets[slot]
        try:
            await target.connector.write(target.location, target.path, entry, _drain(queues[slot]))
        except Exception as exc:  # this destination fails alone
            results[indexes[slot]] = exc
        finally:
            alive[slot] = False
            _empty(queues[slot])

    async with asyncio.TaskGroup() as group:
        for slot in range(len(targets)):
            group.create_task(write(slot))
        try:
            await _pump(source, entry, queues, alive, on_chunk)
        except Exception as exc:  # a failed read fails every destination
            if any(alive):  # else: they all failed first ("every destination failed")
                on_source_error(exc)
            for slot, index in enumerate(indexes):
                if results[index] is None:
                    results[index] = exc
                alive[slot] = False
                _poison(queues[slot], exc)
        else:
            on_read_end()


async def _pump(
    source: Endpoint,
    entry: Entry,
    queues: Sequence[asyncio.Queue[_Item]],
    alive: list[bool],
    on_chunk: _ChunkSink,
) -> None:
    async with source.connector.read(source.location, entry) as chunks:
        async for chunk in chunks:
            if not chunk:
                continue
            if not any(alive):
                raise ConnectorError("every destination failed")
            for queue, live in zip(queues, alive, strict=True):
                if live:
                    await queue.put(chunk)
            on_chunk(chunk)
    for queue, live in zip(queues, alive, strict=True):
        if live:
            await queue.put(None)


async def _drain(queue: asyncio.Queue[_Item]) -> AsyncIterator[bytes]:
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            transient = isinstance(item, ConnectorError) and item.transient
            raise ConnectorError(f"the source stream broke: {item}", transient=transient) from item
        yield item


def _poison(queue: asyncio.Queue[_Item], error: BaseException) -> None:
    _empty(queue)
    queue.put_nowait(error)


def _empty(queue: asyncio.Queue[_Item]) -> None:
    while not queue.empty():
        queue.get_nowait()

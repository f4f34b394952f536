"""Keeping one process's catalog in step with the others that share its store.

A :class:`CatalogSync` belongs to a :class:`~streamdata.DataManager` with a durable
catalog. Queries call :meth:`CatalogSync.refresh`, which looks at the store at most every
:data:`REFRESH_SECONDS`; calls about to rely on the catalog (writes, transfers, checks)
look at once. While the manager is used from an event loop, a watcher task it owns does
the same every :data:`WATCH_SECONDS` and notices writers that died, so that a waiter for
a replica another process was writing never waits forever: the replica turns INVALID
and the waiter's transfer takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from .._errors import StreamDataError
from .mapper import RemotePathMapper
from .stores import open_store

__all__ = ["REFRESH_SECONDS", "WATCH_SECONDS", "CatalogSync", "open_catalog"]

_log = logging.getLogger(__name__)

#: The most a query may lag behind another process's change (the contract allows 1 s).
REFRESH_SECONDS = 0.1
#: How often the watcher looks at the store and at the writers of pending replicas.
WATCH_SECONDS = 0.25


class CatalogSync:
    """Refreshes ``catalog`` from its shared store (see the module docstring).

    Args:
        catalog: The in-memory catalog, backed by a store.
    """

    def __init__(self, catalog: RemotePathMapper) -> None:
        self._catalog = catalog
        #: Whether other processes may change the catalog (False in memory): read inline
        #: by the manager's hottest queries, before they look at the clock.
        self.shared = catalog.durable
        #: When queries should look at the store again (monotonic clock); read inline by
        #: the manager's hottest queries, which call :meth:`refresh` once it has passed.
        self.due = time.monotonic() + REFRESH_SECONDS
        self._watcher: asyncio.Task[None] | None = None

    def refresh(self, *, now: bool = False) -> None:
        """Apply other processes' changes, unless it was done less than a moment ago.

        Raises:
            ConfigurationError: If the store cannot be read.
        """
        if not self.shared:
            return
        clock = time.monotonic()
        if now or clock >= self.due:
            self.due = clock + REFRESH_SECONDS
            self._catalog.refresh()

    def refresh_and_watch(self) -> None:
        """:meth:`refresh` at once, and start the watcher if it is not running."""
        self.refresh(now=True)
        self.watch()

    def watch(self) -> None:
        """Start the watcher on the running loop, once (a no-op while it runs or in memory)."""
        if self.shared and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                self.refresh(now=True)
                self._catalog.reap()
            except StreamDataError as exc:  # the next call that needs the store raises it
                _log.debug("cannot refresh the catalog: %s", exc)

    async def close(self) -> None:
        """Stop the watcher (idempotent; from another loop it is only cancelled)."""
        watcher, self._watcher = self._watcher, None
        if watcher is None or watcher.done():
            return
        watcher.cancel()
        try:
            same_loop = watcher.get_loop() is asyncio.get_running_loop()
        except RuntimeError:
            same_loop = False
        if same_loop:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def open_catalog(path: str | os.PathLike[str] | None) -> tuple[RemotePathMapper, CatalogSync]:
    """The catalog kept at ``path`` (None: in memory only; a file; a PostgreSQL URL), loaded,
    and its sync.

    Raises:
        ConfigurationError: If the catalog cannot be opened or read.
    """
    catalog = RemotePathMapper(open_store(path))
    catalog.load()
    return catalog, CatalogSync(catalog)

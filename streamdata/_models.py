"""Values: data types, execution locations and replicas.

A :class:`DataLocation` is a replica owned by the catalog: its attributes are read-only for
users and change only through the :class:`~streamdata.DataManager`. Availability is tracked
without event-loop objects, so a replica can be pickled and awaited from any event loop or
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import posixpath
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataLocation", "DataType", "ExecutionLocation", "normalize_path"]


class DataType(enum.Enum):
    """What a replica holds."""

    __module__ = "streamdata"

    PRIMARY = "primary"
    """The actual data."""
    SYMBOLIC_LINK = "symbolic_link"
    """A symbolic link pointing to a PRIMARY replica."""
    INVALID = "invalid"
    """No longer usable: deleted, corrupted or produced by a failed transfer."""


@dataclass(frozen=True, slots=True)
class ExecutionLocation:
    """A place where data lives: one node of one deployment.

    Two locations are the same when their ``deployment`` and ``name`` are equal; ``local``
    does not take part in comparisons.

    Attributes:
        name: The node inside the deployment (a host, ``"localhost"``, a site name).
        deployment: The deployment (connector) the location belongs to.
        local: True when the location's filesystem is the one this process sees.
    """

    name: str
    deployment: str
    local: bool = field(default=False, compare=False)
    # locations key the catalog's dicts: hashed once, not on every lookup
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.deployment, str):
            raise TypeError("ExecutionLocation name and deployment must be strings")
        object.__setattr__(self, "_hash", hash((self.name, self.deployment)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[object, ...]:
        # string hashes differ between processes: rebuild, never carry _hash along
        return (ExecutionLocation, (self.name, self.deployment, self.local))

    def __str__(self) -> str:
        return f"{self.deployment}:{self.name}"


ExecutionLocation.__module__ = "streamdata"


def normalize_path(path: str) -> str:
    """Return ``path`` as a normalised absolute POSIX path.

    Args:
        path: An absolute POSIX path, possibly with repeated or trailing slashes.

    Returns:
        The normalised path (``/a//b/`` becomes ``/a/b``).

    Raises:
        TypeError: If ``path`` is not a string.
        ValueError: If ``path`` is relative or contains a NUL byte.
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, not {type(path).__name__}")
    if not path.startswith("/"):
        raise ValueError(f"path must be absolute: {path!r}")
    if "\0" in path:
        raise ValueError("path must not contain a NUL byte")
    if "//" not in path and "/." not in path and (len(path) == 1 or path[-1] != "/"):
        return path  # already normal: the common case, kept cheap
    normalized = posixpath.normpath(path)
    # POSIX allows exactly two leading slashes to mean something else; we do not.
    return "/" + normalized.lstrip("/")


class _Availability:
    """Whether a replica's data is fully present, awaitable from any event loop.

    Waiters register a future on their own loop; completion wakes them with
    ``call_soon_threadsafe``. Nothing loop-bound is kept once nobody waits.
    """

    __slots__ = ("_done", "_error", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def available(self) -> bool:
        return self._done and self._error is None

    @property
    def done(self) -> bool:
        return self._done

    def finish(self, error: BaseException | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done, self._error = True, error
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self) -> None:
        with self._lock:
            if not self._done:
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            else:
                future = None  # type: ignore[assignment]
        if future is not None:
            try:
                await future
            finally:
                with self._lock:
                    if (loop, future) in self._waiters:
                        self._waiters.remove((loop, future))
        if self._error is not None:
            raise self._error


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Available:
    """The shared state of replicas whose data is present: costs no memory per replica."""

    __slots__ = ()
    available = True
    done = True

    def finish(self, error: BaseException | None = None) -> None:
        return None

    async def wait(self) -> None:
        return None


_AVAILABLE = _Available()


class DataLocation:
    """One replica of one piece of data on one location.

    Instances are created and updated by the catalog; their attributes are read-only.
    Two instances are equal when they describe the same path on the same location.
    """

    __module__ = "streamdata"

    __slots__ = (
        "_data_type",
        "_hash",
        "_implied",
        "_location",
        "_path",
        "_relpath",
        "_set",
        "_state",
    )

    def __init__(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str,
        data_type: DataType = DataType.PRIMARY,
        *,
        available: bool = True,
        implied: bool = False,
    ) -> None:
        self._location = location
        self._path = path
        self._hash = hash((path, location.name, location.deployment))  # no Python-level call
        self._relpath = relpath
        self._data_type = data_type
        self._implied = implied
        self._state: _Availability | _Available = _AVAILABLE if available else _Availability()
        # The replica set this replica belongs to, shared by all its members (catalog-owned);
        # None while it is related to nothing.
        self._set: dict[DataLocation, None] | None = None

    @property
    def path(self) -> str:
        """The absolute POSIX path of the replica on its location."""
        return self._path

    @property
    def relpath(self) -> str:
        """The path relative to the data's logical root (defaults to the basename)."""
        return self._relpath

    @property
    def location(self) -> ExecutionLocation:
        """The location holding the replica."""
        return self._location

    @property
    def deployment(self) -> str:
        """The deployment of the replica's location."""
        return self._location.deployment

    @property
    def name(self) -> str:
        """The name of the replica's location."""
        return self._location.name

    @property
    def data_type(self) -> DataType:
        """PRIMARY, SYMBOLIC_LINK or INVALID."""
        return self._data_type

    @property
    def implied(self) -> bool:
        """True for an ancestor directory recorded by registering a path below it.

        An implied replica is not a complete replica of that directory: it is never the
        source of a transfer or of a link.
        """
        return self._implied

    @property
    def is_available(self) -> bool:
        """True when the data is fully present (not still being written, not failed)."""
        return self._state.available

    async def wait_available(self) -> None:
        """Wait until the replica's data is fully present.

        Works from any event loop and thread.

        Raises:
            TransferError: If the transfer that was producing the data failed.
        """
        await self._state.wait()

    # -- catalog-side mutators (private) -------------------------------------------------

    def _start_pending(self) -> None:
        if self._state.done:
            self._state = _Availability()

    def _finish(self, error: BaseException | None = None) -> None:
        state = self._state
        if error is None and isinstance(state, _Availability):
            state.finish()
            self._state = _AVAILABLE
        else:
            state.finish(error)

    def _set_available(self) -> None:
        self._finish()

    # -- value behaviour -------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataLocation):
            return NotImplemented
        return self._path == other._path and self._location == other._location

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        flags = "" if self.is_available else ", pending"
        return (
            f"DataLocation({self._location.deployment}:{self._location.name}:{self._path!r}, "
            f"{self._data_type.name}{flags})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The public constructor plus public state: a pickle never names a private field.
        state = {
            "available": self._state.available,
            "implied": self._implied,
            "error": getattr(self._state, "_error", None),
        }
        return (DataLocation, (self._location, self._path, self._relpath, self._data_type), state)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`__reduce__` saved (pending, failed, implied) after ``__init__``."""
        self._implied = bool(state.get("implied", False))
        error = state.get("error")
        if error is not None or not state.get("available", True):
            self._state = _Availability()
            if error is not None:
                self._state.finish(error)

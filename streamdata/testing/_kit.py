"""The test kit behind :mod:`streamdata.testing`: locations on test servers, faults."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Hashable
from dataclasses import dataclass
from pathlib import Path

from streamdata import (
    Connector,
    ConnectorError,
    DataManager,
    ExecutionLocation,
    LocalConnector,
    SSHConnector,
    SSHHost,
)
from streamdata.connectors import Entry

from ._servers import AsyncSSHTestServer

__all__ = [
    "LOCAL_DEPLOYMENT",
    "LOCAL_LOCATION",
    "SSH_DEPLOYMENT",
    "FaultyConnector",
    "SSHLocation",
    "open_data_manager",
    "open_ssh_location",
]

#: The deployment name of the local connector in the ``data_manager`` fixture.
LOCAL_DEPLOYMENT = "local"
#: The location of that local deployment.
LOCAL_LOCATION = ExecutionLocation("localhost", LOCAL_DEPLOYMENT, local=True)
#: The deployment name of the ``ssh_location`` fixture's connector.
SSH_DEPLOYMENT = "ssh"
_SSH_LOCATION_NAME = "sshtest"

#: The connector methods whose calls :class:`FaultyConnector` counts and can fault.
FAULTABLE_METHODS = frozenset(
    {"stat", "prepare_destination", "symlink", "copy", "read", "write", "commit", "remove", "walk"}
)


@dataclass(frozen=True)
class SSHLocation:
    """A location on the plugin's SSH server, ready to use.

    Attributes:
        location: The location (deployment :data:`SSH_DEPLOYMENT`).
        connector: The connector of that deployment; it connects on first use.
        host: How the connector reaches the server (address, port, keys, known_hosts).
        server: The server itself.
        workdir: An empty directory for the test, seen by the location at this path.
    """

    location: ExecutionLocation
    connector: SSHConnector
    host: SSHHost
    server: AsyncSSHTestServer
    workdir: Path

    @property
    def deployment(self) -> str:
        """The deployment name of :attr:`location`."""
        return self.location.deployment

    def path(self, relpath: str) -> str:
        """The absolute path of ``relpath`` inside :attr:`workdir`."""
        return str(self.workdir / relpath)


SSHLocation.__module__ = "streamdata.testing"


@contextlib.asynccontextmanager
async def open_ssh_location(
    server: AsyncSSHTestServer, workdir: Path
) -> AsyncIterator[SSHLocation]:
    """What the ``ssh_location`` fixture yields, for a server and a new working directory.

    Args:
        server: The SSH server to reach (e.g. the ``ssh_server`` fixture).
        workdir: An existing directory for the location to work in.

    Yields:
        The location; its connector is closed on exit.
    """
    host = server.ssh_host(name=_SSH_LOCATION_NAME)
    async with SSHConnector([host]) as connector:
        location = ExecutionLocation(_SSH_LOCATION_NAME, SSH_DEPLOYMENT)
        yield SSHLocation(location, connector, host, server, workdir)


open_ssh_location.__module__ = "streamdata.testing"


@contextlib.asynccontextmanager
async def open_data_manager(ssh_location: SSHLocation) -> AsyncIterator[DataManager]:
    """What the ``data_manager`` fixture yields: local and SSH deployments, in-memory catalog.

    Args:
        ssh_location: The SSH location whose connector becomes a deployment.

    Yields:
        The manager; closed on exit.
    """
    deployments: dict[str, Connector] = {
        LOCAL_DEPLOYMENT: LocalConnector(),
        ssh_location.deployment: ssh_location.connector,
    }
    async with DataManager(deployments) as manager:
        yield manager


open_data_manager.__module__ = "streamdata.testing"


# -- fault injection -----------------------------------------------------------------------


@dataclass
class _Fault:
    action: str  # "fail" or "hang"
    error: BaseException | None
    after_bytes: int | None

    async def fire(self, method: str, call: int) -> None:
        if self.action == "hang":
            await asyncio.get_running_loop().create_future()  # until cancelled
        raise self.error or ConnectorError(f"injected fault: {method} call {call} failed")


class FaultyConnector(Connector):
    """A connector that forwards to ``inner`` and injects faults on purpose.

    Calls of each method in :data:`FAULTABLE_METHODS` are counted from 1 (see
    :attr:`calls`); a fault planned for call N of a method fires at that call only, so a
    test is deterministic. A fault *fails* (raises :class:`~streamdata.ConnectorError` or
    the given exception) or *hangs* (waits until cancelled, e.g. by ``asyncio.timeout``).
    For ``read`` and ``write`` it can fire in the middle of the stream, once
    ``after_bytes`` bytes went through, so partial data exists when it fires.

    Args:
        inner: The connector doing the real work.
        bandwidth: Bytes per second allowed through each read and write stream; None
            for no limit.
        own_filesystem: True makes the locations look like a filesystem of their own,
            so the engine always moves data through :meth:`read` and :meth:`write`
            (where faults and the bandwidth limit apply) instead of :meth:`copy`.

    Raises:
        TypeError: If ``inner`` is not a :class:`~streamdata.Connector`.
        ValueError: If ``bandwidth`` is not positive.
    """

    __module__ = "streamdata.testing"

    def __init__(
        self, inner: Connector, *, bandwidth: float | None = None, own_filesystem: bool = False
    ) -> None:
        if not isinstance(inner, Connector):
            raise TypeError(f"inner must be a Connector, not {type(inner).__name__}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError("bandwidth must be positive")
        self.inner = inner
        self.bandwidth = bandwidth
        self.is_local = inner.is_local
        self._own_filesystem = own_filesystem
        self._faults: dict[tuple[str, int], _Fault] = {}
        self.calls: dict[str, int] = dict.fromkeys(sorted(FAULTABLE_METHODS), 0)

    # -- planning faults -------------------------------------------------------------------

    def fail_at(
        self,
        method: str,
        call: int,
        *,
        error: BaseException | None = None,
        after_bytes: int | None = None,
    ) -> FaultyConnector:
        """Make call number ``call`` (from 1) of ``method`` raise ``error``.

        Args:
            method: A name in :data:`FAULTABLE_METHODS`.
            call: Which call fails (1 is the first).
            error: What is raised; default, a :class:`~streamdata.ConnectorError`.
            after_bytes: For ``read``/``write``: fail once this many bytes went through
                the stream instead of when the call starts.

        Returns:
            This connector, for chaining.

        Raises:
            ValueError: If ``method`` cannot be faulted, ``call`` is below 1, or
                ``after_bytes`` is given for a method without a stream.
        """
        return self._plan(method, call, _Fault("fail", error, after_bytes))

    def hang_at(self, method: str, call: int, *, after_bytes: int | None = None) -> FaultyConnector:
        """Make call number ``call`` (from 1) of ``method`` wait until it is cancelled.

        Args:
            method: A name in :data:`FAULTABLE_METHODS`.
            call: Which call hangs (1 is the first).
            after_bytes: For ``read``/``write``: hang once this many bytes went through
                the stream instead of when the call starts.

        Returns:
            This connector, for chaining.

        Raises:
            ValueError: As for :meth:`fail_at`.
        """
        return self._plan(method, call, _Fault("hang", None, after_bytes))

    def _plan(self, method: str, call: int, fault: _Fault) -> FaultyConnector:
        if method not in FAULTABLE_METHODS:
            raise ValueError(f"cannot fault {method!r}; choose from {sorted(FAULTABLE_METHODS)}")
        if call < 1:
            raise ValueError("calls are counted from 1")
        if fault.after_bytes is not None and method not in ("read", "write"):
            raise ValueError("after_bytes applies to read and write only")
        self._faults[(method, call)] = fault
        return self

    async def _arrive(self, method: str) -> _Fault | None:
        """Count a call; fire its fault now, or return it when it fires mid-stream."""
        self.calls[method] += 1
        call = self.calls[method]
        fault = self._faults.get((method, call))
        if fault is None:
            return None
        if fault.after_bytes is None:
            await fault.fire(method, call)
        return fault

    async def _stream(
        self, chunks: AsyncIterable[bytes], fault: _Fault | None, method: str
    ) -> AsyncIterator[bytes]:
        """Pass ``chunks`` on, at most :attr:`bandwidth` bytes/s, firing ``fault`` in time."""
        call, done, started = self.calls[method], 0, time.monotonic()
        async for chunk in chunks:
            for piece in self._pieces(chunk):
                limit = fault.after_bytes if fault is not None else None
                if fault is not None and limit is not None and done + len(piece) > limit:
                    if piece[: limit - done]:
                        yield piece[: limit - done]
                    await fault.fire(method, call)
                if self.bandwidth is not None:
                    delay = started + (done + len(piece)) / self.bandwidth - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                done += len(piece)
                yield piece
        if fault is not None:
            await fault.fire(method, call)  # the stream was shorter than after_bytes

    def _pieces(self, chunk: bytes) -> list[bytes]:
        if self.bandwidth is None:
            return [chunk]
        step = max(1024, int(self.bandwidth / 20))  # about 20 pauses per second
        return [chunk[i : i + step] for i in range(0, len(chunk), step)]

    # -- the Connector interface -----------------------------------------------------------

    def filesystem(self, location: ExecutionLocation) -> Hashable:
        """The inner connector's key, or one of its own with ``own_filesystem``."""
        key = self.inner.filesystem(location)
        return ("faulty", id(self), key) if self._own_filesystem else key

    async def stat(self, location: ExecutionLocation, path: str) -> Entry | None:
        """Forward ``stat`` (faultable).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("stat")
        return await self.inner.stat(location, path)

    async def prepare_destination(
        self, location: ExecutionLocation, dst_path: str, basename: str
    ) -> str:
        """Forward ``prepare_destination`` (faultable).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("prepare_destination")
        return await self.inner.prepare_destination(location, dst_path, basename)

    async def symlink(self, location: ExecutionLocation, target: str, link_path: str) -> None:
        """Forward ``symlink`` (faultable).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("symlink")
        await self.inner.symlink(location, target, link_path)

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        """Forward ``copy`` (faultable).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("copy")
        await self.inner.copy(location, src_path, dst_path)

    @contextlib.asynccontextmanager
    async def read(
        self, location: ExecutionLocation, entry: Entry
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Forward ``read`` through the bandwidth limit (faultable, also mid-stream).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        fault = await self._arrive("read")
        async with self.inner.read(location, entry) as chunks:
            yield self._stream(chunks, fault, "read")

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        """Forward ``write`` through the bandwidth limit (faultable, also mid-stream).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        fault = await self._arrive("write")
        await self.inner.write(location, path, entry, self._stream(chunks, fault, "write"))

    async def commit(self, location: ExecutionLocation, tmp_path: str, final_path: str) -> None:
        """Forward ``commit`` (faultable).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("commit")
        await self.inner.commit(location, tmp_path, final_path)

    async def remove(self, location: ExecutionLocation, path: str) -> None:
        """Forward ``remove`` (faultable).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("remove")
        await self.inner.remove(location, path)

    async def walk(self, location: ExecutionLocation, path: str) -> AsyncIterator[Entry]:
        """Forward ``walk`` (faultable; the fault fires when iteration starts).

        Raises:
            ConnectorError: From the inner connector or an injected fault.
        """
        await self._arrive("walk")
        async for entry in self.inner.walk(location, path):
            yield entry

    async def close(self) -> None:
        """Close the inner connector."""
        await self.inner.close()

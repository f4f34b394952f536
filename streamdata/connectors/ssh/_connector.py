"""The SSH connector: locations reached over SSH with asyncssh.

How each operation travels, chosen by measurement on loopback OpenSSH:

* metadata (stat, mkdir, rename, symlink, unlink) goes over one persistent SFTP session
  per host: a request costs a fraction of a millisecond, while a new command costs a
  channel and a remote shell start (up to 100 ms when the login shell is heavy);
* file contents stream through ``cat`` on an exec channel, directory trees through
  ``tar``, with AES-GCM, a 16 MiB window and 256 KiB packets (faster than SFTP
  transfers in asyncssh); mode and mtime are set by the same remote command line;
* to and from a far host (10-100 ms away), where one channel's window caps a transfer
  (the server grants 2 MiB), big files travel as ranges over several channels and
  trees through several ``tar`` at once, as many as the measured round-trip time calls
  for (:mod:`._parallel`, :mod:`._ranges`);
* a file copy that broke keeps what arrived: its prefix is compared by block digests
  computed on the host, and only the rest is sent (:mod:`._resume`);
* listings are one ``find -printf`` with NUL separators; same-host copies are ``cp -a``;
* between two hosts joined by a route (``SSHHost.routes``) the source host pipes the data
  to the destination itself (:mod:`._direct`), when the engine finds that cheaper than
  a relay through this process (:meth:`SSHConnector.measure_link` measures the links);
* every tree read passes through the tree filter (:mod:`.._tar.filter`: special files
  skipped, absolute links into the tree made relative); a same-host ``cp -a`` or a
  route is used only for a tree it would not change, others are streamed through this
  process (:mod:`._trees`).

Every remote command line is built by :mod:`._commands`, which quotes each argument.
Connections are made lazily (:mod:`._connect`) and pooled per host, with a cap on
the channels open at once (:mod:`._pool`); every failure is translated by one table
(:mod:`._errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Sequence
from dataclasses import replace

from ..._errors import ConfigurationError
from ..._models import ExecutionLocation
from .._base import Connector, Entry, EntryKind, Span
from .._listing import ListingParser
from . import _commands as commands
from . import _direct as direct
from . import _resume as resume
from ._asyncssh import asyncssh
from ._direct import relay
from ._host import PoolSettings, SSHHost
from ._pool import HostPool
from ._prepare import prepare_destination
from ._sftp import entry_of, is_directory, stat_or_none
from ._streams import open_read, write_stream
from ._trees import copy_through_spool, run_unless_filtered

__all__ = ["SSHConnector", "SSHHost"]


SSHHost.__module__ = "streamdata"


class SSHConnector(Connector):
    """A deployment whose locations are SSH hosts.

    Constructing the connector never connects: the first operation on a host does.

    Args:
        hosts: The hosts; each is the location named by its :attr:`SSHHost.location_name`.
        max_connections: Most SSH connections per host.
        max_sessions: Most channels open at once per host, across its connections. One
            connection carries at most 10 (OpenSSH's default ``MaxSessions``, which is
            per connection): more need ``max_connections`` > 1. One channel is kept for
            metadata requests and one more for short commands; an extra channel for a
            split transfer that the server refuses is simply not used.
        connect_timeout: Seconds allowed to connect and log in.
        keepalive_interval: Seconds between keep-alive requests; a connection missing
            three answers in a row is dropped.
        connect_retries: Attempts after the first for connection-level failures
            (refused, reset, timed out), with exponential backoff.

    Raises:
        ValueError: If two hosts share a location name, a route names no other host of
            this connector, or a limit is out of range.
    """

    __module__ = "streamdata"

    def __init__(
        self,
        hosts: Sequence[SSHHost],
        *,
        max_connections: int = 2,
        max_sessions: int = 12,
        connect_timeout: float = 15.0,
        keepalive_interval: float = 15.0,
        connect_retries: int = 3,
    ) -> None:
        self._hosts: dict[str, SSHHost] = {}
        for host in hosts:
            if not isinstance(host, SSHHost):
                raise TypeError(f"hosts must be SSHHost objects, not {type(host).__name__}")
            if host.location_name in self._hosts:
                raise ValueError(f"two hosts are named {host.location_name!r}")
            self._hosts[host.location_name] = host
        for host in hosts:
            for name in host.routes:
                if name not in self._hosts or name == host.location_name:
                    raise ValueError(
                        f"host {host.location_name!r} has a route to {name!r}, "
                        "which is not another host of this connector"
                    )
        self._settings = PoolSettings(
            max_connections=max_connections,
            max_sessions=max_sessions,
            connect_timeout=connect_timeout,
            keepalive_interval=keepalive_interval,
            connect_retries=connect_retries,
        )
        self._pools: dict[SSHHost, HostPool] = {}

    def location_names(self) -> Sequence[str]:
        """The location name of each host, in the order given."""
        return tuple(self._hosts)

    def filesystem(self, location: ExecutionLocation) -> Hashable:
        """Hosts reached at the same address and port share a filesystem."""
        host = self._host(location)
        return ("ssh", host.host, host.port)

    async def stat(self, location: ExecutionLocation, path: str) -> Entry | None:
        """Describe ``path`` (SFTP; modification times have one-second precision).

        The ``stat`` and the ``lstat`` (for a dangling link) travel together: one round
        trip, which counts on a far host.

        Raises:
            ConnectorError: If the host cannot be reached or ``path`` examined.
        """
        pool, what = self._pool(location), f"stat {path!r}"
        followed, attrs = await asyncio.gather(
            stat_or_none(pool, path, follow=True, what=what),
            stat_or_none(pool, path, follow=False, what=what),
        )
        if followed is not None:
            attrs = followed
        return None if attrs is None else entry_of(path, attrs)

    async def prepare_destination(
        self, location: ExecutionLocation, dst_path: str, basename: str
    ) -> str:
        """Apply cp rules: one round trip (and a ``mkdir`` per missing parent); on a far
        host not used yet, a command three round trips after connecting (:mod:`._prepare`).

        Raises:
            ConnectorError: If the host cannot be reached or a parent cannot be made.
        """
        return await prepare_destination(self._pool(location), dst_path, basename)

    async def symlink(self, location: ExecutionLocation, target: str, link_path: str) -> None:
        """Create the symbolic link ``link_path`` -> ``target`` (SFTP).

        Raises:
            ConnectorError: If the link cannot be made.
        """
        pool = self._pool(location)
        await pool.sftp(lambda c: c.symlink(target, link_path), what=f"link {link_path!r}")

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        """Copy on the host with ``cp -a``, or filtered through here (:mod:`._trees`).

        Raises:
            ConnectorError: If the copy fails.
        """
        pool = self._pool(location)
        command, what = commands.copy_tree(src_path, dst_path), f"copy {src_path!r}"
        if not await run_unless_filtered(pool, src_path, command, what):
            await copy_through_spool(pool, src_path, dst_path)

    def can_send(self, location: ExecutionLocation, target: ExecutionLocation) -> bool:
        """True when ``location``'s host has a route to ``target`` (see ``SSHHost.routes``)."""
        return target.name in self._host(location).routes

    async def send(
        self, location: ExecutionLocation, entry: Entry, target: ExecutionLocation, target_path: str
    ) -> None:
        """Copy host to host over the configured route: one command on the source host.

        A tree the tree filter would change is relayed through this process instead
        (:mod:`._trees`).

        Raises:
            ConnectorError: If either side fails (the message says which).
        """
        route = self._host(location).routes[target.name]
        path = entry.path
        pool, what = self._pool(location), f"send {path!r} to {target}"
        if entry.kind is not EntryKind.DIRECTORY:
            read = commands.read_file(path)
            write = commands.write_file(target_path, entry.mode, entry.mtime)
            await pool.run(relay(read, route, write), what=what, bulk=True)
            return
        command = relay(commands.archive(path), route, commands.unpack(target_path))
        if not await run_unless_filtered(pool, path, command, what):
            async with self.read(location, entry) as chunks:
                await self.write(target, target_path, entry, chunks)

    async def measure_link(
        self, source: ExecutionLocation | None, target: ExecutionLocation | None, size: int
    ) -> tuple[float, float, int]:
        """Measure a link by moving ``size`` bytes: over a route, or to or from here.

        None stands for this process; the engine's route choice calls this
        (:func:`._direct.measure_link`). Returns the latency (seconds), the rate (bytes
        per second) and the channels a big transfer over the link uses.

        Raises:
            ConnectorError: If a host cannot be reached or the move fails.
        """
        route = None
        if source is not None and target is not None:
            route = self._host(source).routes[target.name]
        source_pool = None if source is None else self._pool(source)
        target_pool = None if target is None else self._pool(target)
        return await direct.measure_link(source_pool, target_pool, route, size)

    def read(
        self, location: ExecutionLocation, entry: Entry
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream a file (SFTP if small, else ``cat``) or a directory's contents (``tar``).

        The entry's size chooses the way: a big file's ``cat`` starts at once.

        Raises:
            ConnectorError: If the source cannot be read completely.
        """
        return open_read(self._pool(location), entry)

    async def write(
        self, location: ExecutionLocation, path: str, entry: Entry, chunks: AsyncIterable[bytes]
    ) -> None:
        """Write a file (SFTP if small, else ``cat``; then mode, mtime) or unpack a tree.

        A file the entry says is big is piped into ``cat`` from its first byte.

        Raises:
            ConnectorError: If writing fails.
        """
        await write_stream(self._pool(location), path, entry, chunks)

    def can_resume(self, location: ExecutionLocation) -> bool:
        """True: a file on a host can be hashed, read and written at offsets (:mod:`._resume`)."""
        return True

    async def block_digests(
        self, location: ExecutionLocation, path: str, size: int, block: int
    ) -> list[str]:
        """Hash the first ``size`` bytes of ``path`` by blocks on the host.

        Raises:
            ConnectorError: If the host cannot be reached or the file hashed.
        """
        return await resume.block_digests(self._pool(location), path, size, block)

    def read_spans(
        self, location: ExecutionLocation, entry: Entry, spans: Sequence[Span]
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream ``spans`` of the file ``entry`` (``dd`` by blocks; ranges far away).

        Raises:
            ConnectorError: If the file cannot be read or ends before a span does.
        """
        return resume.read_spans(self._pool(location), entry, spans)

    async def write_spans(
        self,
        location: ExecutionLocation,
        path: str,
        entry: Entry,
        chunks: AsyncIterable[bytes],
        spans: Sequence[Span],
    ) -> None:
        """Write ``spans`` of the file ``path`` (``dd`` by blocks; ranges far away).

        Raises:
            ConnectorError: If writing fails.
        """
        await resume.write_spans(self._pool(location), path, entry, chunks, spans)

    async def commit(self, location: ExecutionLocation, tmp_path: str, final_path: str) -> None:
        """Rename over ``final_path`` (SFTP); a non-empty directory there is moved aside.

        Raises:
            ConnectorError: If the move fails.
        """
        pool = self._pool(location)

        async def rename(client: asyncssh.SFTPClient) -> bool:
            try:
                await client.posix_rename(tmp_path, final_path)
            except (asyncssh.SFTPFailure, asyncssh.SFTPOpUnsupported):
                return False  # e.g. a non-empty directory is in the way
            return True

        if not await pool.sftp(rename, what=f"move into place {final_path!r}"):
            await pool.run(commands.replace(tmp_path, final_path), what=f"replace {final_path!r}")

    async def remove(self, location: ExecutionLocation, path: str) -> None:
        """Remove ``path``: one SFTP request for a file, ``rm -rf`` for a directory.

        Raises:
            ConnectorError: If something there cannot be removed.
        """
        pool, what = self._pool(location), f"remove {path!r}"
        attrs = await stat_or_none(pool, path, follow=False, what=what)
        if attrs is None:
            return
        if is_directory(attrs):
            await pool.run(commands.remove_tree(path), what=what)
            return

        async def unlink(client: asyncssh.SFTPClient) -> None:
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await client.remove(path)

        await pool.sftp(unlink, what=what)

    async def walk(self, location: ExecutionLocation, path: str) -> AsyncIterator[Entry]:
        """List the tree with a single ``find`` command.

        Raises:
            ConnectorError: If the tree cannot be listed.
        """
        pool = self._pool(location)
        parser = ListingParser()
        async with pool.command(commands.walk(path), what=f"list {path!r}", bulk=False) as remote:
            remote.write_eof()
            while chunk := await remote.read():
                for entry in _parse(pool, parser, chunk, path):
                    yield entry
            await remote.finish()
        _parse_end(pool, parser, path)

    async def close(self) -> None:
        """Close every connection; idempotent."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()

    def _host(self, location: ExecutionLocation) -> SSHHost:
        try:
            return self._hosts[location.name]
        except KeyError:
            raise ConfigurationError(f"no SSH host is named {location.name!r}") from None

    def _pool(self, location: ExecutionLocation) -> HostPool:
        host = self._host(location)
        key = replace(host, name=None)  # two names for one server share its connections
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = HostPool(host, self._settings)
        return pool


def _parse(pool: HostPool, parser: ListingParser, chunk: bytes, path: str) -> list[Entry]:
    try:
        return list(parser.feed(chunk))
    except ValueError as exc:
        raise pool.error(f"cannot parse the listing of {path!r}", exc) from exc


def _parse_end(pool: HostPool, parser: ListingParser, path: str) -> None:
    try:
        parser.close()
    except ValueError as exc:
        raise pool.error(f"cannot parse the listing of {path!r}", exc) from exc

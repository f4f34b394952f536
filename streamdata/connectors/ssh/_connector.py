"""The SSH connector: locations reached over SSH with asyncssh.

How each operation travels, chosen by measurement on loopback OpenSSH:

* metadata (stat, mkdir, rename, symlink, unlink) goes over one persistent SFTP session
  per host: a request costs a fraction of a millisecond, while a new command costs a
  channel and a remote shell start (up to 100 ms when the login shell is heavy);
* file contents stream through ``cat`` on an exec channel, directory trees through
  ``tar``, with AES-GCM, a 16 MiB window and 256 KiB packets (faster than SFTP
  transfers in asyncssh); mode and mtime are set by the same remote command line;
* listings are one ``find -printf`` with NUL separators; same-host copies are ``cp -a``;
* between two hosts joined by a route (``SSHHost.routes``) the source host pipes the data
  to the destination itself (:mod:`._ssh_direct`);
* every tree read passes through the tree filter (:mod:`._tarfilter`: special files
  skipped, absolute links into the tree made relative); a same-host ``cp -a`` or a
  route is used only for a tree it would not change, others are streamed through this
  process (:mod:`._ssh_trees`).

Every remote command line is built by :mod:`._ssh_commands`, which quotes each argument.
Connections are made lazily (:mod:`._ssh_connect`) and pooled per host, with a cap on
the channels open at once (:mod:`._ssh_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import posixpath
import stat as stat_module
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NoReturn

from ..._errors import ConfigurationError
from ..._models import ExecutionLocation
from .._base import Connector, Entry, EntryKind
from .._listing import ListingParser
from . import _commands as commands
from ._asyncssh import asyncssh
from ._direct import relay
from ._pool import HostPool, PoolSettings
from ._streams import open_read, write_stream
from ._trees import copy_through_spool, run_unless_filtered

__all__ = ["SSHConnector", "SSHHost"]

_SFTP_KINDS = {
    asyncssh.FILEXFER_TYPE_REGULAR: EntryKind.FILE,
    asyncssh.FILEXFER_TYPE_DIRECTORY: EntryKind.DIRECTORY,
    asyncssh.FILEXFER_TYPE_SYMLINK: EntryKind.SYMLINK,
}


@dataclass(frozen=True, slots=True)
class SSHHost:
    """How to reach one SSH host; one location of an :class:`SSHConnector`.

    Attributes:
        host: Host name or address.
        port: TCP port.
        username: Login name; None uses the local user name (or the SSH config's).
        client_keys: Private key files; empty uses the default keys and the SSH agent.
        known_hosts: The ``known_hosts`` file to verify the host key against; None means
            the user's ``~/.ssh/known_hosts``. A missing file trusts no key.
        check_host_key: False skips host-key verification (logs a warning). Only for
            throw-away test hosts.
        name: The location name; defaults to ``host``.
        routes: Direct routes from this host to other hosts of the same connector:
            ``{location name: argv}``, where ``argv`` run *on this host* runs a command
            on that one, e.g. ``{"login2": ["ssh", "-o", "BatchMode=yes", "login2"]}``.
            Transfers from this host to those go straight there, not through this
            process. Not part of comparisons.
    """

    host: str
    port: int = field(default=22, kw_only=True)
    username: str | None = field(default=None, kw_only=True)
    client_keys: Sequence[str | os.PathLike[str]] = field(default=(), kw_only=True)
    known_hosts: str | os.PathLike[str] | None = field(default=None, kw_only=True)
    check_host_key: bool = field(default=True, kw_only=True)
    name: str | None = field(default=None, kw_only=True)
    routes: Mapping[str, Sequence[str]] = field(default_factory=dict, kw_only=True, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"port must be an integer in 1..65535, not {self.port!r}")
        if isinstance(self.client_keys, str | os.PathLike):
            raise TypeError("client_keys must be a sequence of paths, not a single path")
        object.__setattr__(self, "client_keys", tuple(os.fspath(k) for k in self.client_keys))
        if self.known_hosts is not None:
            object.__setattr__(self, "known_hosts", os.fspath(self.known_hosts))
        object.__setattr__(self, "routes", _check_routes(self.routes))

    @property
    def location_name(self) -> str:
        """The name of this host's location: ``name`` if given, else ``host``."""
        return self.name if self.name is not None else self.host


SSHHost.__module__ = "streamdata"


class SSHConnector(Connector):
    """A deployment whose locations are SSH hosts.

    Constructing the connector never connects: the first operation on a host does.

    Args:
        hosts: The hosts; each is the location named by its :attr:`SSHHost.location_name`.
        max_connections: Most SSH connections per host.
        max_sessions: Most channels open at once per host, across its connections; keep
            it below the server's ``MaxSessions`` (10 by default in OpenSSH). One channel
            is kept for metadata requests and one more for short commands.
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
        max_sessions: int = 8,
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

    def filesystem(self, location: ExecutionLocation) -> Hashable:
        """Hosts reached at the same address and port share a filesystem."""
        host = self._host(location)
        return ("ssh", host.host, host.port)

    async def stat(self, location: ExecutionLocation, path: str) -> Entry | None:
        """Describe ``path`` (SFTP; modification times have one-second precision).

        Raises:
            ConnectorError: If the host cannot be reached or ``path`` examined.
        """
        pool = self._pool(location)
        try:
            attrs = await _stat_or_none(pool, path, follow=True)
            if attrs is None:
                attrs = await _stat_or_none(pool, path, follow=False)
        except asyncssh.SFTPError as exc:
            _fail(pool, "stat", path, exc)
        return None if attrs is None else _entry(path, attrs)

    async def prepare_destination(
        self, location: ExecutionLocation, dst_path: str, basename: str
    ) -> str:
        """Apply cp rules; the two stats travel together, so it is one round trip.

        Raises:
            ConnectorError: If the host cannot be reached or a parent cannot be made.
        """
        pool = self._pool(location)
        parent = posixpath.dirname(dst_path)
        try:
            target, folder = await asyncio.gather(
                _stat_or_none(pool, dst_path, follow=True),
                _stat_or_none(pool, parent, follow=True),
            )
            if target is not None and target.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                return posixpath.join(dst_path, basename)
            if folder is None or folder.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
                await _make_directories(pool, parent)
        except asyncssh.SFTPError as exc:
            _fail(pool, "create the parents of", dst_path, exc)
        return dst_path

    async def symlink(self, location: ExecutionLocation, target: str, link_path: str) -> None:
        """Create the symbolic link ``link_path`` -> ``target`` (SFTP).

        Raises:
            ConnectorError: If the link cannot be made.
        """
        pool = self._pool(location)
        try:
            await pool.sftp(lambda c: c.symlink(target, link_path), what="link")
        except asyncssh.SFTPError as exc:
            _fail(pool, "link", link_path, exc)

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        """Copy on the host with ``cp -a``, or filtered through here (:mod:`._ssh_trees`).

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
        self,
        location: ExecutionLocation,
        path: str,
        kind: EntryKind,
        target: ExecutionLocation,
        target_path: str,
        *,
        mode: int | None = None,
        mtime: float | None = None,
    ) -> None:
        """Copy host to host over the configured route: one command on the source host.

        A tree the tree filter would change is relayed through this process instead
        (:mod:`._ssh_trees`).

        Raises:
            ConnectorError: If either side fails (the message says which).
        """
        route = self._host(location).routes[target.name]
        pool, what = self._pool(location), f"send {path!r} to {target}"
        if kind is not EntryKind.DIRECTORY:
            read, write = commands.read_file(path), commands.write_file(target_path, mode, mtime)
            await pool.run(relay(read, route, write), what=what, bulk=True)
            return
        command = relay(commands.archive(path), route, commands.unpack(target_path))
        if not await run_unless_filtered(pool, path, command, what):
            async with self.read(location, path, kind) as chunks:
                await self.write(target, target_path, kind, chunks)

    def read(
        self, location: ExecutionLocation, path: str, kind: EntryKind
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream a file (SFTP if small, else ``cat``) or a directory's contents (``tar``).

        Raises:
            ConnectorError: If the source cannot be read completely.
        """
        return open_read(self._pool(location), path, kind)

    async def write(
        self,
        location: ExecutionLocation,
        path: str,
        kind: EntryKind,
        chunks: AsyncIterable[bytes],
        *,
        mode: int | None = None,
        mtime: float | None = None,
    ) -> None:
        """Write a file (SFTP if small, else ``cat``; then mode, mtime) or unpack a tree.

        Raises:
            ConnectorError: If writing fails.
        """
        await write_stream(self._pool(location), path, kind, chunks, mode, mtime)

    async def commit(self, location: ExecutionLocation, tmp_path: str, final_path: str) -> None:
        """Rename over ``final_path`` (SFTP); a non-empty directory there is moved aside.

        Raises:
            ConnectorError: If the move fails.
        """
        pool = self._pool(location)
        try:
            await pool.sftp(lambda c: c.posix_rename(tmp_path, final_path), what="rename")
            return
        except (asyncssh.SFTPFailure, asyncssh.SFTPOpUnsupported):
            pass  # e.g. a non-empty directory is in the way
        except asyncssh.SFTPError as exc:
            _fail(pool, "move into place", final_path, exc)
        await pool.run(commands.replace(tmp_path, final_path), what=f"replace {final_path!r}")

    async def remove(self, location: ExecutionLocation, path: str) -> None:
        """Remove ``path``: one SFTP request for a file, ``rm -rf`` for a directory.

        Raises:
            ConnectorError: If something there cannot be removed.
        """
        pool = self._pool(location)
        try:
            attrs = await _stat_or_none(pool, path, follow=False)
            if attrs is None:
                return
            if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
                with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                    await pool.sftp(lambda c: c.remove(path), what="remove")
                return
        except asyncssh.SFTPError as exc:
            _fail(pool, "remove", path, exc)
        await pool.run(commands.remove_tree(path), what=f"remove {path!r}")

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


def _check_routes(routes: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    """A read-only copy of ``routes``, each argv a non-empty tuple of strings.

    Raises:
        TypeError: If ``routes`` is not a mapping of names to argument sequences.
    """
    if not isinstance(routes, Mapping):
        raise TypeError("routes must map location names to argument vectors")
    checked: dict[str, tuple[str, ...]] = {}
    for name, argv in routes.items():
        if (
            not isinstance(name, str)
            or isinstance(argv, str)
            or not argv
            or not all(isinstance(argument, str) for argument in argv)
        ):
            raise TypeError(f"route to {name!r} must be a non-empty sequence of strings")
        checked[name] = tuple(argv)
    return MappingProxyType(checked)


async def _stat_or_none(pool: HostPool, path: str, *, follow: bool) -> asyncssh.SFTPAttrs | None:
    try:
        if follow:
            return await pool.sftp(lambda c: c.stat(path), what="stat")
        return await pool.sftp(lambda c: c.lstat(path), what="stat")
    except asyncssh.SFTPNoSuchFile:
        return None


async def _make_directories(pool: HostPool, path: str) -> None:
    """``mkdir -p path`` over SFTP, failing with the reason the server gave.

    Not asyncssh's ``makedirs``: it passes over a refused ``mkdir`` of an ancestor and
    then reports the next level's "no such file", hiding a "permission denied".

    Raises:
        ConnectorError: If an ancestor is not a directory, or a directory cannot be made.
        asyncssh.SFTPError: If an ancestor cannot be examined.
    """
    missing, current = [], path
    while (found := await _stat_or_none(pool, current, follow=True)) is None and current != "/":
        missing.append(current)
        current = posixpath.dirname(current)
    if found is not None and found.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
        raise pool.error(f"cannot create directory {path!r}: {current!r} is not a directory")
    for directory in reversed(missing):
        try:
            await pool.sftp(functools.partial(_mkdir, directory), what="mkdir")
        except asyncssh.SFTPError as exc:
            made = await _stat_or_none(pool, directory, follow=True)  # by someone else?
            if made is None or made.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
                raise pool.error(f"cannot create directory {directory!r}", exc) from exc


async def _mkdir(path: str, client: asyncssh.SFTPClient) -> None:
    await client.mkdir(path)


def _entry(path: str, attrs: asyncssh.SFTPAttrs) -> Entry:
    kind = _SFTP_KINDS.get(attrs.type, EntryKind.OTHER)
    size = attrs.size or 0 if kind is EntryKind.FILE else 0
    mode = stat_module.S_IMODE(attrs.permissions or 0)
    return Entry(path, kind, size, float(attrs.mtime or 0), mode)


def _fail(pool: HostPool, action: str, path: str, exc: asyncssh.SFTPError) -> NoReturn:
    raise pool.error(f"cannot {action} {path!r}", exc) from exc


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

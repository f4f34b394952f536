"""What the SSH connector is told about its hosts: where each is, and how much to open.

The bottom of the SSH package: every other module of it may import this one, and it
imports none of them. :class:`SSHHost` is public (``streamdata.SSHHost``);
:class:`PoolSettings` holds the connector's limits and timeouts for each host's pool.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["PoolSettings", "SSHHost"]


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
            process, when the measured links make that cheaper than a relay (see
            :attr:`DataManager.routes`). Not part of comparisons.
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


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How a :class:`HostPool` connects and how much it may open at once."""

    max_connections: int = 2
    max_sessions: int = 12
    connect_timeout: float = 15.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    connect_retries: int = 3
    retry_delay: float = 0.1
    window: int = 16 << 20
    max_pktsize: int = 256 << 10

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_sessions < 2:
            raise ValueError("max_sessions must be at least 2 (one is kept for metadata)")
        if self.connect_timeout <= 0 or self.connect_retries < 0 or self.retry_delay < 0:
            raise ValueError("connect_timeout must be positive, retries and delay not negative")


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

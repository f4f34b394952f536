"""The sites file of the ``streamdata`` command: which deployments exist and how to reach them.

A sites file is TOML. Each table under ``deployments`` is one deployment::

    [deployments.laptop]            # a local deployment: this machine's filesystem
    type = "local"
    locations = ["localhost"]       # optional; the default is ["localhost"]

    [deployments.cluster]           # an SSH deployment: one location per host
    type = "ssh"
    connect_timeout = 15.0          # optional: seconds to connect and log in
    connect_retries = 3             # optional: attempts after the first
    max_connections = 2             # optional: SSH connections per host (at least 1)
    max_sessions = 12               # optional: channels open at once per host (at least 2)

    [[deployments.cluster.hosts]]
    host = "login1.example.org"     # required
    port = 22                       # optional
    username = "me"                 # optional: default, the local user name
    client_keys = ["~/.ssh/id_ed25519"]   # optional: default keys and the SSH agent
    known_hosts = "~/.ssh/known_hosts"    # optional: the default shown here
    check_host_key = true           # optional: false only for throw-away test hosts
    name = "login1"                 # optional: the location name, default the host
    routes = { login2 = ["ssh", "-o", "BatchMode=yes", "login2"] }  # optional: run on
                                    # login1, reaches login2: copies go host to host

Relative key and ``known_hosts`` paths are relative to the sites file; ``~`` is expanded.
A deployment named ``local`` (type local, location ``localhost``) always exists unless
the file defines its own; bare paths on the command line (``/data/x``) refer to it.
The whole file is checked when it is loaded, limits included (each SSH deployment's
connector is built then, without connecting), so every subcommand refuses a bad file alike.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamdata import Connector, ExecutionLocation, LocalConnector, SSHConnector, SSHHost

__all__ = [
    "DEFAULT_LOCAL",
    "Address",
    "Deployment",
    "Sites",
    "SitesError",
    "default_sites_path",
    "load_sites",
    "parse_address",
    "parse_locations",
]

DEFAULT_LOCAL = "local"
_NAME = re.compile(r"[A-Za-z0-9_.@+-]+")
_HOST_KEYS = {
    "host",
    "port",
    "username",
    "client_keys",
    "known_hosts",
    "check_host_key",
    "name",
    "routes",
}
_SSH_OPTIONS = {
    "connect_timeout": (float, int),
    "connect_retries": (int,),
    "max_connections": (int,),
    "max_sessions": (int,),
}


class SitesError(Exception):
    """The sites file is missing, malformed or names something that does not exist."""


@dataclass(frozen=True)
class Deployment:
    """One deployment of a sites file.

    Attributes:
        name: The deployment name.
        kind: ``"local"`` or ``"ssh"``.
        locations: The location names, in file order.
        hosts: The SSH hosts (ssh deployments only), one per location.
        options: Keyword options of :class:`~streamdata.SSHConnector`.
    """

    name: str
    kind: str
    locations: tuple[str, ...]
    hosts: tuple[SSHHost, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def location(self, name: str) -> ExecutionLocation:
        """The location ``name`` of this deployment."""
        return ExecutionLocation(name, self.name, local=self.kind == "local")

    def connector(self) -> Connector:
        """A new connector for this deployment (it connects lazily)."""
        if self.kind == "local":
            return LocalConnector()
        return SSHConnector(self.hosts, **self.options)


@dataclass(frozen=True)
class Sites:
    """Every deployment the command knows.

    Attributes:
        deployments: Deployments by name.
        path: The sites file they were read from, None when none exists.
    """

    deployments: Mapping[str, Deployment]
    path: Path | None = None

    def resolve(self, spec: str) -> ExecutionLocation:
        """The location named ``DEPLOYMENT:LOCATION`` (or ``DEPLOYMENT`` with one location).

        Raises:
            SitesError: If the deployment or location is unknown, or ambiguous.
        """
        deployment_name, _, location_name = spec.partition(":")
        deployment = self.deployments.get(deployment_name)
        if deployment is None:
            known = ", ".join(sorted(self.deployments)) or "none"
            raise SitesError(f"unknown deployment {deployment_name!r} (known: {known})")
        if not location_name:
            if len(deployment.locations) != 1:
                names = ", ".join(deployment.locations)
                raise SitesError(
                    f"deployment {deployment_name!r} has several locations ({names}): "
                    f"write {deployment_name}:LOCATION"
                )
            location_name = deployment.locations[0]
        if location_name not in deployment.locations:
            names = ", ".join(deployment.locations)
            raise SitesError(
                f"unknown location {location_name!r} in deployment {deployment_name!r} "
                f"(known: {names})"
            )
        return deployment.location(location_name)

    def connectors(self) -> dict[str, Connector]:
        """A fresh connector for every deployment."""
        return {name: deployment.connector() for name, deployment in self.deployments.items()}


def default_sites_path(cwd: Path | None = None) -> Path | None:
    """The sites file used when none is given: ``./streamdata.toml``, else the user's.

    The user's file is ``$XDG_CONFIG_HOME/streamdata/sites.toml`` (default
    ``~/.config/streamdata/sites.toml``). Returns None when neither exists.
    """
    here = (cwd or Path.cwd()) / "streamdata.toml"
    if here.is_file():
        return here
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    user = Path(config_home) / "streamdata" / "sites.toml"
    return user if user.is_file() else None


def load_sites(path: Path | None) -> Sites:
    """Read and validate a sites file; None gives only the built-in ``local`` deployment.

    Raises:
        SitesError: If the file cannot be read or does not follow the schema.
    """
    builtin = Deployment(DEFAULT_LOCAL, "local", ("localhost",))
    if path is None:
        return Sites({DEFAULT_LOCAL: builtin})
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SitesError(f"cannot read the sites file {str(path)!r}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SitesError(f"the sites file {str(path)!r} is not valid TOML: {exc}") from exc
    deployments = _parse_document(document, path)
    deployments.setdefault(DEFAULT_LOCAL, builtin)
    return Sites(deployments, path)


def _parse_document(document: Mapping[str, Any], path: Path) -> dict[str, Deployment]:
    where = f"sites file {str(path)!r}"
    _only_keys(document, {"deployments"}, where)
    tables = document.get("deployments", {})
    if not isinstance(tables, dict):
        raise SitesError(f"{where}: 'deployments' must be a table")
    deployments = {}
    for name, table in tables.items():
        context = f"{where}: deployments.{name}"
        _check_name(name, context)
        if not isinstance(table, dict):
            raise SitesError(f"{context} must be a table")
        deployments[name] = _parse_deployment(name, table, path.parent, context)
    return deployments


def _parse_deployment(name: str, table: Mapping[str, Any], base: Path, context: str) -> Deployment:
    kind = table.get("type")
    if kind == "local":
        _only_keys(table, {"type", "locations"}, context)
        locations = _string_list(table.get("locations", ["localhost"]), f"{context}.locations")
        if not locations:
            raise SitesError(f"{context}.locations must not be empty")
        for location in locations:
            _check_name(location, f"{context}.locations")
        return Deployment(name, "local", tuple(dict.fromkeys(locations)))
    if kind == "ssh":
        _only_keys(table, {"type", "hosts", *_SSH_OPTIONS}, context)
        options = _ssh_options(table, context)
        hosts = table.get("hosts")
        if not isinstance(hosts, list) or not hosts:
            raise SitesError(f"{context}: an ssh deployment needs at least one [[hosts]] entry")
        parsed = [_parse_host(h, base, f"{context}.hosts[{i}]") for i, h in enumerate(hosts)]
        deployment = Deployment(
            name, "ssh", tuple(host.location_name for host in parsed), tuple(parsed), options
        )
        _check_connector(deployment, context)
        return deployment
    raise SitesError(f'{context}.type must be "local" or "ssh", not {kind!r}')


def _check_connector(deployment: Deployment, context: str) -> None:
    """Build the deployment's connector once, so that what it refuses is refused now.

    Every subcommand then rejects the same file the same way, ``sites`` included. Building
    a connector never connects.

    Raises:
        SitesError: If the connector refuses the hosts or the limits (e.g. two hosts with
            one location name, a route to an unknown host, ``max_sessions = 0``).
    """
    try:
        deployment.connector()
    except (TypeError, ValueError) as exc:
        raise SitesError(f"{context}: {exc}") from exc


def _ssh_options(table: Mapping[str, Any], context: str) -> dict[str, Any]:
    options = {}
    for key, types in _SSH_OPTIONS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, types) or value < 0:
                raise SitesError(f"{context}.{key} must be a non-negative number")
            options[key] = value
    return options


def _parse_host(table: object, base: Path, context: str) -> SSHHost:
    if not isinstance(table, dict):
        raise SitesError(f"{context} must be a table")
    _only_keys(table, _HOST_KEYS, context)
    host = table.get("host")
    if not isinstance(host, str) or not host:
        raise SitesError(f"{context}.host is required (a host name or address)")
    _typed(table, "port", int, context)
    _typed(table, "username", str, context)
    _typed(table, "check_host_key", bool, context)
    _typed(table, "name", str, context)
    _typed(table, "known_hosts", str, context)
    settings: dict[str, Any] = {
        key: table[key] for key in ("port", "username", "check_host_key", "name") if key in table
    }
    if "name" in settings:
        _check_name(settings["name"], f"{context}.name")
    else:
        _check_name(host, f"{context}.host (used as the location name; set name=)")
    if "client_keys" in table:
        keys = _string_list(table["client_keys"], f"{context}.client_keys")
        settings["client_keys"] = [_expand(key, base) for key in keys]
    if "known_hosts" in table:
        settings["known_hosts"] = _expand(table["known_hosts"], base)
    if "routes" in table:
        routes = table["routes"]
        if not isinstance(routes, dict):
            raise SitesError(f"{context}.routes must be a table of location = [argv...]")
        settings["routes"] = {
            target: _string_list(argv, f"{context}.routes.{target}")
            for target, argv in routes.items()
        }
    try:
        return SSHHost(host, **settings)
    except (TypeError, ValueError) as exc:
        raise SitesError(f"{context}: {exc}") from exc


def _only_keys(table: Mapping[str, Any], allowed: set[str], context: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SitesError(f"{context}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")


def _typed(table: Mapping[str, Any], key: str, kind: type, context: str) -> None:
    value = table.get(key)
    wrong_bool = kind is int and isinstance(value, bool)
    if value is not None and (wrong_bool or not isinstance(value, kind)):
        raise SitesError(f"{context}.{key} must be of type {kind.__name__}")


def _string_list(value: object, context: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SitesError(f"{context} must be a list of strings")
    return list(value)


def _check_name(name: str, context: str) -> None:
    if not _NAME.fullmatch(name):
        raise SitesError(
            f"{context}: {name!r} is not a valid name (letters, digits and . _ - + @ only)"
        )


def _expand(value: str, base: Path) -> str:
    return str(base / Path(value).expanduser())


@dataclass(frozen=True)
class Address:
    """A path on one or more locations, as written on the command line.

    Attributes:
        locations: The locations, in the order given.
        path: The absolute path.
    """

    locations: tuple[ExecutionLocation, ...]
    path: str

    def __str__(self) -> str:
        names = ",".join(str(location) for location in self.locations)
        return f"{names}:{self.path}"


def parse_address(sites: Sites, text: str) -> Address:
    """Parse ``/path``, ``DEP:/path``, ``DEP:LOC:/path`` or ``DEP:LOC,DEP2:LOC2:/path``.

    A bare absolute path is on the built-in ``local`` deployment.

    Raises:
        SitesError: If the address is malformed or names an unknown location.
    """
    if text.startswith("/"):
        return Address((sites.resolve(DEFAULT_LOCAL),), text)
    head, separator, tail = text.partition(":/")
    if not separator or not head:
        raise SitesError(f"{text!r} is not an address: write /PATH or DEPLOYMENT[:LOCATION]:/PATH")
    locations = tuple(sites.resolve(spec) for spec in head.split(","))
    return Address(tuple(dict.fromkeys(locations)), "/" + tail)


def parse_locations(sites: Sites, specs: Sequence[str]) -> list[ExecutionLocation]:
    """Resolve several ``DEPLOYMENT[:LOCATION]`` specs (see :meth:`Sites.resolve`).

    Raises:
        SitesError: If one is unknown.
    """
    return list(dict.fromkeys(sites.resolve(spec) for spec in specs))

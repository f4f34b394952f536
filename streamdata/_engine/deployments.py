"""The manager's deployments: a connector per deployment name, until the manager closes.

A registry instance owned by one :class:`~streamdata.DataManager` (no module-level
state). It answers which connector reaches a location, whether a location sees this
process's filesystem, and whether the manager is still open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._errors import ConfigurationError, StreamDataError
from .._models import ExecutionLocation
from ..connectors._base import Connector
from .transfer import Endpoint

__all__ = ["Deployments", "check_location"]


class Deployments:
    """Connectors by deployment name, and whether their manager is closed.

    Attributes:
        connectors: The connectors by deployment name (shared with the transfers).
        closed: True once :meth:`close` began; every lookup then fails.
    """

    def __init__(self) -> None:
        self.connectors: dict[str, Connector] = {}
        self.closed = False
        self._local: set[str] = set()

    def add(self, name: str, connector: Connector) -> None:
        """Serve deployment ``name`` with ``connector``.

        Raises:
            TypeError: If ``connector`` is not a :class:`Connector`.
            ValueError: If ``name`` is empty.
            ConfigurationError: If another connector already serves ``name``.
        """
        if not isinstance(connector, Connector):
            raise TypeError(f"deployment {name!r}: expected a Connector, got {connector!r}")
        if not isinstance(name, str) or not name:
            raise ValueError("a deployment needs a non-empty name")
        if self.connectors.setdefault(name, connector) is not connector:
            raise ConfigurationError(f"deployment {name!r} is already configured")
        if connector.is_local:
            self._local.add(name)

    def is_local(self, location: ExecutionLocation) -> bool:
        """Whether ``location`` sees this process's filesystem."""
        return location.local or location.deployment in self._local

    def ensure_open(self) -> None:
        """Raises: ConfigurationError: If the manager is closed."""
        if self.closed:
            raise ConfigurationError("the DataManager is closed")

    def connector(self, location: ExecutionLocation) -> Connector:
        """The connector serving ``location``.

        Raises:
            ConfigurationError: If the manager is closed or the deployment is unknown.
        """
        self.ensure_open()
        try:
            return self.connectors[location.deployment]
        except KeyError:
            raise ConfigurationError(
                f"unknown deployment {location.deployment!r} (location {location})"
            ) from None

    def destinations(self, locations: Iterable[ExecutionLocation]) -> list[ExecutionLocation]:
        """The distinct ``locations`` in order, each checked to have a connector.

        Raises:
            TypeError: If one is not an :class:`ExecutionLocation`.
            ConfigurationError: If the manager is closed or a deployment is unknown.
        """
        destinations = list(dict.fromkeys(locations))
        for destination in destinations:
            check_location(destination)
            self.connector(destination)
        return destinations

    def ends(
        self, source: ExecutionLocation, path: str, locations: Sequence[ExecutionLocation]
    ) -> tuple[Endpoint, list[ExecutionLocation]]:
        """The source of a transfer, with its connector, and its distinct destinations.

        Raises:
            TypeError: If a location has the wrong type, or ``locations`` is one location.
            ConfigurationError: If the manager is closed or a deployment is unknown.
        """
        check_location(source)
        if isinstance(locations, ExecutionLocation):
            raise TypeError("dst_locations must be a sequence of ExecutionLocation")
        destinations = self.destinations(locations)
        return Endpoint(self.connector(source), source, path), destinations

    async def close(self) -> StreamDataError | None:
        """Mark the manager closed and close every connector.

        Returns:
            The first connector's error, once all of them were closed; None if none failed.
        """
        self.closed = True
        errors: list[StreamDataError] = []
        for connector in self.connectors.values():
            try:
                await connector.close()
            except StreamDataError as exc:
                errors.append(exc)
        return errors[0] if errors else None


def check_location(location: object) -> None:
    """Raises: TypeError: If ``location`` is not an :class:`ExecutionLocation`."""
    if not isinstance(location, ExecutionLocation):
        raise TypeError(f"expected an ExecutionLocation, got {location!r}")

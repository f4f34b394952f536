"""streamdata: a replica catalog and fast, safe data movement for workflow engines.

Where is this data? The :class:`DataManager` keeps a catalog of every replica of every
path on every location. How does it get there? :meth:`DataManager.transfer_data` picks
the best source and copies over a local or SSH connector, atomically.

Importing the package is cheap: each public name is imported from its module the first
time it is used (:pep:`562`), so ``import streamdata`` (as the pytest plugin and
``streamdata --help`` do) loads neither asyncssh nor the SQLite store.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from ._audit import CheckReport
    from ._engine.health import Readiness, ReadinessState
    from ._engine.routes import Route, RouteLink, Routes
    from ._errors import (
        ConfigurationError,
        ConnectorError,
        ConsistencyError,
        DataNotFoundError,
        StreamDataError,
        TransferError,
    )
    from ._events import EventKind, ReplicaEvent, TransferEvent
    from ._manager import DataManager
    from ._models import DataLocation, DataType, ExecutionLocation
    from ._policy import SourcePolicy, default_source_policy
    from .connectors import Connector, LocalConnector
    from .connectors.ssh._connector import SSHConnector, SSHHost

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "ConfigurationError",
    "Connector",
    "ConnectorError",
    "ConsistencyError",
    "DataLocation",
    "DataManager",
    "DataNotFoundError",
    "DataType",
    "EventKind",
    "ExecutionLocation",
    "LocalConnector",
    "Readiness",
    "ReadinessState",
    "ReplicaEvent",
    "Route",
    "RouteLink",
    "Routes",
    "SSHConnector",
    "SSHHost",
    "SourcePolicy",
    "StreamDataError",
    "TransferError",
    "TransferEvent",
    "__version__",
    "default_source_policy",
]

#: The module that defines each public name, relative to this package.
_HOMES = {
    "CheckReport": "._audit",
    "ConfigurationError": "._errors",
    "ConnectorError": "._errors",
    "ConsistencyError": "._errors",
    "DataNotFoundError": "._errors",
    "StreamDataError": "._errors",
    "TransferError": "._errors",
    "EventKind": "._events",
    "ReplicaEvent": "._events",
    "TransferEvent": "._events",
    "DataManager": "._manager",
    "Readiness": "._engine.health",
    "ReadinessState": "._engine.health",
    "Route": "._engine.routes",
    "RouteLink": "._engine.routes",
    "Routes": "._engine.routes",
    "DataLocation": "._models",
    "DataType": "._models",
    "ExecutionLocation": "._models",
    "SourcePolicy": "._policy",
    "default_source_policy": "._policy",
    "Connector": ".connectors",
    "LocalConnector": ".connectors",
    "SSHConnector": ".connectors.ssh",
    "SSHHost": ".connectors.ssh",
}


__getattr__, __dir__ = _lazy_names(__name__, _HOMES, __all__)
